"""The attributed prompts on real ML-100K: a prompt never depends on its sample's label."""

from __future__ import annotations

import polars as pl
import pytest

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.pipeline import run_step
from tests.conftest import fast_llm_params, write_params

CUTOFF = 300  # tight enough that most attributed prompts lose history items


@pytest.fixture(scope="module")
def prompt_project(tmp_path_factory, ml100k_raw, tiny_llm_dir):
    root = tmp_path_factory.mktemp("explain_prompts")
    params = fast_llm_params(tiny_llm_dir)
    params["llm_training"]["cutoff"] = CUTOFF
    params["rec_prompts"].update({"train_samples": 40, "test_samples": 40, "cold_start_samples": 20})
    write_params(root, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"}, **params)
    cfg = load_config(root / "params.yaml")
    for step in ("ingest", "samples", "cold_start_sets", "base_model", "rec_prompts", "item_attributes",
                 "explain_prompts"):
        run_step(step, cfg, root)
    return root, cfg


def test_flipping_a_label_leaves_the_prompt_unchanged(prompt_project):
    root, cfg = prompt_project
    before = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    assert (before["n_history_dropped"] > 0).sum() >= 10, "the cutoff must bind for this test to mean anything"
    samples_file = paths.resolve(paths.processed("samples"), cfg, root)
    samples = pl.read_parquet(samples_file)
    samples.with_columns((1 - pl.col("label")).alias("label")).write_parquet(samples_file)
    try:
        run_step("explain_prompts", cfg, root)
    finally:
        samples.write_parquet(samples_file)
    after = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    for column in ("prompt", "prompt_plain", "n_history_dropped"):
        assert after[column].to_list() == before[column].to_list(), column
    # ... while the responses did follow the flipped labels
    assert [r[:3] for r in after["response"]] == ["No." if label else "Yes" for label in before["label"]]


def test_prompt_and_longer_response_fit_the_cutoff(prompt_project, tokenizer):
    root, _ = prompt_project
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    for prompt, response in zip(prompts["prompt"], prompts["response"], strict=True):
        assert len(tokenizer(prompt + response)["input_ids"]) + 1 <= CUTOFF
