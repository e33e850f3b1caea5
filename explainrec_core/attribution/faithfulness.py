"""How far generated explanations can be trusted: what their citations rest on, and whether they argue for the
answer they follow.

Every citation of a generated explanation falls in exactly one class:

- `history_reasons`: true of the target and the shown history leans the answer's way on it (a "Yes." citing an
  attribute with positive log-odds, a "No." one with negative): a reason derived from the user's history.
  These, and only these, are faithful.
- `contrary_to_history`: true of the target, but the history leans the other way (a "Yes." citing an attribute
  the user's disliked items have more often): the explanation argues against its own answer.
- `target_facts_only`: true of the target, but the history says nothing either way about it (no history item has
  it, or equal log-odds): it repeats a fact of the target the attributed prompt prints, not a reason.
- `untrue`: not a fact of the target at all.

The stance (`explanations.explanation_stance`) contradicts the answer when it is the opposite sign; explanations
without an answer or without a stance are counted, not guessed: `stance_contradicts_answer` is the share among
explanations that have both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from explainrec_core.attribution.explanations import SampleContext, explanation_stance, parse_citations
from explainrec_core.attribution.response_text import split_answer

CLASSES = ("history_reasons", "contrary_to_history", "target_facts_only", "untrue")


def citation_class(ctx: SampleContext, citation, answer: str | None) -> str:
    if not ctx.is_true(citation):
        return "untrue"
    if ctx.supports(citation, answer):
        return "history_reasons"
    lean = ctx.leaning(citation)
    if lean and answer in ("Yes", "No") and (lean > 0) != (answer == "Yes"):
        return "contrary_to_history"
    return "target_facts_only"


def faithfulness(contexts: Sequence[SampleContext], texts: Sequence[str], vocab: dict[str, set[str]]) -> dict:
    """Citations by class (see the module docstring); `faithfulness` is the share that are history reasons."""
    classes: Counter = Counter()
    citing = 0
    for ctx, text in zip(contexts, texts, strict=True):
        answer = split_answer(text)[0]
        citations = parse_citations(text, vocab)
        citing += bool(citations)
        classes.update(citation_class(ctx, c, answer) for c in citations)
    cited = sum(classes.values())
    return {"faithfulness": classes["history_reasons"] / cited if cited else None, "citations": cited,
            "faithful_citations": classes["history_reasons"], **{f"citations_{k}": classes[k] for k in CLASSES},
            "explanations": len(texts), "explanations_citing": citing}


def stance_agreement(contexts: Sequence[SampleContext], texts: Sequence[str], vocab: dict[str, set[str]]) -> dict:
    """How often an explanation argues against the answer in front of it."""
    contradicting = compared = no_stance = no_answer = 0
    for ctx, text in zip(contexts, texts, strict=True):
        answer = split_answer(text)[0]
        stance = explanation_stance(text, ctx, vocab)
        if answer is None:
            no_answer += 1
        elif stance == 0:
            no_stance += 1
        else:
            compared += 1
            contradicting += stance != (1 if answer == "Yes" else -1)
    return {"stance_contradicts_answer": contradicting / compared if compared else None,
            "stance_contradicting": contradicting, "stance_compared": compared, "stance_none": no_stance,
            "stance_no_answer": no_answer}
