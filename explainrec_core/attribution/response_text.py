"""The text of a generated response, as a person reads it: answer, template markers, sentences, stance words.

A small tuned model often continues the Alpaca template after its answer ("Yes.\\n### Explanation:\\nThe user
...") and, left alone, runs on until `max_new_tokens` cuts it mid-title. Generation therefore stops at the end of
the first explanation sentence (`evaluation/generation.py` asks `complete_sentences` after every token), and
`clean_response` turns what was generated into "Yes. <explanation sentence>":

- template markers ("### Explanation:", "### Response:", "###", "Response:", "Explanation:") are dropped; a new
  "### Instruction:" / "### Input:" section means the model started another prompt, so the text ends there;
- a sentence ends at ".", "!" or "?" followed by white space (or the end of the text), outside double quotes
  (titles are quoted: "Mr. Holland's Opus (1995)" does not end a sentence) and not after a common abbreviation.

`phrase_stance` reads which way the words argue: "will not like", "won't enjoy", "dislikes" against;
"will like", "enjoys", "liked" for. Negated phrases are matched first and masked, so "will not like" is never
also read as "like".
"""

from __future__ import annotations

import re

ANSWERS = ("Yes", "No")
_NEW_SECTION = re.compile(r"#{2,}\s*(?:Instruction|Input)\b|\n\s*(?:Instruction|Input):", re.IGNORECASE)
_MARKER = re.compile(r"#{2,}\s*(?:(?:Response|Explanation|Answer)\s*:)?|\b(?:Response|Explanation|Answer)\s*:",
                     re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(Yes|No)\b\s*[.!,:;]?", re.IGNORECASE)
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "vol", "pt", "etc", "e.g", "i.e"}
_END = ".!?"


def strip_markers(text: str) -> str:
    """The response without template markers, cut where a new prompt section starts, white space collapsed."""
    section = _NEW_SECTION.search(text)
    if section:
        text = text[:section.start()]
    return " ".join(_MARKER.sub(" ", text).split())


def split_answer(text: str) -> tuple[str | None, str]:
    """("Yes" | "No" | None, the rest): the leading answer word and what follows it, markers already removed.
    A continuation generated after the answer word (". It is ...") has no answer and loses its leading ".".
    """
    text = strip_markers(text)
    match = _ANSWER.match(text)
    answer = match.group(1).capitalize() if match else None
    rest = text[match.end():] if match else text
    return answer, rest.lstrip(" .!,:;-").strip()


def sentence_ends(text: str, final: bool) -> list[int]:
    """Indices just past each sentence end in `text`. With `final` False (text still being generated), an end
    needs white space after it, since "Dr." or "2." may still go on; with `final` True the text's end counts."""
    ends, quoted = [], False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        if quoted or ch not in _END:
            continue
        after = text[i + 1: i + 2]
        if not after and not final:
            continue
        if after and not after.isspace():
            continue
        word = re.search(r"([\w.]+)$", text[:i])
        if ch == "." and word and word.group(1).lower() in _ABBREVIATIONS:
            continue
        ends.append(i + 1)
    return ends


def complete_sentences(text: str) -> int:
    """Explanation sentences already complete in a response still being generated (the answer not counted)."""
    return len(sentence_ends(split_answer(text)[1], final=False))


def clean_response(text: str, sentences: int = 1, answer: str | None = None) -> str:
    """"Yes. <first `sentences` explanation sentences>" from a raw response. `answer` is given when the text is
    a continuation generated after the answer word; otherwise the answer is read from the text."""
    found, rest = split_answer(text)
    answer = answer or found
    ends = sentence_ends(rest, final=True)
    if len(ends) >= sentences:
        rest = rest[:ends[sentences - 1]]
    rest = rest.strip()
    return f"{answer}. {rest}".strip() if answer else rest


_VERB = r"(?:like|enjoy|love|appreciate|interested|a\s+fan|want|watch|fond|care)\w*"
_AGAINST = re.compile(
    r"\b(?:not|never|won't|wouldn't|doesn't|don't|didn't|isn't|aren't|can't|cannot)\s+(?:be\s+)?"
    r"(?:really\s+|very\s+|much\s+|too\s+)?" + _VERB +
    r"|\bnot\s+(?:for\s+(?:the\s+)?(?:user|them|him|her)|(?:a\s+)?good\s+fit)\b"
    r"|\b(?:dislike|hate|avoid|detest)\w*|\bunlikely\s+to\b",
    re.IGNORECASE)
_FOR = re.compile(
    r"\b(?:likes|liked|liking|enjoy\w*|love[sd]?|loving|appreciate[sd]?|fan\s+of|fond\s+of|interested\s+in"
    r"|likely\s+to|good\s+fit|favou?rite)\b"
    r"|\b(?:will|would|to|they|he|she|user|users|you|may|might|probably|also|really)\s+like\b",
    re.IGNORECASE)


def phrase_stance(text: str) -> int:
    """+1 when the explanation's words argue for liking, -1 against, 0 when they say neither (or both equally)."""
    rest = split_answer(text)[1].replace("\u2019", "'")
    rest = re.sub(r'"[^"]*"', " ", rest)  # titles are data ("I Like It Like That (1994)")
    against = len(_AGAINST.findall(rest))
    support = len(_FOR.findall(_AGAINST.sub(" ", rest)))
    return (support > against) - (against > support)
