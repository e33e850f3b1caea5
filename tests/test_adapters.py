"""Adapters: saved verified with a model card, reloaded in a fresh process with the same scores; empty,
truncated and incomplete adapters are refused; a failed save leaves the previous adapter intact."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from explainrec_core.config import LoraConfig
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models import adapters
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm
from explainrec_core.prompts import RESPONSE_MARKER
from tests.test_scoring import PROMPTS

LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


def _trained_lora(base_dir):
    model = adapters.attach_lora(load_causal_lm(base_dir), LORA)
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: LoRA B starts at zero, which would hide a broken reload
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return model


def test_save_reload_in_a_fresh_process_gives_the_same_scores(tiny_llm_dir, tokenizer, tmp_path):
    model = _trained_lora(tiny_llm_dir)
    ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    expected = score_yes(model, tokenizer, PROMPTS, ids)
    base_scores = score_yes(load_causal_lm(tiny_llm_dir), tokenizer, PROMPTS, ids)
    assert not np.allclose(expected, base_scores), "the adapter must change the scores for this test to mean much"

    stats = adapters.save_adapter(model, tmp_path / "adapter", {"name": "t", "lora": {"r": 4}},
                                  expected_modules=4)  # 2 layers x (q_proj, v_proj)
    assert stats["tensors"] == 8 and (tmp_path / "adapter" / adapters.WEIGHTS).stat().st_size > 1000
    card = (tmp_path / "adapter" / adapters.CARD).read_text()
    assert card.startswith("---\nlibrary_name: peft") and '"r": 4' in card

    script = (
        "import json, sys\n"
        "from explainrec_core.models.base_model import load_causal_lm, load_tokenizer\n"
        "from explainrec_core.models.adapters import load_adapter\n"
        "from explainrec_core.evaluation.scoring import score_yes\n"
        "base, adapter, ids, prompts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])\n"
        "model = load_adapter(load_causal_lm(base), adapter)\n"
        "print(json.dumps(score_yes(model, load_tokenizer(base), prompts, ids).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tiny_llm_dir), str(tmp_path / "adapter"),
                          json.dumps(ids), json.dumps(PROMPTS)], capture_output=True, text=True, check=True)
    np.testing.assert_allclose(json.loads(out.stdout.strip().splitlines()[-1]), expected, atol=1e-6)


def test_empty_truncated_and_incomplete_adapters_are_refused(tiny_llm_dir, tmp_path):
    adapters.save_adapter(_trained_lora(tiny_llm_dir), tmp_path / "good", {"name": "t"})
    weights = tmp_path / "good" / adapters.WEIGHTS

    save_file({}, str(weights))  # what TALLRec's old peft wrote: a valid file with no tensors
    with pytest.raises(adapters.AdapterError, match="no tensors"):
        adapters.verify_adapter(tmp_path / "good")

    adapters.save_adapter(_trained_lora(tiny_llm_dir), tmp_path / "good", {"name": "t"})
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(adapters.AdapterError, match="unreadable"):
        adapters.load_adapter(load_causal_lm(tiny_llm_dir), tmp_path / "good")

    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.ones(4, 16)}, str(weights))
    with pytest.raises(adapters.AdapterError, match="incomplete LoRA pairs"):
        adapters.verify_adapter(tmp_path / "good")

    adapters.save_adapter(_trained_lora(tiny_llm_dir), tmp_path / "good", {"name": "t"})
    with pytest.raises(adapters.AdapterError, match="4 adapted modules, the base model has 30"):
        adapters.verify_adapter(tmp_path / "good", expected_modules=30)


def test_failed_save_keeps_the_previous_adapter(tiny_llm_dir, tmp_path):
    target = tmp_path / "adapter"
    adapters.save_adapter(_trained_lora(tiny_llm_dir), target, {"name": "first"})
    before = (target / adapters.WEIGHTS).read_bytes()
    broken = _trained_lora(tiny_llm_dir)
    with torch.no_grad():
        next(p for n, p in broken.named_parameters() if "lora_A" in n).fill_(float("nan"))
    with pytest.raises(adapters.AdapterError, match="non-finite"):
        adapters.save_adapter(broken, target, {"name": "second"})
    assert (target / adapters.WEIGHTS).read_bytes() == before
    assert json.loads((target / adapters.CARD_JSON).read_text())["name"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"], "temporary folders left behind"
