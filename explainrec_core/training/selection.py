"""Model selection of the models that answer AND explain: validation AUC plus how well they explain.

Early stopping keeps the checkpoint with the best validation metric. For the attributed model that metric was the
validation AUC alone, and the answer is learned in a few steps while the explanation template is learned later: AUC
alone could keep a checkpoint from before the model explains (issue "multi-task", item 3). The criterion is

    criterion = AUC_valid + w * exp(-NLL_exp)

- AUC_valid: P(Yes) of the validation prompts (the same scoring as the TALLRec recipe's early stopping);
- NLL_exp: the mean token cross-entropy of the validation samples' reference explanations after their true answer,
  teacher-forced (the explanation term of the joint loss, training/joint_loss.py, on validation data), so
  exp(-NLL_exp) in (0, 1] is the geometric-mean probability the model gives a reference token;
- w: `attribution.selection_explanation_weight` (0 = AUC alone, the earlier rule). 0.5: a checkpoint whose mean
  reference-token probability is 0.1 higher is worth 0.05 validation AUC, so a model that has learned to explain
  (token probability ~0.1 -> ~0.5 over training) is not traded for an AUC gain within the noise of a few hundred
  validation samples (an AUC interval of about +-0.07 at n = 200).

Why not BLEU of generated explanations: generation costs ~2 s per sample on a CPU, at every evaluation; the
teacher-forced likelihood costs one short continuation of the prompt's KV cache (joint_terms). Both components of
every evaluation are kept (`history`) for the model card and the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.training.engine import Example
from explainrec_core.training.joint_loss import encode_explained, joint_terms


def explanation_nll(model, examples: Sequence[Example], pad_token_id: int, yes_id: int, no_id: int,
                    batch_size: int) -> float:
    """Mean token cross-entropy of the examples' explanations (and EOS) after their answer, over all their tokens."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start:start + batch_size]
            mean = joint_terms(model, batch, pad_token_id, device, yes_id, no_id)["explanation"].item()
            tokens = sum(len(ex.input_ids) - ex.answer_pos - 1 for ex in batch)  # the predicted ones (see joint_terms)
            total, count = total + mean * tokens, count + tokens
    return total / max(count, 1)


class ExplainedSelection:
    """The early-stopping metric of the explaining models (an `evaluate(model) -> float` for training.engine)."""

    def __init__(self, tokenizer, answer_ids: dict[str, int], prompts: Sequence[str], responses: Sequence[str],
                 labels: Sequence[int], batch_size: int, explanation_weight: float):
        if explanation_weight < 0:
            raise ValueError(f"explanation_weight must be >= 0, got {explanation_weight}")
        self.tokenizer, self.answer_ids, self.batch_size = tokenizer, answer_ids, batch_size
        self.prompts, self.labels = list(prompts), list(labels)
        self.weight = explanation_weight
        self.examples = ([encode_explained(tokenizer, p, r, answer_ids) for p, r in zip(prompts, responses,
                                                                                        strict=True)]
                         if explanation_weight > 0 else [])
        self.history: list[dict] = []  # one row per evaluation of this process (a resumed run starts it anew)

    def __call__(self, model) -> float:
        value = auc(self.labels, score_yes(model, self.tokenizer, self.prompts, self.answer_ids, self.batch_size))
        value = 0.5 if value is None else value
        row = {"auc": value, "explanation_nll": None, "explanation_token_prob": None, "criterion": value}
        if self.weight > 0:
            nll = explanation_nll(model, self.examples, self.tokenizer.pad_token_id, self.answer_ids["Yes"],
                                  self.answer_ids["No"], self.batch_size)
            row.update(explanation_nll=nll, explanation_token_prob=math.exp(-nll),
                       criterion=value + self.weight * math.exp(-nll))
        self.history.append(row)
        return row["criterion"]

    def at_step(self, evals: Sequence[tuple[int, float]], step: int | None) -> dict | None:
        """This process's components of the evaluation at `step` (evals: the engine's (step, metric) list, whose
        last len(history) entries are this process's evaluations)."""
        mine = list(evals)[len(evals) - len(self.history):]
        return next((dict(row, step=s) for (s, _), row in zip(mine, self.history, strict=True) if s == step), None)
