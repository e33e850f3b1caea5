"""Model selection of the explaining models: valid AUC + w * exp(-NLL of the reference explanations)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from explainrec_core.config import AttributionConfig
from explainrec_core.errors import ConfigError
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.training.joint_loss import joint_terms
from explainrec_core.training.selection import ExplainedSelection, explanation_nll
from tests.test_joint_loss import ANSWERS, NO, PROMPT, RESPONSES, YES, _examples, _tiny

PROMPTS = [PROMPT.replace("it?", f"it?{' Really.' * i}") for i in range(len(RESPONSES))]  # as _examples builds them
LABELS = [1, 0, 1]


def _manual_nll(model, examples) -> float:
    """The definition written out: one unpadded forward pass per sequence, CE of every token after the answer."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex.input_ids])).logits[0]
            targets = torch.tensor(ex.input_ids[ex.answer_pos + 1:])
            total += F.cross_entropy(logits[ex.answer_pos:-1], targets, reduction="sum").item()
            count += len(targets)
    return total / count


def test_explanation_nll_is_the_token_mean_over_all_examples_whatever_the_batching(tiny_llm_dir, tokenizer):
    model, examples = _tiny(tiny_llm_dir), _examples(tokenizer)
    expected = _manual_nll(model, examples)
    for batch_size in (1, 2, 3):  # padded batches of unequal explanation lengths: a per-token, not per-batch, mean
        got = explanation_nll(model, examples, tokenizer.pad_token_id, YES, NO, batch_size)
        assert got == pytest.approx(expected, rel=1e-4), batch_size


def test_criterion_adds_the_weighted_explanation_likelihood_to_the_auc(tiny_llm_dir, tokenizer):
    model = _tiny(tiny_llm_dir)
    expected_auc = auc(LABELS, score_yes(model, tokenizer, PROMPTS, ANSWERS, 2))
    nll = _manual_nll(model, _examples(tokenizer))

    auc_only = ExplainedSelection(tokenizer, ANSWERS, PROMPTS, RESPONSES, LABELS, 2, explanation_weight=0.0)
    assert auc_only(model) == pytest.approx(expected_auc)
    assert auc_only.history[0]["explanation_nll"] is None  # weight 0: the old rule, no extra pass

    select = ExplainedSelection(tokenizer, ANSWERS, PROMPTS, RESPONSES, LABELS, 2, explanation_weight=0.5)
    value = select(model)
    assert value == pytest.approx(expected_auc + 0.5 * math.exp(-nll), rel=1e-4)
    row = select.history[0]
    assert row["auc"] == pytest.approx(expected_auc) and row["explanation_nll"] == pytest.approx(nll, rel=1e-4)

    # Training on the reference explanations (the joint loss's explanation term) raises the explanation part.
    examples = _examples(tokenizer)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        joint_terms(model, examples, tokenizer.pad_token_id, torch.device("cpu"), YES, NO)["explanation"].backward()
        optimizer.step()
    model.eval()
    select(model)
    before, after = select.history
    assert after["explanation_token_prob"] > 10 * before["explanation_token_prob"]  # tiny model: ~7e-6 -> ~1e-3
    assert after["criterion"] - after["auc"] == pytest.approx(0.5 * after["explanation_token_prob"])


def test_the_components_of_the_kept_step_are_found_after_a_resume(tokenizer):
    select = ExplainedSelection(tokenizer, ANSWERS, PROMPTS, RESPONSES, LABELS, 2, explanation_weight=0.5)
    select.history = [{"auc": 0.6, "criterion": 0.8}, {"auc": 0.7, "criterion": 0.9}]  # this process's two evals
    evals = [(2, 0.7), (4, 0.75), (6, 0.8), (8, 0.9)]  # steps 2 and 4 were evaluated before the resume
    assert select.at_step(evals, 8) == {"auc": 0.7, "criterion": 0.9, "step": 8}
    assert select.at_step(evals, 2) is None  # evaluated by the interrupted process: its components are not known


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match="selection_explanation_weight"):
        AttributionConfig(selection_explanation_weight=-0.1)
