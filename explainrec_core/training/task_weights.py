"""Task weights of the joint loss (paper III-E, eq. 10-11): fixed, or adaptive with torchjd's scalarizers.

The joint loss has one term per task (answer, explanation, and the consistency term when it is on). How they are
summed is `attribution.loss.weighting`:

- `fixed`: the hand-set weights of `attribution.loss` (the earlier behaviour);
- `uncertainty`: Kendall et al.'s uncertainty weighting (torchjd `UW`): a learnable log-variance s_k per task,
  total = sum_k 0.5 exp(-s_k) L_k + 0.5 s_k; the s_k train with the LoRA weights (the engine adds
  `trainable_parameters()` to its optimizer, without weight decay). A task whose loss stays high (noisy, or
  stalled) gets a larger s_k, so a smaller weight 0.5 exp(-s_k): the documented direction;
- `dwa`: Liu et al.'s dynamic weight average (torchjd `DWA`), eq. 11's "adaptation over iterations": the weight of
  task k is K softmax_k(r_k / T) with r_k = L_k(t-1) / L_k(t-2), the ratio of its mean losses over the two
  previous windows of `dwa_window` optimizer steps (our runs are one epoch long, so a window stands in for DWA's
  epoch). A task whose loss stalls (r near 1) gains weight over one that still falls (r < 1).

`weights()` is each task's effective weight now, recorded at every optimizer step (`history`) for the step's
metrics and the training plot.
"""

from __future__ import annotations

import torch
from torch import nn
from torchjd.scalarization import DWA, UW

WEIGHTINGS = ("fixed", "uncertainty", "dwa")


class TaskWeighting(nn.Module):
    def __init__(self, tasks: list[str], fixed: dict[str, float], scheme: str = "fixed", dwa_window: int = 4,
                 dwa_temperature: float = 2.0) -> None:
        super().__init__()
        if scheme not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {scheme!r}")
        self.tasks, self.scheme, self.dwa_window = list(tasks), scheme, dwa_window
        self.register_buffer("fixed", torch.tensor([float(fixed[t]) for t in self.tasks]))
        self.uw = UW(len(self.tasks)) if scheme == "uncertainty" else None
        self.dwa = DWA(dwa_temperature) if scheme == "dwa" else None
        self.window = 0  # the DWA window the last call fell in
        self.history: list[tuple[int, dict[str, float]]] = []

    def forward(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The weighted total of `terms` (task -> scalar loss) at optimizer step `step`."""
        values = torch.stack([terms[t] for t in self.tasks])
        if self.dwa is not None:
            window = step // self.dwa_window
            while self.window < window:  # roll DWA's history once per finished window
                self.dwa.step()
                self.window += 1
        if not self.history or self.history[-1][0] != step:
            self.history.append((step, self.weights()))
        if self.uw is not None:
            return self.uw(values)
        if self.dwa is not None:
            return self.dwa(values)
        return (self.fixed.to(values.device) * values).sum()

    def weights(self) -> dict[str, float]:
        """Each task's effective weight on its loss now."""
        if self.uw is not None:
            w = 0.5 * torch.exp(-self.uw.log_var.detach())
        elif self.dwa is not None:
            w = self.dwa._compute_weights(torch.zeros(len(self.tasks)))  # depends on the loss history only
        else:
            w = self.fixed
        return {t: round(float(v), 6) for t, v in zip(self.tasks, w, strict=True)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.uw.parameters()) if self.uw is not None else []

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups for the weighting's own parameters (uncertainty weighting's log-variances): their own
        rate and no weight decay (it would pull every task's weight together); none for the other schemes."""
        params = self.trainable_parameters()
        return [{"params": params, "lr": lr, "weight_decay": 0.0}] if params else []

    def state_dict_json(self) -> dict:
        """JSON-able state for the training checkpoint (resume continues the same weighting)."""
        state: dict = {"window": self.window, "history": [[s, w] for s, w in self.history]}
        if self.uw is not None:
            state["log_var"] = self.uw.log_var.detach().tolist()
        if self.dwa is not None:
            state["dwa"] = {"loss_sum": None if self.dwa._loss_sum is None else self.dwa._loss_sum.tolist(),
                            "n_batches": self.dwa._n_batches,
                            "previous": [a.tolist() for a in self.dwa._previous_averages]}
        return state

    def load_state_dict_json(self, state: dict) -> None:
        self.window = int(state["window"])
        self.history = [(int(s), {k: float(v) for k, v in w.items()}) for s, w in state["history"]]
        if self.uw is not None:
            with torch.no_grad():
                self.uw.log_var.copy_(torch.tensor(state["log_var"]))
        if self.dwa is not None:
            d = state["dwa"]
            self.dwa._loss_sum = None if d["loss_sum"] is None else torch.tensor(d["loss_sum"])
            self.dwa._n_batches = int(d["n_batches"])
            self.dwa._previous_averages = [torch.tensor(a) for a in d["previous"]]
