"""The multi-task loss (paper eq. 10-11): preference prediction (Yes/No) and rating prediction (a verbalised star
rating) of the same samples, summed with fixed or adaptive task weights (training/task_weights.py, torchjd).

Task sampler. A training example is a bundle: the sample's Yes/No example with its rating example attached
(`Example.extra`). The engine's seeded per-epoch shuffle draws bundles, so every micro-batch holds both tasks of the
same samples in equal numbers: each task's term is present at every step, which uncertainty weighting and DWA
need (a batch without one task would leave its weight with nothing to learn from, and DWA's loss history with a
hole), and the two terms are estimated on the same users.

Each term is the mean token cross-entropy of its task's responses in the micro-batch (the causal-LM loss on the
response tokens: " Yes."/" No." + EOS, or the rating's tokens + EOS):

    L = w_pref * L_pref + w_rating * L_rating            (fixed: multitask.preference_weight / rating_weight)
    L = sum_k 0.5 exp(-s_k) L_k + 0.5 s_k                 (uncertainty: s_k learned with the LoRA)
    L = sum_k K softmax_k(r_k / T) L_k                    (dwa: r_k = L_k's mean over the last window / the one before)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from explainrec_core.config import MultitaskConfig
from explainrec_core.training.engine import Example, collate
from explainrec_core.training.task_weights import TaskWeighting

TASKS = ("preference", "rating")


def bundle(preference: Example, rating: Example) -> Example:
    """The training unit: the Yes/No example carrying the same sample's rating example."""
    return Example(input_ids=preference.input_ids, labels=preference.labels, answer_pos=preference.answer_pos,
                   extra=(rating,))


class MultitaskLoss:
    """A stateful `loss_fn` for `training.engine.train` over bundles (see the module docstring)."""

    def __init__(self, settings: MultitaskConfig):
        self.settings = settings
        fixed = {"preference": settings.preference_weight, "rating": settings.rating_weight}
        self.weighting = TaskWeighting(list(TASKS), fixed, settings.weighting, settings.dwa_window,
                                       settings.dwa_temperature)
        self.last_terms: dict[str, float] = {}

    def param_groups(self) -> list[dict]:
        """uncertainty: the log-variances, at their own rate and without weight decay (it would pull the tasks'
        weights together)."""
        return self.weighting.param_groups(self.settings.weighting_lr)

    def terms(self, model, examples: Sequence[Example], pad_token_id: int, device) -> dict[str, torch.Tensor]:
        if any(len(ex.extra) != 1 for ex in examples):
            raise ValueError("multi-task examples must each carry exactly one rating example (use `bundle`)")
        return {"preference": model(**collate(list(examples), pad_token_id, device)).loss,
                "rating": model(**collate([ex.extra[0] for ex in examples], pad_token_id, device)).loss}

    def __call__(self, model, examples: Sequence[Example], pad_token_id: int, device, step: int = 0) -> torch.Tensor:
        terms = self.terms(model, examples, pad_token_id, device)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        self.weighting.to(terms["preference"].device)
        return self.weighting(terms, step)

    def state_dict(self) -> dict:
        return {"weighting": self.weighting.state_dict_json()}

    def load_state_dict(self, state: dict) -> None:
        self.weighting.load_state_dict_json(state["weighting"])
