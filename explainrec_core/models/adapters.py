"""LoRA adapters: attach, save atomically with a model card, verify, reload.

TALLRec's pinned peft saved empty 443-byte adapters and nobody noticed until evaluation. Every adapter we
write is verified before it replaces the previous one (tensors present, A/B pairs complete, finite values,
one pair per adapted module of the base model), and every load verifies again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import torch
from safetensors import safe_open

from explainrec_core.config import LoraConfig
from explainrec_core.errors import ExplainRecError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
CARD = "README.md"
CARD_JSON = "model_card.json"


class AdapterError(ExplainRecError):
    """An adapter folder is missing, empty, incomplete or corrupted."""


def attach_lora(model, cfg: LoraConfig):
    """Wrap a causal LM with fresh LoRA weights on `cfg.target_modules`."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    return get_peft_model(model, PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))


def expected_lora_modules(base_model, target_modules) -> int:
    """How many modules of `base_model` a LoRA on `target_modules` adapts."""
    names = [name for name, _ in base_model.named_modules()]
    return sum(1 for name in names if name.rsplit(".", 1)[-1] in set(target_modules))


def verify_adapter(folder: Path, expected_modules: int | None = None) -> dict:
    """Check an adapter folder; return {tensors, parameters, bytes}. Raises AdapterError naming the problem."""
    folder = Path(folder)
    weights, config = folder / WEIGHTS, folder / CONFIG
    for path in (config, weights):
        if not path.is_file():
            raise AdapterError(f"{path}: missing (not a saved adapter)")
    try:
        with safe_open(weights, framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises several types for truncated or garbled files
        raise AdapterError(f"{weights}: unreadable ({type(exc).__name__}: {exc})") from None
    if not tensors:
        raise AdapterError(f"{weights}: holds no tensors ({weights.stat().st_size} bytes): an empty adapter")
    a_keys = {k.replace("lora_A", "") for k in tensors if "lora_A" in k}
    b_keys = {k.replace("lora_B", "") for k in tensors if "lora_B" in k}
    if not a_keys or a_keys != b_keys:
        raise AdapterError(f"{weights}: incomplete LoRA pairs ({len(a_keys)} A, {len(b_keys)} B matrices)")
    if expected_modules is not None and len(a_keys) != expected_modules:
        raise AdapterError(f"{weights}: {len(a_keys)} adapted modules, the base model has {expected_modules}")
    bad = [k for k, t in tensors.items() if not torch.isfinite(t).all()]
    if bad:
        raise AdapterError(f"{weights}: non-finite values in {bad[:3]}")
    return {"tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values()),
            "bytes": weights.stat().st_size}


def save_adapter(model, target: Path, card: dict, expected_modules: int | None = None, extras=None) -> dict:
    """save_pretrained (safetensors) + model card into a temporary folder, verify, then swap it into place.

    `extras(folder)` writes further files into the same folder first (an item-token fusion), so they are swapped
    in with the adapter. The previous adapter at `target` stays intact unless the new one verifies.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        model.save_pretrained(staging, safe_serialization=True)
        stats = verify_adapter(staging, expected_modules)
        if extras is not None:
            extras(staging)
        card = {**card, "adapter": stats}
        (staging / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
        (staging / CARD).write_text(render_card(card))
        old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return stats
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_adapter(base_model, folder: Path, trainable: bool = False, expected_modules: int | None = None):
    """A PeftModel of `base_model` with the verified adapter in `folder`."""
    from peft import PeftModel

    verify_adapter(folder, expected_modules)
    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)


def render_card(card: dict) -> str:
    """A Hugging Face style model card: YAML front matter plus the facts people look for."""
    lines = ["---", "library_name: peft", f"base_model: {card.get('base_model', '?')}", "tags: [lora, explainrec]",
             "---", "", f"# {card.get('name', 'adapter')}", "", card.get("description", ""), ""]
    for section in ("base_model_source", "data", "lora", "training", "metrics", "adapter"):
        if section in card:
            lines += [f"## {section.replace('_', ' ')}", "", "```json",
                      json.dumps(card[section], indent=2, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)
