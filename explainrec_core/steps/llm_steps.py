"""LLM steps: base model -> Alpaca adapter (stage 1) -> rec prompts -> rec adapter (stage 2) -> scores and AUC.

TALLRec's recipe: LoRA instruction tuning on Alpaca data, then recommendation tuning that continues from the
stage-1 LoRA weights, with the loss on the answer only and early stopping on validation AUC.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl
import torch

from explainrec_core import paths
from explainrec_core.config import Config, TrainConfig
from explainrec_core.data.alpaca import load_alpaca
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.io import is_main_process, sha256_file, write_json, write_parquet
from explainrec_core.models import adapters
from explainrec_core.models.base_model import (
    cache_dir,
    describe,
    load_causal_lm,
    load_tokenizer,
    local_path,
    resolve_base,
)
from explainrec_core.plots import plot_training
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import RESPONSE_MARKER, alpaca_prompt, build_rec_prompt, quote_item, rec_response
from explainrec_core.training.engine import TrainResult, train
from explainrec_core.training.examples import encode_all

EVAL_SETS = ("test", "new_user", "new_item")


def run_base_model(cfg: Config, root: Path) -> dict:
    path, source = resolve_base(cfg.model)
    info = describe(path, source, RESPONSE_MARKER).to_dict()
    write_json(info, root / paths.BASE_MODEL)
    return info


def _base_info(root: Path) -> dict:
    """The base_model manifest, with `path` resolved to this machine's folder."""
    info = json.loads((root / paths.BASE_MODEL).read_text())
    return {**info, "path": str(local_path(info["path"]))}


