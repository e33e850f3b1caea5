"""Turn (prompt, response) pairs into training examples with the loss on the response only."""

from __future__ import annotations

from collections.abc import Iterable

from explainrec_core.training.engine import Example

IGNORE = -100  # label value PyTorch's cross-entropy skips


def encode(tokenizer, prompt: str, response: str) -> Example:
    """Tokens of prompt + response + EOS; labels are -100 on the prompt so only the answer is learnt.

    The response tokens are taken from tokenising prompt and response together, so they are exactly the
    tokens that follow the prompt at scoring time (a tokenizer may merge across the boundary otherwise).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + response)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the tokenizer merges the prompt end with the response {response!r}")
    ids = full_ids + [tokenizer.eos_token_id]
    return Example(input_ids=ids, labels=[IGNORE] * len(prompt_ids) + ids[len(prompt_ids):])


def encode_all(tokenizer, pairs: Iterable[tuple[str, str]], cutoff: int) -> tuple[list[Example], int]:
    """Encode pairs, skipping (and counting) those longer than `cutoff` tokens: never train on a cut answer."""
    examples, skipped = [], 0
    for prompt, response in pairs:
        example = encode(tokenizer, prompt, response)
        if len(example.input_ids) > cutoff:
            skipped += 1
        else:
            examples.append(example)
    return examples, skipped
