"""Which linear layers can be dynamically int8-quantised for CPU scoring without moving validation AUC?

    python scripts/int8_sensitivity.py --root runs/q8 --adapter models/rec_adapter --samples 256

Scores the first --samples validation prompts of ROOT/data/prompts/rec_prompts.parquet with the tuned adapter in
fp32 (the shared-preamble path every step uses), then with merged, dynamically int8-quantised copies
(`quantize.int8_copy`) for each quantised engine and each set of layers kept in fp32, and prints per variant:
samples/s (wall), samples per CPU-second, validation AUC and its difference to fp32, and the mean / max
|P(Yes) - fp32|. `evaluation.int8` may be turned on only for a variant with |delta AUC| < 0.005 (config.py).

ROOT is a profile folder (`explainrec run all --root ROOT`) that has run base_model, rec_prompts and the adapter.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from explainrec_core import paths
from explainrec_core.evaluation.quantize import int8_copy
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.models import adapters
from explainrec_core.steps.llm_steps import load_base

KEEP_FP32 = ((), ("down_proj",), ("down_proj", "o_proj"), ("down_proj", "v_proj", "o_proj"))


def timed_scores(model, tokenizer, prompts, answer_ids, batch_size) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    p_yes = score_yes(model, tokenizer, prompts, answer_ids, batch_size)
    return p_yes, len(prompts) / (time.perf_counter() - wall), len(prompts) / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--adapter", default=paths.REC_ADAPTER, help="adapter folder, relative to --root")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--engines", default="fbgemm,x86,onednn")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    info, base, tokenizer = load_base(args.root)
    model = adapters.load_adapter(base, args.root / args.adapter).eval()
    rows = pl.read_parquet(args.root / paths.REC_PROMPTS).filter(pl.col("set") == "valid").head(args.samples)
    prompts, labels, answer_ids = rows["prompt"].to_list(), rows["label"].to_list(), info["answer_token_ids"]

    reference, sps, sps_cpu = timed_scores(model, tokenizer, prompts, answer_ids, args.batch_size)
    reference_auc = auc(labels, reference)
    results = [{"variant": "fp32", "samples_per_s": sps, "samples_per_cpu_s": sps_cpu, "auc": reference_auc}]
    print(json.dumps(results[0]), flush=True)
    for engine in args.engines.split(","):
        torch.backends.quantized.engine = engine
        for keep in KEEP_FP32:
            p_yes, sps, sps_cpu = timed_scores(int8_copy(model, keep), tokenizer, prompts, answer_ids,
                                               args.batch_size)
            moved = np.abs(p_yes - reference)
            row = {"variant": f"int8 {engine}, fp32: {', '.join(keep) or 'none'}", "samples_per_s": sps,
                   "samples_per_cpu_s": sps_cpu, "auc": auc(labels, p_yes),
                   "delta_auc": auc(labels, p_yes) - reference_auc,
                   "mean_abs_dp": float(moved.mean()), "max_abs_dp": float(moved.max())}
            results.append(row)
            print(json.dumps(row), flush=True)
    summary = {"root": str(args.root), "adapter": args.adapter, "samples": len(prompts), "results": results}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
