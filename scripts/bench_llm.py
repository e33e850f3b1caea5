"""Speed of the LLM paths against bare PyTorch/peft loops on the same model, prompts and batch.

    python scripts/bench_llm.py                       # CPU: the embedded SmolLM2, small sizes
    python scripts/bench_llm.py --batch-size 32 --train-steps 20 --score-prompts 512   # on a GPU
    python scripts/bench_llm.py --train-steps 0 --adapter runs/paper/models/rec_adapter \
        --auc-prompts runs/paper/data/prompts/rec_prompts.parquet --auc-samples 300   # the int8 AUC gate

Prints, and writes as JSON (--out):
  * scoring, each speed-up on top of the previous, measured back to back (interleaved over --reps):
    fp32 full prompts (share_prefix=False), + the shared preamble run once (share_prefix=True), + dynamic int8
    (CPU only); samples/s of wall time and per CPU-second of this process (on a CPU shared with other work the
    second is the steadier figure: run with OMP_NUM_THREADS=1 to compare work, not luck), and each variant's
    largest P(Yes) difference from fp32 full prompts; plus a bare forward pass with logits_to_keep=1 on the same
    left-padded full-prompt batches (target on GPU: ours within 1.5x of bare);
  * ranking: seconds per list of --rank-candidates candidates with `score_shared_prefix` (fp32, int8);
  * with --auc-prompts: validation AUC with fp32 and with int8 scoring (the gate for `evaluation.int8`: keep int8
    only if |delta AUC| < 0.005), on the base model plus --adapter if given;
  * training: our engine (accelerate, bf16 autocast on GPU, fp32 on CPU) vs a bare peft loop
    (the loop of shared/reference/gpu_anchor.py): tokens/s and the ratio (target on GPU: >= 90%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from bench_prefix import candidates as ranking_candidates  # the ranking shapes of scripts/bench_prefix.py
from bench_prefix import history as ranking_history

from explainrec_core.config import LoraConfig, ModelConfig, TrainConfig
from explainrec_core.evaluation.prefix_scoring import candidate_suffix, rec_prompt_parts, score_shared_prefix
from explainrec_core.evaluation.quantize import int8_copy
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.models.adapters import attach_lora, load_adapter
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm, load_tokenizer, resolve_base
from explainrec_core.prompts import REC_INSTRUCTION, RESPONSE_MARKER, alpaca_prompt, rec_input, rec_response
from explainrec_core.training.engine import train
from explainrec_core.training.examples import encode


def prompts(n: int) -> list[str]:
    """TALLRec prompts with 10 history items (about 250 SmolLM2 tokens), varied so lengths differ a little."""
    out = []
    for i in range(n):
        history = [f'"Movie {i * 13 + k} ({1970 + (i + k) % 30})"' for k in range(10)]
        out.append(alpaca_prompt(REC_INSTRUCTION, rec_input(history[: 4 + i % 4], history[4 + i % 4:],
                                                            f'"Target {i} (1995)"')))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, this process's CPU seconds, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def scoring_variants(model, device) -> dict:
    """name -> (model, score_yes keyword arguments), each adding one speed-up to the one before."""
    variants = {"fp32_full_prompts": (model, {"share_prefix": False}),
                "fp32_shared_preamble": (model, {"share_prefix": True})}
    if device.type == "cpu":
        variants["int8_shared_preamble"] = (int8_copy(model), {"share_prefix": True})
    return variants


def bench_scoring(variants: dict, tokenizer, texts, answer_ids, batch_size, device, reps: int) -> dict:
    for model, options in variants.values():  # warm-up
        score_yes(model, tokenizer, texts[:batch_size], answer_ids, batch_size, **options)
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    scores = {}
    for _ in range(reps):  # interleaved, so every variant sees the same background load
        for name, (model, options) in variants.items():
            sync(device)
            w, c, scores[name] = timed(lambda m=model, o=options: score_yes(m, tokenizer, texts, answer_ids,
                                                                            batch_size, **o))
            sync(device)
            wall[name].append(w)
            cpu[name].append(c)
    reference = scores["fp32_full_prompts"]
    out: dict = {"prompts": len(texts), "batch_size": batch_size, "reps": reps}
    for name in variants:
        out[name] = {"samples_per_s": len(texts) / statistics.median(wall[name]),
                     "samples_per_cpu_s": len(texts) / statistics.median(cpu[name]),
                     "max_abs_diff_vs_fp32_full": float(np.abs(scores[name] - reference).max())}
    for name in list(variants)[1:]:
        out[name]["speedup_vs_fp32_full"] = out[name]["samples_per_s"] / out["fp32_full_prompts"]["samples_per_s"]
        out[name]["cpu_speedup_vs_fp32_full"] = (out[name]["samples_per_cpu_s"]
                                                 / out["fp32_full_prompts"]["samples_per_cpu_s"])

    model = variants["fp32_full_prompts"][0]
    encoded = sorted((tokenizer(t)["input_ids"] for t in texts), key=len, reverse=True)
    batches = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i: i + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        for row, seq in enumerate(chunk):
            ids[row, width - len(seq):] = torch.tensor(seq)
        batches.append(ids.to(device))
    with torch.inference_mode():
        model(input_ids=batches[0], logits_to_keep=1)
        sync(device)
        start = time.perf_counter()
        for ids in batches:
            model(input_ids=ids, logits_to_keep=1)
        sync(device)
    bare = time.perf_counter() - start
    out["bare_full_prompts_samples_per_s"] = len(texts) / bare
    out["fp32_full_slowdown_vs_bare"] = out["bare_full_prompts_samples_per_s"] / out["fp32_full_prompts"][
        "samples_per_s"]
    return out


def bench_ranking(variants: dict, tokenizer, answer_ids, n_candidates: int, batch_size: int, device,
                  reps: int) -> dict:
    """Seconds per candidate list: one user's prefix (10 history items), n candidate suffixes."""
    prefix = rec_prompt_parts(ranking_history(), 3.0)
    suffixes = [candidate_suffix(t) for t in ranking_candidates(n_candidates)]
    out: dict = {"candidates": n_candidates, "batch_size": batch_size,
                 "prefix_tokens": len(tokenizer(prefix)["input_ids"])}
    models = {name.split("_")[0]: model for name, (model, _) in variants.items()}
    for model in models.values():
        score_shared_prefix(model, tokenizer, prefix, suffixes[:4], answer_ids, batch_size)
    times = {name: ([], []) for name in models}
    for _ in range(reps):
        for name, model in models.items():
            sync(device)
            w, c, _ = timed(lambda m=model: score_shared_prefix(m, tokenizer, prefix, suffixes, answer_ids,
                                                                batch_size))
            sync(device)
            times[name][0].append(w)
            times[name][1].append(c)
    for name, (wall, cpu) in times.items():
        out[name] = {"s_per_list": statistics.median(wall), "cpu_s_per_list": statistics.median(cpu)}
    return out


