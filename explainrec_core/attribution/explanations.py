"""Explanations: what a sample's reasons are, the reference explanation, and checking what an explanation cites.

`SampleContext.reference` writes the reference explanation, deterministically, from the user's reasons that apply to
the target: for a liked target (label Yes) the target's attributes with the most positive log-odds in the user's
history, for a disliked one the most negative; then the most recent history items of that polarity that have
them, as examples:

    Yes. It is a Crime movie and shares a director with "Fargo (1996)"; the user liked "Fargo (1996)".
    No. It is a Horror movie; the user disliked "Scream (1996)".
    Yes. Its attributes say little about this user's taste.        (no attribute of the target leans that way)

(the phrases are `citations.clause`). `citations.parse_citations` reads them, and free-text names of the same
attributes, back from a generated explanation. A citation supports an answer (`SampleContext.supports`) when it is
true of the target AND the shown history leans the answer's way on it; `explanation_stance` reads which way the
explanation argues. `attribution/faithfulness.py` turns both into the evaluation's numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from explainrec_core.attribution.attributes import PERSON_KINDS
from explainrec_core.attribution.citations import Citation, clause, parse_citations
from explainrec_core.attribution.preferences import Preference, item_reasons, preferences
from explainrec_core.attribution.response_text import phrase_stance

__all__ = ["Citation", "SampleContext", "clause", "explanation_stance", "parse_citations", "review_reference",
           "vocabulary"]

KIND_ORDER = ("genre", "era", "mpaa", "runtime", "imdb", "tag", *PERSON_KINDS)
NEUTRAL = "Its attributes say little about this user's taste."
MAX_TARGET_FACTS = 6
MAX_PERSON_LINKS = 2


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

    def is_true(self, citation: Citation) -> bool:
        """The cited attribute is a fact of the target (for persons: the target shares that person with the
        quoted history film)."""
        if citation.kind in PERSON_KINDS:
            return any(kind == citation.kind and title == citation.label for kind, _, title, _ in self.person_links())
        return any((k, lab) == (citation.kind, citation.label) for k, _, lab in self.attrs_of.get(self.target, ()))

    def leaning(self, citation: Citation) -> float | None:
        """How the shown history leans on the cited attribute: its log-odds (> 0: the user's liked items have it
        more often), or None when no history item has it. A person is read through the film it is quoted with."""
        if citation.kind in PERSON_KINDS:
            values = [value for kind, value, title, _ in self.person_links()
                      if kind == citation.kind and title == citation.label]
        else:
            values = [value for i, _, _ in self.history for k, value, lab in self.attrs_of.get(i, ())
                      if (k, lab) == (citation.kind, citation.label)]
        return self.prefs[values[0]].log_odds if values and values[0] in self.prefs else None

    def supports(self, citation: Citation, answer: str | None) -> bool:
        """A reason for `answer` derived from the history: true of the target, and the shown history leans the
        answer's way on it (positive log-odds for "Yes", negative for "No")."""
        lean = self.leaning(citation)
        if answer not in ("Yes", "No") or lean is None or not self.is_true(citation):
            return False
        return lean > 0 if answer == "Yes" else lean < 0


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


def explanation_stance(text: str, context: SampleContext, vocabulary: dict[str, set[str]] | None) -> int:
    """Which way an explanation argues: +1 for liking, -1 against, 0 neither. Its words decide when they take a
    side ("will not like", "enjoys": `response_text.phrase_stance`); otherwise the cited attributes the shown
    history leans on do (the sign of the sum of their log-odds). The answer in front ("Yes."/"No.") is ignored:
    the stance is compared against it."""
    words = phrase_stance(text)
    if words:
        return words
    leanings = [lean for c in parse_citations(text, vocabulary) if (lean := context.leaning(c)) is not None]
    total = sum(leanings)
    return (total > 0) - (total < 0)
