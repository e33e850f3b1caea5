"""Scoring cost of item tokens: the same samples scored with the text-only TALLRec prompt and with the slotted
prompt (a soft token after each title and a user token), back to back, interleaved over --reps.

    OMP_NUM_THREADS=1 python scripts/bench_item_tokens.py --root runs/paper --samples 64 --reps 3

Reads a profile's outputs (params, rec_prompts, samples, items, item_features, base_model); the fusion is freshly
initialised (its weights do not change the cost). Prints samples/s of wall time and per CPU-second of this process
(the steadier figure on a shared CPU) and the ratio item tokens / text (target: cost <= 1.1x).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.features.feature_bank import FeatureBank
from explainrec_core.features.fusion import FusionSpec, ModalityFusion
from explainrec_core.features.item_features import features_digest
from explainrec_core.features.item_prompts import add_slot_token
from explainrec_core.features.item_token_model import ItemTokenLM, scoring_embedder, token_embedding_norm
from explainrec_core.steps.item_token_steps import slotted_prompts
from explainrec_core.steps.llm_steps import load_base


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs/paper"))
    parser.add_argument("--params", type=Path, default=None, help="default: ROOT's profile, params/paper.yaml")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cfg = load_config(args.params or Path("params/paper.yaml"))
    root = args.root
    info, base, tokenizer = load_base(root)
    slot_id = add_slot_token(tokenizer)
    rows = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set") == "valid").sort("sample_id").head(
        args.samples)
    texts = rows["prompt"].to_list()
    slotted, requests = slotted_prompts(cfg, root, rows)
    features = pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))
    bank = FeatureBank(features, cfg.multimodal.modalities)
    fusion = ModalityFusion(FusionSpec(bank.modality_dims, bank.context_dim, cfg.multimodal.fusion_dim,
                                       base.config.hidden_size, token_embedding_norm(base), cfg.multimodal.user_token,
                                       features_digest(features)))
    model = ItemTokenLM(base, fusion, bank, slot_id).eval()
    answer = info["answer_token_ids"]
    runs = {"text": lambda: score_yes(base, tokenizer, texts, answer, args.batch_size),
            "item_tokens": lambda: score_yes(base, tokenizer, slotted, answer, args.batch_size,
                                             embed=scoring_embedder(model, requests), slot_id=slot_id)}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.reps):
            for name, fn in runs.items():
                times[name].append(timed(fn))
    result = {"samples": len(texts), "reps": args.reps, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(),
              "mean_tokens": {"text": sum(len(tokenizer(t)["input_ids"]) for t in texts) / len(texts),
                              "item_tokens": sum(len(tokenizer(t)["input_ids"]) for t in slotted) / len(slotted)}}
    for name, values in times.items():
        wall = min(w for w, _ in values)
        cpu = min(c for _, c in values)
        result[name] = {"samples_per_s_wall": round(len(texts) / wall, 3),
                        "samples_per_cpu_s": round(len(texts) / cpu, 3)}
    text, slotted = result["text"], result["item_tokens"]
    result["cost_ratio_cpu"] = round(text["samples_per_cpu_s"] / slotted["samples_per_cpu_s"], 3)
    result["cost_ratio_wall"] = round(text["samples_per_s_wall"] / slotted["samples_per_s_wall"], 3)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