def load_base(root: Path):
    """(manifest, model, tokenizer): bf16 weights on a GPU (LoRA weights stay fp32), fp32 on the CPU."""
    info = _base_info(root)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = load_causal_lm(Path(info["path"]), dtype=dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return info, model, load_tokenizer(Path(info["path"]))



def _checkpoint_dir(root: Path, name: str, *parts: object) -> Path:
    """A checkpoint folder keyed by everything that defines the run, so a changed run never resumes a stale one."""
    key = hashlib.sha256(json.dumps([str(p) for p in parts], sort_keys=True).encode()).hexdigest()[:12]
    return root / paths.CHECKPOINTS / f"{name}-{key}"


def _fit(name: str, model, tokenizer, examples, train_cfg: TrainConfig, checkpoint_dir: Path,
         evaluate=None, loss_fn=None, lr_by_prefix: dict[str, float] | None = None) -> TrainResult:
    if not examples:
        raise ValueError(f"{name}: the training set is empty (check the sample sizes and the cutoff)")
    steps_per_epoch = -(-len(examples) // (train_cfg.batch_size * train_cfg.grad_accum))
    total = steps_per_epoch * train_cfg.epochs
    if train_cfg.max_steps:
        total = min(total, train_cfg.max_steps)
    with progress_bar(total, f"{name}: training") as advance:
        return train(model, examples, train_cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=checkpoint_dir,
                     evaluate=evaluate, on_step=lambda step, loss: advance(1, info=f"loss {loss:.3f}"),
                     loss_fn=loss_fn, lr_by_prefix=lr_by_prefix)


def _finish(name: str, target: str, model, result: TrainResult, card: dict, root: Path, checkpoint_dir: Path,
            base_model, extras=None, metric_name: str = "valid AUC") -> dict:
    """Save the verified adapter with its card (and `extras(folder)`'s files, e.g. an item-token fusion), plot its
    training curve, drop the finished run's checkpoint."""
    summary = {k: v for k, v in result.to_dict().items() if k not in ("losses", "evals")}
    summary["final_loss"] = result.losses[-1][1] if result.losses else None
    if not is_main_process():
        return summary
    expected = adapters.expected_lora_modules(base_model, card["lora"]["target_modules"])
    stats = adapters.save_adapter(model, root / target, card, expected_modules=expected, extras=extras)
    plot = plot_training(result.losses, result.evals, f"{name} (training loss, {metric_name})",
                         root / paths.FIGURES / f"{name}_training.png", metric_name=metric_name)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run finished: nothing to resume
    summary["adapter"] = stats
    summary["plot"] = str(plot.relative_to(root))
    return summary


def run_alpaca_data(cfg: Config, root: Path) -> dict:
    data = load_alpaca(cfg.alpaca.data_path, cache_dir(cfg.model), cfg.alpaca.max_samples, cfg.alpaca.seed)
    write_parquet(data, root / paths.ALPACA_DATA)
    return {"n_records": data.height, "source": cfg.alpaca.data_path or "self-instruct seed tasks",
            "with_input": int((data["input"].str.len_chars() > 0).sum())}


def run_alpaca_adapter(cfg: Config, root: Path) -> dict:
    info, model, tokenizer = load_base(root)
    data = pl.read_parquet(root / paths.ALPACA_DATA)
    pairs = [(alpaca_prompt(r["instruction"], r["input"]), r["output"]) for r in data.iter_rows(named=True)]
    examples, skipped = encode_all(tokenizer, pairs, cfg.alpaca_training.cutoff)
    lora_model = adapters.attach_lora(model, cfg.lora)
    ckpt = _checkpoint_dir(root, "alpaca_adapter", info, cfg.lora, cfg.alpaca_training,
                           sha256_file(root / paths.ALPACA_DATA))
    result = _fit("alpaca_adapter", lora_model, tokenizer, examples, cfg.alpaca_training, ckpt)
    card = {"name": "alpaca_adapter", "description": "Stage 1 of the TALLRec recipe: LoRA instruction tuning.",
            "base_model": info["source"], "base_model_source": info,
            "data": {"file": paths.ALPACA_DATA, "sha256": sha256_file(root / paths.ALPACA_DATA),
                     "examples": len(examples), "skipped_longer_than_cutoff": skipped},
            "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.alpaca_training),
            "metrics": {"final_loss": result.losses[-1][1] if result.losses else None}}
    summary = _finish("alpaca_adapter", paths.ALPACA_ADAPTER, lora_model, result, card, root, ckpt, model)
    return {**summary, "examples": len(examples), "skipped_longer_than_cutoff": skipped}


def _as_dict(obj) -> dict:
    """A settings dataclass as JSON-friendly dict (tuples as lists) for model cards."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(obj).items()}


def run_rec_prompts(cfg: Config, root: Path) -> dict:
    """Seeded sample sets (train few-shot, valid, test, cold-start) with their TALLRec prompts."""
    rp = cfg.rec_prompts
    samples = pl.read_parquet(paths.resolve(paths.processed("samples"), cfg, root))
    cold = pl.read_parquet(paths.resolve(paths.processed("cold_start_sets"), cfg, root))
    items = pl.read_parquet(paths.resolve(paths.processed("items"), cfg, root))
    tokenizer = load_tokenizer(Path(_base_info(root)["path"]))

    def pick_cold(members: pl.DataFrame, test_ids: pl.Series, n: int) -> pl.DataFrame:
        """A uniform random n-subset of a cold-start set that reuses the test subset's members first: those are a
        uniform random subset already, topped up at random from the rest, so the subset stays uniform while most
        cold-start prompts are scored once for both sets (new users are ~86% of ML-100K's test split)."""
        if not 0 < n < members.height:
            return members.sort("sample_id")
        inside = members.filter(pl.col("sample_id").is_in(test_ids.implode()))
        if inside.height >= n:
            return pick(inside, n, rp.seed)
        rest = members.filter(~pl.col("sample_id").is_in(test_ids.implode()))
        return pl.concat([inside, pick(rest, n - inside.height, rp.seed)]).sort("sample_id")

    test_ids = pick(samples.filter(pl.col("split") == "test"), rp.test_samples, rp.seed)["sample_id"]
    chosen = {
        "train": pick(samples.filter(pl.col("split") == "train"), rp.train_samples, rp.seed)["sample_id"],
        "valid": pick(samples.filter(pl.col("split") == "valid"), rp.valid_samples, rp.seed)["sample_id"],
        "test": test_ids,
        **{name: pick_cold(cold.filter(pl.col("set") == name), test_ids, rp.cold_start_samples)["sample_id"]
           for name in ("new_user", "new_item")},
    }
    table, built = prompt_table(samples, chosen, items, tokenizer, cfg)
    write_parquet(table, root / paths.REC_PROMPTS)
    return prompt_stats(table, built, tokenizer)


def pick(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """A seeded uniform n-subset of `frame` in sample_id order (all of it when n is 0 or covers it)."""
    frame = frame.sort("sample_id")
    return frame.sample(n=n, seed=seed).sort("sample_id") if 0 < n < frame.height else frame


def prompt_table(rows: pl.DataFrame, chosen: dict[str, pl.Series], items: pl.DataFrame, tokenizer,
                 cfg: Config) -> tuple[pl.DataFrame, dict]:
    """TALLRec prompts of the chosen samples: set name -> sample ids, read from `rows` (sample_id, user_id,
    item_id, label, history_item_ids, history_ratings). Returns (the prompts table, sample_id -> built prompt).
    Every prompt's token budget is the same whatever its label (the longer answer's length is reserved)."""
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    wanted = pl.concat(list(chosen.values())).unique()
    rows = rows.filter(pl.col("sample_id").is_in(wanted.implode()))
    response_tokens = 1 + max(len(tokenizer(rec_response(label), add_special_tokens=False)["input_ids"])
                              for label in (0, 1))

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    built = {}
    for r in rows.iter_rows(named=True):
        history = [(titles[i], rating) for i, rating in zip(r["history_item_ids"], r["history_ratings"], strict=True)]
        built[r["sample_id"]] = build_rec_prompt(history, titles[r["item_id"]], cfg.samples.like_threshold, count,
                                                 cfg.llm_training.cutoff, response_tokens)
    meta = rows.select("sample_id", "user_id", "item_id", "label")
    table = pl.concat([
        meta.filter(pl.col("sample_id").is_in(ids.implode())).with_columns(pl.lit(name).alias("set"))
        for name, ids in chosen.items()
    ]).with_columns(
        pl.col("sample_id").map_elements(lambda s: built[s].prompt, return_dtype=pl.String).alias("prompt"),
        pl.col("label").map_elements(rec_response, return_dtype=pl.String).alias("response"),
        pl.col("sample_id").map_elements(lambda s: built[s].n_history_used, return_dtype=pl.Int32)
        .alias("n_history_used"),
        pl.col("sample_id").map_elements(lambda s: built[s].n_history_dropped, return_dtype=pl.Int32)
        .alias("n_history_dropped"),
    ).select("set", "sample_id", "user_id", "item_id", "label", "prompt", "response", "n_history_used",
             "n_history_dropped")
    return table, built


def prompt_stats(table: pl.DataFrame, built: dict, tokenizer) -> dict:
    return {
        "sets": {name: {"n": part.height, "positive_rate": round(float(part["label"].mean()), 4)}
                 for (name,), part in table.group_by("set", maintain_order=True)},
        "truncated_prompts": sum(1 for p in built.values() if p.n_history_dropped),
        "history_items_dropped": sum(p.n_history_dropped for p in built.values()),
        "max_prompt_tokens": max(len(tokenizer(p.prompt)["input_ids"]) for p in built.values()),
    }


def _scorer(tokenizer, answer_ids: dict, prompts: list[str], labels: list[int], batch_size: int):
    def evaluate(model) -> float:
        value = auc(labels, score_yes(model, tokenizer, prompts, answer_ids, batch_size))
        return 0.5 if value is None else value

    return evaluate


def run_rec_adapter(cfg: Config, root: Path) -> dict:
    return train_rec_adapter(cfg, root, "rec_adapter", paths.REC_PROMPTS, paths.REC_ADAPTER, ("train", "valid"),
                             "Stage 2 of the TALLRec recipe: recommendation tuning from the stage-1 adapter "
                             "(answers Yes./No.; P(Yes) from the answer-token logits).")


def train_rec_adapter(cfg: Config, root: Path, name: str, prompts_file: str, target: str,
                      sets: tuple[str, str], description: str) -> dict:
    """Stage 2 of the TALLRec recipe on the prompts' `sets` = (training set, validation set): LoRA continued from
    the stage-1 adapter, loss on the answer, early stopping on the validation set's AUC (llm_training)."""
    info, model, tokenizer = load_base(root)
    prompts = pl.read_parquet(root / prompts_file)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s) for s in sets)
    examples, skipped = encode_all(tokenizer, zip(train_rows["prompt"], train_rows["response"], strict=True),
                                   cfg.llm_training.cutoff)
    lora_model = adapters.load_adapter(model, root / paths.ALPACA_ADAPTER, trainable=True)
    evaluate = _scorer(tokenizer, info["answer_token_ids"], valid_rows["prompt"].to_list(),
                       valid_rows["label"].to_list(), cfg.evaluation.batch_size)
    ckpt = _checkpoint_dir(root, name, info, cfg.llm_training, sha256_file(root / prompts_file),
                           sha256_file(root / paths.ALPACA_ADAPTER / adapters.WEIGHTS))
    result = _fit(name, lora_model, tokenizer, examples, cfg.llm_training, ckpt, evaluate=evaluate)
    card = {"name": name, "description": description,
            "base_model": info["source"], "base_model_source": info,
            "data": {"file": prompts_file, "sha256": sha256_file(root / prompts_file), "sets": list(sets),
                     "train_examples": len(examples), "valid_samples": valid_rows.height,
                     "skipped_longer_than_cutoff": skipped},
            "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.llm_training),
            "metrics": {"best_valid_auc": result.best_metric, "best_step": result.best_step,
                        "valid_auc_by_step": result.evals}}
    summary = _finish(name, target, lora_model, result, card, root, ckpt, model)
    return {**summary, "examples": len(examples), "skipped_longer_than_cutoff": skipped,
            "valid_auc": result.best_metric}


def score_prompts(model, tokenizer, info: dict, prompts: pl.DataFrame, batch_size: int,
                  label: str) -> tuple[pl.DataFrame, dict]:
    """P(Yes) of every prompt row (a sample in several sets is scored once): (set, sample_id, user_id, item_id,
    label, p_yes) sorted by set and sample, and the scoring speed."""
    unique = prompts.unique("sample_id").sort("sample_id")
    start = time.perf_counter()
    with progress_bar(unique.height, f"{label}: scoring") as advance:
        p_yes = score_yes(model, tokenizer, unique["prompt"].to_list(), info["answer_token_ids"], batch_size,
                          on_batch=advance)
    seconds = time.perf_counter() - start
    scores = prompts.select("set", "sample_id", "user_id", "item_id", "label").join(
        unique.select("sample_id").with_columns(pl.Series("p_yes", p_yes)), on="sample_id")
    speed = {"samples": unique.height, "seconds": round(seconds, 2),
             "samples_per_s": round(unique.height / seconds, 3), "batch_size": batch_size,
             "device": str(next(model.parameters()).device)}
    return scores.sort("set", "sample_id"), speed


def run_rec_evaluation(cfg: Config, root: Path) -> dict:
    """P(Yes) for the test and cold-start samples with the rec adapter; AUC per set."""
    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.REC_ADAPTER)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS))
    scores, speed = score_prompts(model, tokenizer, info, prompts, cfg.evaluation.batch_size, "rec_evaluation")
    write_parquet(scores, root / paths.REC_SCORES)
    metrics: dict = {}
    for name in EVAL_SETS:
        part = scores.filter(pl.col("set") == name)
        metrics[name] = {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height,
                         "positives": int(part["label"].sum())}
    metrics["scoring"] = speed
    return metrics
