"""The multi-task model against its single-task twin and the rating references, without the full report.

    python scripts/multitask_check.py --root runs/multitask

Reads a run's rec_scores (the TALLRec recipe), multitask_scores / multitask_ratings and rating_scores, and prints
the paired AUC difference (multi-task - single-task) per set and the rating table (RMSE / MAE with 95% intervals,
paired with biased MF) on the LLM's test samples. Useful when a run skipped the baselines the report needs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.evaluation.paired import auc_difference, auc_with_ci
from explainrec_core.rating.metrics import error_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    single = pl.read_parquet(args.root / paths.REC_SCORES)
    multi = pl.read_parquet(args.root / paths.MULTITASK_SCORES)
    for name in ("test", "new_user", "new_item"):
        a, b = (f.filter(pl.col("set") == name).select("sample_id", "label", score="p_yes") for f in (multi, single))
        ea, eb, diff = auc_with_ci(a), auc_with_ci(b), auc_difference(a, b)
        print(f"{name:9s} n = {diff.n:5d}  multi-task AUC {ea.text()}  single-task {eb.text()}  "
              f"difference {diff.text()}: {diff.verdict}")
    references = pl.read_parquet(args.root / paths.RATING_SCORES).filter(pl.col("set") == "test")
    llm = pl.read_parquet(args.root / paths.MULTITASK_RATINGS).select(references.columns)
    summary = error_summary(pl.concat([references, llm]))["test"]
    print(f"rating, the LLM's test samples (n = {summary['n']}):")
    for method, m in summary["methods"].items():
        vs = m.get("vs_biased_mf")
        line = "  ".join(f"{k.upper()} {m[k]['value']:.4f} [{m[k]['ci95'][0]:.4f}, {m[k]['ci95'][1]:.4f}]"
                         for k in ("rmse", "mae"))
        if vs:
            line += "  vs biased MF: " + "  ".join(
                f"{k.upper()} {vs[k]['delta']:+.4f} [{vs[k]['ci95'][0]:+.4f}, {vs[k]['ci95'][1]:+.4f}]"
                for k in ("rmse", "mae"))
        print(f"  {method:18s} {line}")


if __name__ == "__main__":
    main()
