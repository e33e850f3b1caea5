"""Prompts: the Alpaca template and TALLRec's recommendation instruction, token-budgeted.

The recommendation prompt is TALLRec's, word for word (ML-100K): liked history items under "User Preference",
disliked ones under "User Unpreference", then the target. When a prompt does not fit the token cutoff, the
oldest history items are dropped first; the answer is never cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
RESPONSE_MARKER = "### Response:\n"
REC_INSTRUCTION = ('Given the user\'s preference and unpreference, identify whether the user will like the target '
                   'movie by answering "Yes." or "No.".')
MAX_TITLE_CHARS = 120


def alpaca_prompt(instruction: str, input: str = "") -> str:
    if input.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def sanitize(text: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """Titles, tags and reviews are data, not instructions: one line (so they can never start a "### Response:"
    section), no double quotes (so they cannot close the quotes around them), no "##" markers, length capped."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = re.sub(r"#{2,}", "#", text.replace('"', "'"))
    return " ".join(text.split())[:max_chars].rstrip()


def quote_item(title: str | None, year: int | None) -> str:
    """`"Title (Year)"`: the title sanitised (see `sanitize`) and quoted; items without metadata (Amazon) have none."""
    title = sanitize(title) if title else "untitled item"
    return f'"{title} ({year})"' if year else f'"{title}"'


def rec_input(liked: Sequence[str], disliked: Sequence[str], target: str) -> str:
    return (f"User Preference: {', '.join(liked)}\nUser Unpreference: {', '.join(disliked)}\n"
            f"Whether the user will like the target movie {target}?")


def rec_response(label: int) -> str:
    return "Yes." if label else "No."


@dataclass(frozen=True)
class RecPrompt:
    prompt: str
    n_history_used: int
    n_history_dropped: int


def build_rec_prompt(history: Sequence[tuple[str, float]], target: str, like_threshold: float,
                     count_tokens, cutoff: int, response_tokens: int) -> RecPrompt:
    """The TALLRec prompt for one sample, dropping the oldest history items until it fits `cutoff` tokens.

    `history` is (quoted item, rating), oldest first; `count_tokens(text)` counts a prompt's tokens;
    `response_tokens` is reserved for the answer so it is never truncated.
    """
    for start in range(len(history) + 1):
        kept = history[start:]
        liked = [item for item, rating in kept if rating > like_threshold]
        disliked = [item for item, rating in kept if rating <= like_threshold]
        prompt = alpaca_prompt(REC_INSTRUCTION, rec_input(liked, disliked, target))
        if count_tokens(prompt) + response_tokens <= cutoff:
            return RecPrompt(prompt, len(kept), start)
    raise ValueError(f"even without history the prompt for {target} is longer than the cutoff ({cutoff} tokens)")
