"""Ranking 20 candidates for one user: shared-prefix (KV-cached) scoring vs 20 full prompts in one batch.

    python scripts/bench_prefix.py                     # the embedded SmolLM2, fp32 on the CPU (bf16 on a GPU)
    python scripts/bench_prefix.py --model path/to/hf-folder --reps 10 --out bench_prefix.json

A ~230-token TALLRec prefix (10 history items) and 20 candidate suffixes of ~26 tokens, the shape of
shared/reference/gpu_anchor.py. Prints, and writes as JSON (--out): the median time of
`score_shared_prefix` (prefix once, then the 20 suffixes in one batch on its cache) and of `score_yes` on the 20
full prompts in one batch, both in ms, the speed ratio, and the largest score difference between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from explainrec_core.config import ModelConfig
from explainrec_core.evaluation.prefix_scoring import (
    boundary_matches,
    candidate_suffix,
    rec_prompt_parts,
    score_shared_prefix,
)
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm, load_tokenizer, resolve_base
from explainrec_core.prompts import RESPONSE_MARKER

WORDS = ("Return", "Midnight", "Crimson", "Harbor", "Secret", "Garden", "Silent", "Voyage", "Eternal", "Shadow",
         "Northern", "Lights", "Broken", "Promise", "Golden", "Empire", "Distant", "Thunder", "Velvet", "Horizon")


def history(n: int = 10) -> list[tuple[str, float]]:
    """n history items with multi-word titles (about 230 SmolLM2 tokens of prompt prefix with n = 10)."""
    items = []
    for k in range(n):
        sequel = " II" if k % 2 else ""
        title = f"The {WORDS[k]} {WORDS[(3 * k + 1) % 20]} of {WORDS[(7 * k + 2) % 20]}{sequel}"
        items.append((f'"{title} ({1970 + 3 * k})"', 5.0 if k % 3 else 2.0))
    return items


def candidates(n: int = 20) -> list[str]:
    """n quoted candidate titles whose suffixes are about 26 tokens, lengths varying a little."""
    out = []
    for i in range(n):
        words = [WORDS[(i + 5 * j) % 20] for j in range(6 + i % 3)]
        out.append(f'"{" ".join(words[:3])}: The {" ".join(words[3:])} Story ({1950 + i})"')
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, reps: int, device: torch.device) -> tuple[float, list[float]]:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model.base: '' = embedded SmolLM2, or a local folder")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base_dir, source = resolve_base(ModelConfig(base=args.model))
    tokenizer = load_tokenizer(base_dir)
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    model = load_causal_lm(base_dir, dtype=dtype).to(device).eval()

    prefix = rec_prompt_parts(history(), 3.0)
    suffixes = [candidate_suffix(t) for t in candidates(args.candidates)]
    full = [prefix + s for s in suffixes]
    n = len(suffixes)

    shared_ms, shared_times = median_ms(
        lambda: score_shared_prefix(model, tokenizer, prefix, suffixes, answer_ids, batch_size=n), args.reps, device)
    full_ms, full_times = median_ms(lambda: score_yes(model, tokenizer, full, answer_ids, batch_size=n), args.reps,
                                    device)
    shared_scores = score_shared_prefix(model, tokenizer, prefix, suffixes, answer_ids, batch_size=n)
    full_scores = score_yes(model, tokenizer, full, answer_ids, batch_size=n)

    suffix_tokens = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in suffixes]
    report = {
        "model": source,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "dtype": str(dtype), "torch_threads": torch.get_num_threads(), "reps": args.reps,
        "prefix_tokens": len(tokenizer(prefix)["input_ids"]), "candidates": n,
        "suffix_tokens_mean": sum(suffix_tokens) / n, "suffix_tokens_range": [min(suffix_tokens), max(suffix_tokens)],
        "full_prompt_tokens_mean": sum(len(tokenizer(t)["input_ids"]) for t in full) / n,
        "shared_prefix_ms": shared_ms, "full_prompts_ms": full_ms, "speedup": full_ms / shared_ms,
        "shared_prefix_times_ms": shared_times, "full_prompts_times_ms": full_times,
        "token_ids_match_full_prompts": boundary_matches(tokenizer, prefix, suffixes),
        "max_abs_score_diff": float(abs(shared_scores - full_scores).max()),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine makes CPU timings noisy
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
