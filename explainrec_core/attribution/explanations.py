"""Explanations: what a sample's reasons are, the reference explanation, and checking what an explanation cites.

One grammar serves both directions. An explanation cites attributes of the target in fixed phrases:

    genre    is a Crime movie              mpaa     is rated R             imdb    is acclaimed on IMDb
    era      is from the 1990s             runtime  runs over two hours    tag     is tagged "dark comedy"
    person   shares a director with "Fargo (1996)"

`render_reference` writes the reference explanation, deterministically, from the user's reasons that apply to
the target: for a liked target (label Yes) the target's attributes with the most positive log-odds in the user's
history, for a disliked one the most negative; then the most recent history items of that polarity that have
them, as examples:

    Yes. It is a Crime movie and shares a director with "Fargo (1996)"; the user liked "Fargo (1996)".
    No. It is a Horror movie; the user disliked "Scream (1996)".
    Yes. Its attributes say little about this user's taste.        (no attribute of the target leans that way)

`parse_citations` reads those phrases back from any text (a generated explanation), and `faithfulness` counts
a citation as faithful when the cited attribute is true of the target AND present in the user's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from explainrec_core.attribution.attributes import PERSON_KINDS
from explainrec_core.attribution.preferences import Preference, item_reasons, preferences

KIND_ORDER = ("genre", "era", "mpaa", "runtime", "imdb", "tag", *PERSON_KINDS)
NEUTRAL = "Its attributes say little about this user's taste."
MAX_TARGET_FACTS = 6
MAX_PERSON_LINKS = 2


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def clause(kind: str, label: str) -> str:
    """The phrase citing one attribute (for persons, `label` is the quoted title of the film shared with)."""
    if kind == "genre":
        return f"is {_article(label)} {label} movie"
    if kind == "era":
        return f"is from the {label}"
    if kind in ("mpaa", "imdb"):
        return f"is {label}"
    if kind == "runtime":
        return f"runs {label}"
    if kind == "tag":
        return f'is tagged "{label}"'
    if kind in PERSON_KINDS:
        return f"shares {_article(kind)} {kind} with {label}"
    raise ValueError(f"no phrase for attribute kind {kind!r}")


_PATTERNS = (
    ("genre", re.compile(r"\bis an? (.+?) movie\b")),
    ("era", re.compile(r"\bfrom the (\d{4}s)\b")),
    ("mpaa", re.compile(r"\b(rated (?:NC-17|PG-13|PG|G|R))\b")),
    ("runtime", re.compile(r"\bruns (over two hours|under 90 minutes)\b")),
    ("imdb", re.compile(r"\b(acclaimed on IMDb)\b")),
    ("tag", re.compile(r'\btagged "([^"]+)"')),
)
_PERSON = re.compile(r'\bshares an? (director|writer|actor) with ("[^"]+")')


@dataclass(frozen=True)
class Citation:
    kind: str
    label: str  # the attribute's label; for persons the quoted title of the film shared with


def parse_citations(text: str, vocabulary: dict[str, set[str]] | None = None) -> list[Citation]:
    """Attributes an explanation cites, in order, without duplicates. With `vocabulary` (kind -> known labels),
    phrases naming no known label ("is a great movie") are not citations."""
    found: list[tuple[int, Citation]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if vocabulary is None or m.group(1) in vocabulary.get(kind, ()):
                found.append((m.start(), Citation(kind, m.group(1))))
    for m in _PERSON.finditer(text):
        found.append((m.start(), Citation(m.group(1), m.group(2))))
    seen, out = set(), []
    for _, c in sorted(found, key=lambda x: x[0]):
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


@dataclass
class SampleContext:
    """Everything a prompt and an explanation need about one (history, target) pair."""

    history: list[tuple[int, str, bool]]  # (item_id, quoted title, liked), oldest first
    target: int
    target_title: str
    attrs_of: dict[int, list[tuple[str, str, str]]]  # item -> (kind, value, label)
    prefs: dict[str, Preference] = field(default_factory=dict)

    @classmethod
    def build(cls, history, target, target_title, attrs_of, priors, strength) -> SampleContext:
        prefs = preferences([(item, liked) for item, _, liked in history], attrs_of, priors, strength)
        return cls(list(history), target, target_title, attrs_of, prefs)

    def values(self, item: int) -> set[str]:
        return {value for _, value, _ in self.attrs_of.get(item, ())}

    def person_links(self) -> list[tuple[str, str, str, int]]:
        """(role, person value, quoted title, item) for history items sharing a person with the target, most
        recent first."""
        target_people = {(k, v) for k, v, _ in self.attrs_of.get(self.target, ()) if k in PERSON_KINDS}
        links = []
        for item, title, _ in reversed(self.history):
            for kind, value, _ in self.attrs_of.get(item, ()):
                if (kind, value) in target_people:
                    links.append((kind, value, title, item))
        return links

    def target_facts(self) -> str:
        """"Crime, Drama, 1990s, rated R; shares a director with "Fargo (1996)"" for the prompt."""
        attrs = sorted((a for a in self.attrs_of.get(self.target, ()) if a[0] not in PERSON_KINDS),
                       key=lambda a: (KIND_ORDER.index(a[0]), a[2]))
        labels = [label for _, _, label in attrs][:MAX_TARGET_FACTS]
        people, seen = [], set()
        for kind, _, title, _ in self.person_links():
            if (kind, title) not in seen and len(people) < MAX_PERSON_LINKS:
                seen.add((kind, title))
                people.append(clause(kind, title))
        return ", ".join(labels) + ("; " if labels and people else "") + "; ".join(people)

    def reasons(self, item: int, liked: bool, n: int) -> list[str]:
        return item_reasons(item, liked, self.prefs, self.attrs_of, n)

    def reference(self, label: int, max_cited: int) -> str:
        """The reference explanation for the true label (see the module docstring)."""
        sign, liked = (1.0, True) if label else (-1.0, False)
        candidates = []  # (score, kind order, Citation, supporting history items, most recent first)
        for kind, value, lab in self.attrs_of.get(self.target, ()):
            if kind in PERSON_KINDS or value not in self.prefs or sign * self.prefs[value].log_odds <= 0:
                continue
            support = [t for i, t, lk in reversed(self.history) if lk == liked and value in self.values(i)]
            if support:
                candidates.append((sign * self.prefs[value].log_odds, KIND_ORDER.index(kind), Citation(kind, lab),
                                   support))
        for kind, value, title, item in self.person_links():
            is_liked = next(lk for i, _, lk in self.history if i == item)
            if is_liked == liked and sign * self.prefs[value].log_odds > 0:
                candidates.append((sign * self.prefs[value].log_odds, KIND_ORDER.index(kind), Citation(kind, title),
                                   [title]))
        answer = "Yes." if label else "No."
        if not candidates:
            return f"{answer} {NEUTRAL}"
        chosen, cited = [], set()
        for _, _, citation, support in sorted(candidates, key=lambda c: (-c[0], c[1], c[2].label)):
            if citation not in cited and len(chosen) < max_cited:
                cited.add(citation)
                chosen.append((citation, support))
        examples = []
        for _, support in chosen:
            if support[0] not in examples and len(examples) < 2:
                examples.append(support[0])
        clauses = " and ".join(clause(c.kind, c.label) for c, _ in chosen)
        return f"{answer} It {clauses}; the user {'liked' if liked else 'disliked'} {' and '.join(examples)}."

    def is_faithful(self, citation: Citation) -> bool:
        """True of the target and present in the user's history."""
        if citation.kind in PERSON_KINDS:
            return any(kind == citation.kind and title == citation.label for kind, _, title, _ in self.person_links())
        target = {(k, lab) for k, _, lab in self.attrs_of.get(self.target, ())}
        history = {(k, lab) for i, _, _ in self.history for k, _, lab in self.attrs_of.get(i, ())}
        key = (citation.kind, citation.label)
        return key in target and key in history


