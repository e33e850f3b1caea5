"""End to end with the real SmolLM2-135M-Instruct: both tuning stages and the evaluation, small sizes."""

from __future__ import annotations

import json

import polars as pl
import pytest

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.models.adapters import CARD_JSON, verify_adapter
from explainrec_core.pipeline import run_step
from tests.conftest import write_params

pytestmark = pytest.mark.e2e


def test_tallrec_recipe_on_smollm2(tmp_path, ml100k_raw, smollm2_dir):
    write_params(
        tmp_path, data={"raw_dir": str(ml100k_raw)},
        model={"base": ""},  # the embedded model, as `make demo` uses it
        alpaca={"max_samples": 4},
        alpaca_training={"epochs": 1, "batch_size": 2, "cutoff": 256, "warmup_steps": 0},
        rec_prompts={"train_samples": 8, "valid_samples": 8, "test_samples": 16, "cold_start_samples": 8},
        llm_training={"epochs": 1, "batch_size": 4, "grad_accum": 1, "eval_every": 1, "warmup_steps": 0},
    )
    cfg = load_config(tmp_path / "params.yaml")
    stats = {}
    for step in ("ingest", "samples", "cold_start_sets", "alpaca_data", "validate", "base_model",
                 "alpaca_adapter", "rec_prompts", "rec_adapter", "rec_evaluation"):
        stats[step] = run_step(step, cfg, tmp_path)

    assert stats["base_model"]["source"] == "embedded:SmolLM2-135M-Instruct"
    assert stats["base_model"]["parameters"] == 134_515_008
    for adapter in (paths.ALPACA_ADAPTER, paths.REC_ADAPTER):
        # 30 layers x (q_proj, v_proj), r = 8: 60 A/B pairs
        assert verify_adapter(tmp_path / adapter, expected_modules=60)["tensors"] == 120
    card = json.loads((tmp_path / paths.REC_ADAPTER / CARD_JSON).read_text())
    assert card["base_model"] == "embedded:SmolLM2-135M-Instruct" and card["data"]["train_examples"] == 8
    assert stats["alpaca_adapter"]["final_loss"] < 5  # a pretrained LM on instructions, not random weights
    scores = pl.read_parquet(tmp_path / paths.REC_SCORES)
    assert scores["p_yes"].is_between(0, 1).all() and scores["p_yes"].n_unique() > 10
    for name in ("test", "new_user", "new_item"):
        assert stats["rec_evaluation"][name]["n"] in (8, 16)
