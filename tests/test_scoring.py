"""P(Yes) scoring: batching and padding do not change scores; AUC agrees with sklearn and known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm
from explainrec_core.prompts import REC_INSTRUCTION, RESPONSE_MARKER, alpaca_prompt, rec_input

PROMPTS = [alpaca_prompt(REC_INSTRUCTION, rec_input(['"A (1990)"'] * n, ['"B (1991)"'] * (n % 3), '"C (1992)"'))
           for n in (1, 7, 3, 10, 2)]


def test_batched_scores_equal_one_by_one(tiny_llm_dir, tokenizer):
    model = load_causal_lm(tiny_llm_dir)
    ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    batched = score_yes(model, tokenizer, PROMPTS, ids, batch_size=4)
    single = score_yes(model, tokenizer, PROMPTS, ids, batch_size=1)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # and equal to a plain forward pass on the unpadded prompt
    with torch.inference_mode():
        logits = model(**tokenizer(PROMPTS[1], return_tensors="pt")).logits[0, -1]
    expected = torch.softmax(logits[[ids["Yes"], ids["No"]]], -1)[0].item()
    assert batched[1] == pytest.approx(expected, abs=1e-5)
    assert ((batched > 0) & (batched < 1)).all() and len(set(batched.round(6))) > 1


def test_auc():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([1, 0], [0.9, 0.1]) == 1.0
    assert auc([1, 1, 1], [0.2, 0.3, 0.4]) is None  # undefined with one class
