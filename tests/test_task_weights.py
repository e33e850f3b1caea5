"""Adaptive task weights (paper eq. 10-11): the direction each scheme moves the weights when one task stalls."""

from __future__ import annotations

import pytest
import torch

from explainrec_core.training.task_weights import TaskWeighting

FIXED = {"answer": 1.0, "explanation": 0.5}


def _stalled_and_falling(step: int) -> dict[str, torch.Tensor]:
    """The answer loss keeps falling; the explanation loss stalls at 1."""
    return {"answer": torch.tensor(2.0 / (1 + step)), "explanation": torch.tensor(1.0)}


def test_fixed_weights_are_the_hand_set_ones():
    w = TaskWeighting(list(FIXED), FIXED, "fixed")
    total = w(_stalled_and_falling(0), step=0)
    assert total.item() == pytest.approx(1.0 * 2.0 + 0.5 * 1.0)
    assert w.weights() == FIXED and w.trainable_parameters() == []


def test_dwa_moves_weight_to_the_task_whose_loss_stalls():
    w = TaskWeighting(list(FIXED), FIXED, "dwa", dwa_window=2, dwa_temperature=1.0)
    for step in range(8):
        w(_stalled_and_falling(step), step)
    first, last = w.history[0][1], w.history[-1][1]
    assert first == {"answer": 1.0, "explanation": 1.0}  # uniform until two windows have averages
    assert last["explanation"] > 1.0 > last["answer"] and sum(last.values()) == pytest.approx(2.0)
    # by hand for the last step (window 3): mean losses of windows 1 (steps 2, 3) and 2 (steps 4, 5)
    older, newer = (2 / 3 + 2 / 4) / 2, (2 / 5 + 2 / 6) / 2
    rate = torch.tensor([newer / older, 1.0])
    expected = 2 * torch.softmax(rate, 0)
    assert last["answer"] == pytest.approx(float(expected[0]), abs=1e-5)


def test_uncertainty_weighting_lowers_the_weight_of_the_task_that_stays_high():
    torch.manual_seed(0)
    w = TaskWeighting(list(FIXED), FIXED, "uncertainty")
    theta = torch.nn.Parameter(torch.tensor(2.0))
    optimizer = torch.optim.Adam([{"params": [theta], "lr": 0.05},
                                  {"params": w.trainable_parameters(), "lr": 0.05}])
    for step in range(300):
        # the answer loss falls to 0.2; the explanation loss stays at 3 (an irreducible, "stalled" task)
        terms = {"answer": theta ** 2 + 0.2, "explanation": 3.0 + 0.0 * theta}
        optimizer.zero_grad()
        w(terms, step).backward()
        optimizer.step()
    start, end = w.history[0][1], w.history[-1][1]
    assert start == {"answer": 0.5, "explanation": 0.5}  # log-variances start at 0
    assert end["answer"] > start["answer"] and end["explanation"] < start["explanation"]
    # at the optimum s_k = log L_k, so the weights tend to 0.5 / L_k: 2.5 and 1/6
    assert end["explanation"] == pytest.approx(0.5 / 3.0, rel=0.05) and end["answer"] == pytest.approx(2.5, rel=0.1)
    assert abs(theta.item()) < 0.1


def test_state_round_trip_resumes_the_same_weighting():
    for scheme in ("dwa", "uncertainty"):
        w = TaskWeighting(list(FIXED), FIXED, scheme, dwa_window=2)
        for step in range(6):
            w(_stalled_and_falling(step), step)
        if scheme == "uncertainty":
            with torch.no_grad():
                w.trainable_parameters()[0].add_(torch.tensor([0.3, -0.2]))
        again = TaskWeighting(list(FIXED), FIXED, scheme, dwa_window=2)
        again.load_state_dict_json(w.state_dict_json())
        assert again.weights() == w.weights() and again.history == w.history
        assert again(_stalled_and_falling(6), 6).item() == pytest.approx(w(_stalled_and_falling(6), 6).item())


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="weighting must be one of"):
        TaskWeighting(list(FIXED), FIXED, "pcgrad")
