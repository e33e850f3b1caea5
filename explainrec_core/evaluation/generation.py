"""Greedy generation of responses (answer + explanation) in left-padded batches, stopped at a sentence end.

A row stops as soon as its response holds `sentences` complete explanation sentences (after the answer, template
markers ignored: `attribution/response_text.py`), so an explanation ends where its sentence does instead of
where `max_new_tokens` happens to cut it, and no time goes into text nobody reads. A sentence end is only
certain once the token after it is there ("Dr." may go on), so a row runs one token past it;
`response_text.clean_response` cuts that token off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from explainrec_core.attribution.response_text import complete_sentences
from explainrec_core.evaluation.scoring import left_pad


class SentenceStop(StoppingCriteria):
    """Per row: done once the generated text (from column `start` on) has `sentences` complete sentences."""

    def __init__(self, tokenizer, start: int, sentences: int):
        self.tokenizer, self.start, self.sentences = tokenizer, start, sentences

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([complete_sentences(t) >= self.sentences for t in texts], dtype=torch.bool,
                            device=input_ids.device)


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8,
             on_batch: Callable[[int], None] | None = None, sentences: int | None = 1,
             embed: Callable[[Sequence[int], torch.Tensor], torch.Tensor] | None = None) -> list[str]:
    """The greedy continuation of each prompt, decoded without special tokens, in the given order; each stops
    after `sentences` explanation sentences (None: only at EOS or `max_new_tokens`). `embed(rows, input_ids)`
    gives the prompts' input embeddings (item tokens; rows index `prompts`), as in the scoring engine."""
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
        stop = StoppingCriteriaList([SentenceStop(tokenizer, width, sentences)]) if sentences else None
        # With embeddings given, generate() runs its first step on them and still returns the prompt's ids first.
        extra = {"inputs_embeds": embed(order[start: start + batch_size], ids)} if embed else {}
        generated = model.generate(input_ids=ids, attention_mask=mask, **extra,
                                   max_new_tokens=max_new_tokens, do_sample=False, stopping_criteria=stop,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for row, index in enumerate(order[start: start + batch_size]):
            out[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
        if on_batch:
            on_batch(len(batch))
    model.train(was_training)
    return out


def explain_after_answer(model, tokenizer, prompts: Sequence[str], p_yes: Sequence[float], max_new_tokens: int,
                         batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
                         embed: Callable[[Sequence[int], torch.Tensor], torch.Tensor] | None = None
                         ) -> list[tuple[str, str]]:
    """(answer, raw continuation) per prompt: the answer is the model's prediction (P(Yes) >= 0.5), written after
    the prompt, and the explanation is generated after it. This is what people read (`explain`, `recommend`) and
    what the explanation metrics score: a free-running generation often skips the answer word (a small model tuned
    briefly writes "The user will like ..." straight away), which would leave its stance nothing to agree with."""
    answers = ["Yes" if p >= 0.5 else "No" for p in p_yes]
    rest = generate(model, tokenizer, [p + a for p, a in zip(prompts, answers, strict=True)], max_new_tokens,
                    batch_size, on_batch=on_batch, embed=embed)
    return list(zip(answers, rest, strict=True))
