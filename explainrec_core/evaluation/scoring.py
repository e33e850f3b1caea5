"""P(Yes) scoring, TALLRec style: softmax over the Yes/No answer-token logits at the first response position.

Prompts are scored in batches, longest first (little padding), left-padded with explicit position ids so a
padded prompt gets exactly the logits it gets alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score


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


@torch.inference_mode()
def score_yes(model, tokenizer, prompts: Sequence[str], answer_ids: dict[str, int], batch_size: int = 8,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """P(Yes) for each prompt (in the given order)."""
    device = next(model.parameters()).device
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    yes_no = torch.tensor([answer_ids["Yes"], answer_ids["No"]], device=device)
    scores = np.empty(len(prompts), dtype=np.float64)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start: start + batch_size]]
        input_ids, mask, positions = left_pad(batch, tokenizer.pad_token_id, device)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                       logits_to_keep=1).logits[:, -1, :]
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
