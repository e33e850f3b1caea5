"""P(Yes) scoring, TALLRec style: softmax over the Yes/No answer-token logits at the first response position.

Every TALLRec prompt starts with the same Alpaca preamble and instruction, so by default the longest token prefix
shared by all prompts runs once and only the remainders are batched on its KV cache (prefix_scoring). Without a
shared prefix (or with share_prefix=False) prompts are scored whole, in batches longest first (little padding),
left-padded with explicit position ids so a padded prompt gets exactly the logits it gets alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from explainrec_core.evaluation.prefix_scoring import RowEmbed, score_after_prefix
from explainrec_core.evaluation.quantize import int8_copy, is_int8


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None):
    """(input_ids, attention_mask, position_ids) of token lists left-padded to one width: every row ends in the
    last column, and the explicit positions give a padded row exactly the logits it gets alone."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(list(seq))
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all `seqs` share, leaving every sequence at least one token of its own
    (the position its answer logits are read from)."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for n in range(max(limit, 0)):
        token = first[n]
        if any(s[n] != token for s in seqs):
            return n
    return max(limit, 0)


@torch.inference_mode()
def score_yes(model, tokenizer, prompts: Sequence[str], answer_ids: dict[str, int], batch_size: int = 8,
              on_batch: Callable[[int], None] | None = None, *, share_prefix: bool = True,
              int8: bool = False, embed: RowEmbed | None = None, slot_id: int | None = None) -> np.ndarray:
    """P(Yes) for each prompt (in the given order).

    share_prefix: the tokens every prompt starts with (TALLRec's preamble and instruction, ~74 of ~230 SmolLM2
        tokens) run once, KV-cached, and each batch scores only the per-prompt remainders on that cache
        (`prefix_scoring.score_after_prefix`); the scores equal full-prompt scoring (to float rounding).
    int8: score with a merged, dynamically int8-quantised copy of the model (`quantize.int8_copy`; CPU only).
        The copy is made per call unless `model` already is one.
    embed, slot_id: prompts with soft tokens (features/item_token_model.py): `embed(rows, input_ids)` gives the
        input embeddings of a batch of prompts (their rows in `prompts`) or of their remainders after the shared
        prefix, which then stops before the first `slot_id` token (the soft tokens differ between prompts even
        where the ids agree).
    """
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    if int8 and encoded and not is_int8(model):
        model = int8_copy(model)
    shared = common_prefix_length(encoded) if share_prefix and len(encoded) > 1 else 0
    if slot_id is not None:
        shared = min([shared, *(ids.index(slot_id) for ids in encoded if slot_id in ids)])
    if shared:
        return score_after_prefix(model, encoded[0][:shared], [ids[shared:] for ids in encoded], answer_ids,
                                  batch_size, tokenizer.pad_token_id, on_batch=on_batch, embed=embed)
    return _score_full_prompts(model, encoded, tokenizer.pad_token_id, answer_ids, batch_size, on_batch, embed)


def _score_full_prompts(model, encoded: Sequence[Sequence[int]], pad_id: int, answer_ids: dict[str, int],
                        batch_size: int, on_batch: Callable[[int], None] | None,
                        embed: RowEmbed | None = None) -> np.ndarray:
    """P(Yes) of whole prompts: batches longest first (little padding), left-padded with explicit positions."""
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    yes_no = torch.tensor([answer_ids["Yes"], answer_ids["No"]], device=device)
    scores = np.empty(len(encoded), dtype=np.float64)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        batch = [encoded[i] for i in rows]
        input_ids, mask, positions = left_pad(batch, pad_id, device)
        inputs = {"inputs_embeds": embed(rows, input_ids)} if embed is not None else {"input_ids": input_ids}
        logits = model(**inputs, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
        p_yes = torch.softmax(logits.float().index_select(-1, yes_no), dim=-1)[:, 0]
        scores[order[start: start + batch_size]] = p_yes.cpu().numpy()
        if on_batch:
            on_batch(len(batch))
    model.train(was_training)
    return scores


def auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC, or None when the labels have a single class (AUC is undefined there)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    value = float(roc_auc_score(labels, scores))
    return None if math.isnan(value) else value
