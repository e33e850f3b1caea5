"""Base model resolution and tokenizer-agnostic answer tokens."""

from __future__ import annotations

import json

import pytest

from explainrec_core.config import ModelConfig
from explainrec_core.models.base_model import ModelError, answer_token_ids, describe, load_causal_lm, resolve_base
from explainrec_core.prompts import RESPONSE_MARKER


def test_answer_tokens_are_looked_up_in_the_tokenizer(tokenizer):
    ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    assert set(ids) == {"Yes", "No"} and ids["Yes"] != ids["No"]
    for answer, token in ids.items():
        assert tokenizer.decode([token]).strip() == answer
        # the id is exactly the token that follows the prompt when the answer is written out
        full = tokenizer(RESPONSE_MARKER + answer + ".")["input_ids"]
        assert full[len(tokenizer(RESPONSE_MARKER)["input_ids"])] == token


def test_local_folder_is_described(tiny_llm_dir):
    path, source = resolve_base(ModelConfig(base=str(tiny_llm_dir)))
    info = describe(path, source, RESPONSE_MARKER)
    assert info.source == f"local:{tiny_llm_dir}" and info.model_type == "llama"
    assert 0 < info.parameters < 2_000_000 and info.dtype == "torch.float32"


def test_embedded_smollm2(smollm2_dir):
    path, source = resolve_base(ModelConfig())
    assert path == smollm2_dir and source == "embedded:SmolLM2-135M-Instruct"
    assert json.loads((path / "config.json").read_text())["num_hidden_layers"] == 30


def test_bad_base_models(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_base(ModelConfig(base=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_base(ModelConfig(base=str(tmp_path / "empty")))
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"],
                                                     "hidden_size": 8, "num_attention_heads": 2,
                                                     "num_hidden_layers": 1, "intermediate_size": 8}))
    with pytest.raises(ModelError, match="causal language model"):
        load_causal_lm(encoder)


def test_the_base_model_manifest_is_the_same_on_every_machine(tmp_path, monkeypatch, tiny_llm_dir):
    """models/base_model.json is a DVC output: two machines with the same model in different cache folders must
    write the same bytes (no absolute path), and each resolves it to its own folder."""
    import shutil

    from explainrec_core.config import load_config
    from explainrec_core.steps.llm_steps import _base_info, run_base_model
    from tests.conftest import write_params

    manifests = []
    for machine in ("a", "b"):
        cache = tmp_path / machine / "cache"
        shutil.copytree(tiny_llm_dir, cache / "models" / "tiny")
        monkeypatch.setenv("EXPLAINREC_CACHE", str(cache))
        root = tmp_path / machine / "project"
        root.mkdir()
        cfg = load_config(write_params(root, model={"base": str(cache / "models" / "tiny")}))
        run_base_model(cfg, root)
        manifests.append((root / "models/base_model.json").read_bytes())
        assert _base_info(root)["path"] == str(cache / "models" / "tiny")
    assert manifests[0] == manifests[1]
    assert b"cache:models/tiny" in manifests[0] and str(tmp_path).encode() not in manifests[0]
