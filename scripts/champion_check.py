"""Score only the champion (explain_item_token_adapter) and compare it, paired, with every baseline.

For schedule experiments on the champion's fusion: `explain_evaluation` scores, explains and ranks all three
attributed variants (about an hour at paper sizes on 2 CPU cores); this scores the champion alone on the same test /
cold-start samples and candidate lists, then pairs it with each baseline (AUC protocol, seed-averaged; NDCG@10 on
the LLM's lists, ranking protocol) exactly as the report does. It needs a profile root where `baselines` and
`explain_item_token_adapter` have run, e.g.

    explainrec run all --params params/paper.yaml --root runs/paper --until explain_item_token_adapter
    python scripts/champion_check.py --params params/paper.yaml --root runs/paper

Writes ROOT/reports/champion_check.json (and the per-sample scores beside it) and prints a table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.evaluation.paired import auc_difference, auc_with_ci, mean_difference
from explainrec_core.evaluation.ranking import positive_ranks, ranking_metrics
from explainrec_core.evaluation.report import auc_frames, ndcg_frames
from explainrec_core.io import write_json, write_parquet
from explainrec_core.progress import progress_bar
from explainrec_core.steps.explain_evaluation_steps import item_token_variant
from explainrec_core.steps.explain_steps import context_builder

CHECK_JSON = "reports/champion_check.json"
CHECK_SCORES = "reports/champion_check_scores.parquet"


def main(params: Annotated[Path, typer.Option(help="The profile's settings.")],
         root: Annotated[Path, typer.Option(help="The profile's output folder.")],
         ranking: Annotated[bool, typer.Option(help="Also rank the LLM's candidate lists.")] = True) -> None:
    cfg = load_config(params)
    builder = context_builder(cfg, root)
    variant = item_token_variant(cfg, root, builder)
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS).filter(pl.col("set").is_in(variant.sets))
    unique = prompts.unique("sample_id").sort("sample_id")
    start = time.perf_counter()
    with progress_bar(unique.height, "champion: scoring") as advance:
        p_yes = variant.score(unique, advance)
    seconds = time.perf_counter() - start
    scores = prompts.select("set", "sample_id", "label").join(
        unique.select("sample_id").with_columns(pl.Series("score", p_yes)), on="sample_id")
    write_parquet(scores, root / CHECK_SCORES)
    trained = json.loads((root / paths.STEP_METRICS["explain_item_token_adapter"]).read_text())
    training = {k: trained.get(k) for k in ("valid_auc", "best_step", "steps", "stopped_early", "train_seconds")}
    out: dict = {"params": str(params), "fusion_epochs": cfg.multimodal.fusion_epochs,
                 "scoring_samples_per_s": round(unique.height / seconds, 3), "training": training,
                 "sets": {}, "ranking": None}
    baselines = auc_frames(root, not_run=("rec_evaluation", "llm_ranking", "explain_evaluation",
                                          "item_token_evaluation"))
    for name, group in baselines.items():
        ours = scores.filter(pl.col("set") == name).select("sample_id", "label", "score")
        entry = {"auc": auc_with_ci(ours).to_dict(), "vs": {}}
        for method, frame in group.items():
            entry["vs"][method] = {"baseline_auc": auc_with_ci(frame).to_dict()["value"],
                                   **auc_difference(ours, frame).to_dict()}
        out["sets"][name] = entry
    if ranking:
        list_ids, grid = variant.rank()
        ours = pl.DataFrame({"sample_id": list_ids,
                             "ndcg": np.where((r := positive_ranks(grid)) <= 10, 1.0 / np.log2(r + 1.0), 0.0)})
        lists = ndcg_frames(root, not_run=("llm_ranking", "explain_evaluation", "item_token_evaluation"))
        vs = {}
        for method, frame in lists.get("all_lists", {}).items():
            frame = frame.filter(pl.col("sample_id").is_in(ours["sample_id"].implode()))
            vs[method] = {"baseline_ndcg@10": float(frame.group_by("seed").agg(pl.col("ndcg").mean())["ndcg"].mean()),
                          **mean_difference(ours, frame, "ndcg").to_dict()}
        out["ranking"] = {**ranking_metrics(grid), "lists": int(grid.shape[0]), "vs": vs}
    write_json(out, root / CHECK_JSON)
    for name, entry in out["sets"].items():
        auc = entry["auc"]
        print(f"{name}: champion AUC {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}] (n = {auc['n']})")
        for method, d in entry["vs"].items():
            print(f"  - {method} ({d['baseline_auc']:.3f}): {d['delta']:+.3f} [{d['ci95'][0]:+.3f}, "
                  f"{d['ci95'][1]:+.3f}] {d['verdict']}")
    if out["ranking"]:
        print(f"ranking: champion NDCG@10 {out['ranking']['ndcg@10']:.3f} on {out['ranking']['lists']} lists")
        for method, d in out["ranking"]["vs"].items():
            print(f"  - {method} ({d['baseline_ndcg@10']:.3f}): {d['delta']:+.3f} [{d['ci95'][0]:+.3f}, "
                  f"{d['ci95'][1]:+.3f}] {d['verdict']}")


if __name__ == "__main__":
    typer.run(main)