def auc_check(variants: dict, tokenizer, answer_ids, prompts_file: Path, samples: int, batch_size: int) -> dict:
    """Validation AUC of fp32 and int8 scoring on the first `samples` valid prompts (the int8 gate)."""
    table = pl.read_parquet(prompts_file).filter(pl.col("set") == "valid").sort("sample_id").head(samples)
    texts, labels = table["prompt"].to_list(), table["label"].to_list()
    fp32 = score_yes(variants["fp32_shared_preamble"][0], tokenizer, texts, answer_ids, batch_size)
    int8 = score_yes(variants["int8_shared_preamble"][0], tokenizer, texts, answer_ids, batch_size)
    fp32_auc, int8_auc = auc(labels, fp32), auc(labels, int8)
    return {"file": str(prompts_file), "set": "valid", "samples": len(texts), "positives": int(sum(labels)),
            "fp32_auc": fp32_auc, "int8_auc": int8_auc,
            "delta_auc": None if fp32_auc is None or int8_auc is None else int8_auc - fp32_auc,
            "mean_abs_p_yes_diff": float(np.abs(int8 - fp32).mean()), "max_abs_p_yes_diff":
                float(np.abs(int8 - fp32).max())}


def bench_training(base_dir: Path, tokenizer, texts, batch_size, steps, device, lora: LoraConfig) -> dict:
    examples = [encode(tokenizer, t, rec_response(i % 2)) for i, t in enumerate(texts[: batch_size * steps])]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    model = attach_lora(load_causal_lm(base_dir, dtype=dtype).to(device), lora)
    cfg = TrainConfig(lr=1e-4, epochs=1, batch_size=batch_size, cutoff=1024, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=Path(tmp))
    ours = result.tokens_per_s
    del model

    # The bare loop: same examples, batches, LoRA and optimizer; no accelerate, no checkpoints, no bookkeeping.
    model = attach_lora(load_causal_lm(base_dir, dtype=dtype).to(device), lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    model.train()
    batches = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i: i + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        for row, e in enumerate(chunk):
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
        batches.append((ids.to(device), labels.to(device), (ids != tokenizer.pad_token_id).long().to(device)))
    sync(device)
    start = time.perf_counter()
    for ids, labels, mask in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    bare = sum(len(e.input_ids) for e in examples) / (time.perf_counter() - start)
    return {"steps": steps, "batch_size": batch_size, "ours_tokens_per_s": ours, "bare_tokens_per_s": bare,
            "ours_vs_bare": ours / bare, "peak_memory_mb": result.peak_memory_mb,
            "mixed_precision": result.mixed_precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model.base: '' = embedded SmolLM2, or a local folder")
    parser.add_argument("--adapter", type=Path, default=None, help="a LoRA adapter folder to score with")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-prompts", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions per variant (median)")
    parser.add_argument("--rank-candidates", type=int, default=100, help="0 skips the ranking timing")
    parser.add_argument("--rank-batch-size", type=int, default=32)
    parser.add_argument("--auc-prompts", type=Path, default=None, help="rec_prompts.parquet: int8 AUC gate")
    parser.add_argument("--auc-samples", type=int, default=300)
    parser.add_argument("--train-steps", type=int, default=3, help="0 skips the training benchmark")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base_dir, source = resolve_base(ModelConfig(base=args.model))
    tokenizer = load_tokenizer(base_dir)
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    texts = prompts(max(args.score_prompts, args.batch_size * args.train_steps))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_causal_lm(base_dir, dtype=dtype).to(device).eval()
    if args.adapter:
        model = load_adapter(model, args.adapter).eval()
    start = time.perf_counter()
    variants = scoring_variants(model, device)

    report = {
        "model": source, "adapter": str(args.adapter) if args.adapter else None,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
        or platform.machine(), "torch_threads": torch.get_num_threads(), "dtype": str(dtype),
        "int8_quantise_s": time.perf_counter() - start if device.type == "cpu" else None,
        "prompt_tokens_mean": sum(len(tokenizer(t)["input_ids"]) for t in texts) / len(texts),
        "load_average_1m_before": os.getloadavg()[0],  # other work on the machine makes CPU timings noisy
        "scoring": bench_scoring(variants, tokenizer, texts[: args.score_prompts], answer_ids, args.batch_size,
                                 device, args.reps),
    }
    if args.rank_candidates:
        report["ranking"] = bench_ranking(variants, tokenizer, answer_ids, args.rank_candidates,
                                          args.rank_batch_size, device, args.reps)
    if args.auc_prompts and "int8_shared_preamble" in variants:
        report["int8_auc_gate"] = auc_check(variants, tokenizer, answer_ids, args.auc_prompts, args.auc_samples,
                                            args.batch_size)
    report["load_average_1m_after"] = os.getloadavg()[0]
    del model, variants
    if args.train_steps:
        report["training"] = bench_training(base_dir, tokenizer, texts, args.batch_size, args.train_steps, device,
                                            LoraConfig())
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
