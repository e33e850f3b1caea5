"""How much a training prompt's collaborative vectors know its own answer (multimodal.collaborative_holdout).

Fits the collaborative model twice on the training period of a pipeline root, once on all of it and once without
the targets of rec_prompts' training prompts, and prints the AUC of the item-token model's CF evidence, the
affinity score (the fold-in user vector, the mean vector of the liked items the prompt shows, dotted with the
target's vector), on the training prompts and on the validation prompts. A training-set AUC far above the
validation one is the gap the LLM would learn to trust and not find where it is scored.

    python scripts/cf_holdout_check.py --params params/paper.yaml --root runs/paper [--resamples 2000]

Needs the root's samples, interactions, items and rec_prompts (`explainrec run all --until rec_prompts`).
Intervals: the report's paired bootstrap over prompts (evaluation/paired.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import load_config
from explainrec_core.evaluation.paired import auc_difference, auc_with_ci
from explainrec_core.features.item_features import collaborative_vectors
from explainrec_core.steps.data_steps import read_processed


def affinity(rows: pl.DataFrame, vectors: dict[int, np.ndarray], like_threshold: float) -> np.ndarray:
    """user . item per prompt, the sum of the bank's affinity vector (features/feature_bank.py, up to its scale);
    0 (no evidence) where the prompt shows no liked item with a vector or the target has none."""
    out = np.zeros(rows.height)
    for k, r in enumerate(rows.iter_rows(named=True)):
        start = r["n_history_dropped"]
        liked = [vectors[i] for i, rating in zip(r["history_item_ids"][start:], r["history_ratings"][start:],
                                                 strict=True) if rating > like_threshold and i in vectors]
        if liked and r["item_id"] in vectors:
            out[k] = float(np.mean(liked, axis=0) @ vectors[r["item_id"]])
    return out


def main(params: Annotated[Path, typer.Option(help="The profile's params file.")] = Path("params.yaml"),
         root: Annotated[Path, typer.Option(help="The pipeline root.")] = Path("."),
         resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000) -> None:
    cfg = load_config(params)
    samples = read_processed(cfg, root, "samples")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"),
                                    read_processed(cfg, root, "items"), cfg.samples.like_threshold)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS).join(
        samples.select("sample_id", "history_item_ids", "history_ratings"), on="sample_id", how="left")
    train = prompts.filter(pl.col("set") == "train")
    fits = {"whole training period": collaborative_vectors(cfg, data)[0],
            "without the training targets": collaborative_vectors(cfg, data, train.select("user_id", "item_id"))[0]}
    print(f"{cfg.multimodal.collaborative_model} affinity AUC (user . item), {root}, {resamples} resamples")
    for name in ("train", "valid"):
        rows = prompts.filter(pl.col("set") == name).unique("sample_id").sort("sample_id")
        a, b = (rows.select("sample_id", "label").with_columns(
            score=pl.Series(affinity(rows, v, cfg.samples.like_threshold))) for v in fits.values())
        ca, cb, d = auc_with_ci(a, resamples), auc_with_ci(b, resamples), auc_difference(a, b, resamples)
        print(f"  {name:5s} n={rows.height:5d}: whole period {ca.text()}   held out {cb.text()}   "
              f"difference {d.text()}")


if __name__ == "__main__":
    typer.run(main)
