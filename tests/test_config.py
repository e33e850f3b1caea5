"""params.yaml loading: typed, strict about unknown keys and wrong types."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from explainrec_core.config import Config, load_config
from explainrec_core.errors import ConfigError
from tests.conftest import REPO


def test_project_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.samples.history_len == 10 and cfg.samples.like_threshold == 3.0
    assert cfg.quality.min_timestamp == dt.date(1990, 1, 1)
    assert cfg.lora.target_modules == ("q_proj", "v_proj") and cfg.alpaca_training.lr == 3e-4
    # the data protocol in params.yaml is the documented default, except the demo's held-back stream
    assert cfg.data.stream_holdout == 0.01
    assert (replace(cfg.data, stream_holdout=0.0), cfg.samples, cfg.split, cfg.cold_start) == (
        Config().data, Config().samples, Config().split, Config().cold_start)


@pytest.mark.parametrize("text, message", [
    ("samples:\n  histroy_len: 5\n", "unknown keys ['histroy_len']"),
    ("samples:\n  history_len: ten\n", "samples:history_len: expected int, got 'ten'"),
    ("split:\n  train: 0.95\n  valid: 0.1\n", "must be positive and sum to < 1"),
    ("samples:\n  min_history: 0\n", "1 <= min_history (0)"),
    ("quality:\n  min_timestamp: yesterday\n", "expected a date YYYY-MM-DD"),
    ("samples: [1, 2]\n", "expected a mapping for SamplesConfig"),
])
def test_invalid_params_are_rejected(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="settings file not found"):
        load_config(tmp_path / "nope.yaml")


def test_integers_are_accepted_for_floats(tmp_path):
    (tmp_path / "p.yaml").write_text("samples:\n  like_threshold: 4\n")
    assert load_config(tmp_path / "p.yaml").samples.like_threshold == 4.0


def test_a_profile_extends_params_yaml_and_changes_only_what_it_lists(tmp_path):
    from explainrec_core.config import load_config

    paper, demo = load_config("params/paper.yaml"), load_config("params.yaml")
    assert paper.rec_prompts.test_samples >= 2000 and paper.rec_prompts.train_samples >= 256
    assert paper.llm_training.lr == demo.llm_training.lr and paper.lora == demo.lora  # inherited
    assert paper.baselines.hyperparameters == demo.baselines.hyperparameters and paper.samples == demo.samples
    assert paper.baselines.seeds == (0, 1, 2) and len(demo.baselines.seeds) == 1
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nsplit: {train: 0.7}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    import pytest

    from explainrec_core.errors import ConfigError
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("split: {train: 0.6, valid: 0.2}\nrec_prompts: {seed: 3}\n")
    cfg = load_config(tmp_path / "a.yaml")
    assert (cfg.split.train, cfg.split.valid, cfg.rec_prompts.seed) == (0.7, 0.2, 3)
