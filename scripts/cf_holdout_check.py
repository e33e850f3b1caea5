"""How much a training prompt's collaborative vectors know its own answer (multimodal.collaborative_holdout).

Fits the collaborative model twice on the training period of a pipeline root, once on all of it and once without
the targets of rec_prompts' training prompts, and prints the AUC of the item-token model's CF evidence, the
affinity score (the fold-in user vector, the mean vector of the liked items the prompt shows, dotted with the
target's vector), on the training prompts and on the validation prompts. A training-set AUC far above the
validation one is the gap the LLM would learn to trust and not find where it is scored.

    python scripts/cf_holdout_check.py --params params/paper.yaml --root runs/paper [--resamples 2000]

Needs the root's samples, interactions, items and rec_prompts (`explainrec run all --until rec_prompts`).
Intervals: percentile bootstrap over prompts (the same resamples for both fits, so the difference is paired).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer
from sklearn.metrics import roc_auc_score

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import load_config
from explainrec_core.features.item_features import collaborative_vectors
from explainrec_core.steps.data_steps import read_processed


def affinity(rows: pl.DataFrame, vectors: dict[int, np.ndarray], like_threshold: float) -> np.ndarray:
    """user . item per prompt; 0 (no evidence) where the prompt shows no liked item with a vector or the target
    has none."""
    out = np.zeros(rows.height)
    for k, r in enumerate(rows.iter_rows(named=True)):
        start = r["n_history_dropped"]
        liked = [vectors[i] for i, rating in zip(r["history_item_ids"][start:], r["history_ratings"][start:],
                                                 strict=True) if rating > like_threshold and i in vectors]
        if liked and r["item_id"] in vectors:
            out[k] = float(np.mean(liked, axis=0) @ vectors[r["item_id"]])
    return out


def bootstrap(labels: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0):
    """AUC of a, of b and of a - b, each (point, low, high) over the same percentile-bootstrap resamples."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() == labels[idx].max():
            continue
        x, y = roc_auc_score(labels[idx], a[idx]), roc_auc_score(labels[idx], b[idx])
        draws.append((x, y, x - y))
    draws = np.array(draws)
    points = (roc_auc_score(labels, a), roc_auc_score(labels, b))
    points = (*points, points[0] - points[1])
    return [(p, *np.percentile(draws[:, k], [2.5, 97.5])) for k, p in enumerate(points)]


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
        labels = rows["label"].cast(pl.Int8).to_numpy()
        a, b = (affinity(rows, v, cfg.samples.like_threshold) for v in fits.values())
        (pa, la, ha), (pb, lb, hb), (pd, ld, hd) = bootstrap(labels, a, b, resamples)
        print(f"  {name:5s} n={rows.height:5d}: whole period {pa:.3f} [{la:.3f}, {ha:.3f}]   held out {pb:.3f} "
              f"[{lb:.3f}, {hb:.3f}]   difference {pd:+.3f} [{ld:+.3f}, {hd:+.3f}]")


if __name__ == "__main__":
    typer.run(main)
