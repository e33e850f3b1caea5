"""Paired AUC differences between two score files of the same samples (e.g. two item-token models of different
arms, or a model and the knowledge base alone), per evaluation set: AUC of each and a - b with its 95% interval
(paired bootstrap over the same samples, as the report's).

    python runs/lr_sweep/pair_scores.py A.parquet B.parquet [--resamples 2000]
    python runs/lr_sweep/pair_scores.py A.parquet baseline_scores.parquet --method lightgcn
    python runs/lr_sweep/pair_scores.py A_ranking.parquet B_ranking.parquet --ranking   # NDCG@10, same lists

Score files: data/scores/{item_token,rec,knowledge_base}_scores.parquet (set, sample_id, label, p_yes). B may hold
more samples (the knowledge base scores whole sets): A's are used.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import polars as pl
import typer

from explainrec_core.evaluation.paired import auc_difference, auc_with_ci, mean_difference
from explainrec_core.evaluation.ranking import positive_ranks


def load(path: str, name: str, method: str = "") -> pl.DataFrame:
    frame = pl.read_parquet(path).filter(pl.col("set") == name)
    if method:  # baseline_scores.parquet: one method's AUC-protocol scores, every seed (the bootstrap averages them)
        frame = frame.filter((pl.col("method") == method) & (pl.col("protocol") == "auc"))
        return frame.select("sample_id", "label", "score", "seed").sort("sample_id", "seed")
    return frame.select("sample_id", "label", score="p_yes").sort("sample_id")


def ndcg10(path: str) -> pl.DataFrame:
    """Per-list NDCG@10 of a ranking file (sample_id, scores: the positive first), as evaluation.ranking scores it."""
    frame = pl.read_parquet(path).sort("sample_id")
    ranks = positive_ranks(np.array(frame["scores"].to_list()))
    return frame.select("sample_id").with_columns(ndcg=pl.Series(np.where(ranks <= 10, 1 / np.log2(ranks + 1.0), 0.0)))


def main(a_path: str, b_path: str,
         method: Annotated[str, typer.Option(help="B is baseline_scores.parquet: this baseline's scores.")] = "",
         ranking: Annotated[bool, typer.Option(help="A and B are ranking files: paired NDCG@10.")] = False,
         resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000) -> None:
    if ranking:
        a, b = ndcg10(a_path), ndcg10(b_path)
        b = b.filter(pl.col("sample_id").is_in(a["sample_id"].implode()))
        a = a.filter(pl.col("sample_id").is_in(b["sample_id"].implode()))  # the lists both ranked
        d = mean_difference(a, b, "ndcg", resamples)
        print(f"NDCG@10 on {a.height} lists: a {a['ndcg'].mean():.3f}  b {b['ndcg'].mean():.3f}  a-b {d.text()}")
        return
    for name in ("test", "new_user", "new_item"):
        a, b = load(a_path, name), load(b_path, name, method)
        if a.is_empty() or b.is_empty():
            continue
        b = b.filter(pl.col("sample_id").is_in(a["sample_id"].implode()))  # a file of whole sets (the KB's)
        if not a["sample_id"].equals(b["sample_id"].unique(maintain_order=True)):
            raise SystemExit(f"{name}: {a_path} scores samples {b_path} does not")
        ca, cb, d = auc_with_ci(a, resamples), auc_with_ci(b, resamples), auc_difference(a, b, resamples)
        print(f"{name:>9} n={a.height}: a {ca.text()}  b {cb.text()}  a-b {d.text()}")


if __name__ == "__main__":
    typer.run(main)