MAX_REVIEW_CHARS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def review_reference(label: int, review: str | None) -> str | None:
    """For review datasets (Amazon), as PEPLER does: the answer, then the first sentence of the user's own review
    of the target (sanitised: one line, no double quotes, capped). None when there is no usable review."""
    from explainrec_core.prompts import sanitize

    text = sanitize(review or "", 10 * MAX_REVIEW_CHARS)
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0][:MAX_REVIEW_CHARS].strip() if text else ""
    if len(sentence.split()) < 3:  # "Great!" explains nothing
        return None
    if sentence[-1] not in ".!?":
        sentence += "."
    return f"{'Yes.' if label else 'No.'} {sentence}"


def vocabulary(attrs_of: dict[int, list[tuple[str, str, str]]]) -> dict[str, set[str]]:
    vocab: dict[str, set[str]] = {}
    for attrs in attrs_of.values():
        for kind, _, label in attrs:
            if kind not in PERSON_KINDS:
                vocab.setdefault(kind, set()).add(label)
    return vocab


def faithfulness(contexts: list[SampleContext], texts: list[str], vocab: dict[str, set[str]]) -> dict:
    """Share of cited attributes that are true of the target and in the history; also how many texts cite any."""
    cited = faithful = citing = 0
    for ctx, text in zip(contexts, texts, strict=True):
        citations = parse_citations(text, vocab)
        citing += bool(citations)
        cited += len(citations)
        faithful += sum(ctx.is_faithful(c) for c in citations)
    return {"faithfulness": faithful / cited if cited else None, "citations": cited, "faithful_citations": faithful,
            "explanations": len(texts), "explanations_citing": citing}
