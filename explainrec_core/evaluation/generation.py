"""Greedy generation of responses (answer + explanation) in left-padded batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from explainrec_core.evaluation.scoring import left_pad


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8,
             on_batch: Callable[[int], None] | None = None) -> list[str]:
    """The greedy continuation of each prompt, decoded without special tokens, in the given order."""
    device = next(model.parameters()).device
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start: start + batch_size]]
        width = max(map(len, batch))
        ids, mask, _ = left_pad(batch, tokenizer.pad_token_id, device)
        generated = model.generate(input_ids=ids, attention_mask=mask,
                                   max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for row, index in enumerate(order[start: start + batch_size]):
            out[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
        if on_batch:
            on_batch(len(batch))
    model.train(was_training)
    return out
