"""P5 (Geng et al., RecSys 2022, "Recommendation as Language Processing"): one language model trained on several
families of recommendation prompts in which users and items are ID words ("user_23", "item_1234"), not titles.

P5 fine-tunes T5. T5 weights cannot be obtained offline here, so this is P5's method on our base LLM: its prompt
families, ID words and multi-family training, with the same stage-1 LoRA start, schedule and samples as every
other LLM variant (steps/p5_steps.py). The families kept (P5's numbering):

- 1 rating: "What star rating do you think user_23 will give item_7?" -> "4"
- 2 sequential, generative: the user's watching history as item IDs -> the next item's ID
- 2 sequential, yes/no: the history -> will the user like item_7 next? -> "Yes." / "No."   <- the scored family
- 5 direct, yes/no: will user_23 enjoy item_7? (no history: P5 knows a user by the ID word alone)
Left out: family 3 (explanation generation) needs review text, which MovieLens does not have, and family 4
(review summarisation) likewise.

The scored prompt is the sequential yes/no one: in our protocol every method is shown the sample's history
(P5's direct prompts would score a new user, whose ID word no training prompt contained, without it). P5 shows
interactions, not ratings, so the history here is item IDs without their stars, most recent last. Answers are
"Yes."/"No." (our scorer's answer tokens) where P5 wrote "yes"/"no".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from explainrec_core.config import P5_FAMILIES as FAMILIES
from explainrec_core.prompts import alpaca_prompt, rec_response

_ANSWER = 'Answer "Yes." or "No.".'


def user_word(user: int) -> str:
    return f"user_{int(user)}"


def item_word(item: int) -> str:
    return f"item_{int(item)}"


def _history(user: int, history: Sequence[int]) -> str:
    return f"Given the following watching history of {user_word(user)}: {', '.join(map(item_word, history))}."


def sequential_prefix(user: int, history: Sequence[int]) -> str:
    """The scored prompt up to its target (the part a candidate list shares), ending before the space that
    precedes the target's ID word (prefix_scoring's token boundary)."""
    prompt = alpaca_prompt(f"{_history(user, history)} Will the user like this movie next: \x00? {_ANSWER}")
    head, _, _ = prompt.partition(" \x00")
    return head


def sequential_suffix(item: int) -> str:
    """The per-candidate rest of the scored prompt: `sequential_prefix(...) + sequential_suffix(i)` is
    `sequential_prompt(..., i)`."""
    prompt = alpaca_prompt(f"x: \x00? {_ANSWER}")
    return " " + item_word(item) + prompt.partition("\x00")[2]


def sequential_prompt(user: int, history: Sequence[int], item: int) -> str:
    return sequential_prefix(user, history) + sequential_suffix(item)


def direct_prompt(user: int, item: int) -> str:
    return alpaca_prompt(f"Will {user_word(user)} enjoy watching {item_word(item)}? {_ANSWER}")


def rating_prompt(user: int, item: int) -> str:
    return alpaca_prompt(f"What star rating do you think {user_word(user)} will give {item_word(item)}? "
                         "(1 being lowest and 5 being highest)")


def next_item_prompt(user: int, history: Sequence[int]) -> str:
    return alpaca_prompt(f"{_history(user, history)} Predict the next movie the user will watch.")


@dataclass(frozen=True)
class P5Sample:
    """One training or evaluation sample: its user, target, label, star rating and history (item ids, oldest
    first)."""

    user: int
    item: int
    label: int
    rating: float
    history: tuple[int, ...]


def fitted_history(sample: P5Sample, fits: Callable[[Sequence[int]], bool]) -> tuple[int, ...]:
    """The most recent part of the history with which `fits(history)` holds (oldest items dropped first, as the
    TALLRec prompts drop theirs); raises ValueError when not even an empty history fits."""
    for start in range(len(sample.history) + 1):
        kept = sample.history[start:]
        if fits(kept):
            return kept
    raise ValueError(f"user {sample.user}, item {sample.item}: even without history the P5 prompt is longer than "
                     "the cutoff")


def family_examples(sample: P5Sample, families: Sequence[str], history: Sequence[int]) -> list[tuple[str, str, str]]:
    """(family, prompt, response) of each family for one sample. next_item asks for the target only when it was
    liked (P5 predicts the next interaction; a disliked target is not a recommendation to learn)."""
    out = []
    for family in families:
        if family == "sequential":
            out.append((family, sequential_prompt(sample.user, history, sample.item), rec_response(sample.label)))
        elif family == "direct":
            out.append((family, direct_prompt(sample.user, sample.item), rec_response(sample.label)))
        elif family == "rating":
            out.append((family, rating_prompt(sample.user, sample.item), str(int(round(sample.rating)))))
        elif family == "next_item":
            if sample.label:
                out.append((family, next_item_prompt(sample.user, history), item_word(sample.item)))
        else:
            raise ValueError(f"unknown P5 family {family!r}; known: {list(FAMILIES)}")
    return out
