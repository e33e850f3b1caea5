"""Tune a baseline on the VALIDATION split for one protocol (the test split is dropped before anything is read).

    python scripts/tune_baselines.py data/processed bpr protocol=ranking dim=32,64 lr=0.003,0.01

protocol=auc (default): the valid samples' AUC, starting from the model config's defaults.
protocol=ranking: NDCG@10 on validation candidate lists built like the test ones (a seeded 1,000 of the liked valid
targets, each against 99 items the user never rated), starting from the module's RANKING_CONFIG.
Every other key=v1,v2 is a config field; one model is fitted per point of the grid (seed 0 unless seed=...).
Prints the metric after the last epoch, the best epoch of the per-epoch curve, and the fit time (which includes
the per-epoch validation). Writes nothing.

The grids that chose the ranking settings (protocol=ranking, 1,000 valid lists, seed 0, on the shared 2-core
machine; the figures are in each module's RANKING_CONFIG docstring and in params.yaml):
    bpr        first the AUC setting's negatives vs plain uniform ones: disliked_negatives=1,0 weight_decay=0.03
               epochs=30; then disliked_negatives=0 weight_decay=0.0001,0.001,0.01 epochs=60
    lightgcn   disliked_negatives=1,0 weight_decay=0.01 epochs=25; then disliked_negatives=0 weight_decay=0.001
               layers=1,2,3 epochs=60; then weight_decay=0.01 layers=2 epochs=60
    sasrec     disliked_targets=True,False use_ratings=True epochs=10; then disliked_targets=False
               use_ratings=True,False epochs=20
    content    disliked_weight=1,0,-1
    popularity nothing to tune
The AUC settings' grids are in each config's docstring (explainrec_core/baselines/*.py).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.registry import build_baseline
from explainrec_core.evaluation.ranking import build_candidates

VALID_LISTS = 1000
"""Validation candidate lists for protocol=ranking (as many as the test lists the baselines rank)."""


def load(processed: Path, protocol: str, seed: int = 0, n_negatives: int = 99) -> tuple[TrainingData, pl.DataFrame]:
    """The training data and the validation frame of `protocol`: samples (auc) or candidate lists (ranking)."""
    samples = pl.read_parquet(processed / "samples.parquet").filter(pl.col("split") != "test")
    interactions = pl.read_parquet(processed / "interactions.parquet")
    data = TrainingData.from_tables(samples, interactions, pl.read_parquet(processed / "items.parquet"),
                                    like_threshold=3.0)
    if protocol == "ranking":
        # Negatives are items the user never rated at any time, exactly as for the test lists.
        return data, build_candidates(samples, interactions, n_negatives=n_negatives, seed=seed, split="valid",
                                      max_positives=VALID_LISTS)
    return data, samples.filter(pl.col("split") == "valid")


def parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


def main(argv: list[str]) -> None:
    processed, name, *grid_args = argv
    grid = {k: [parse(v) for v in vs.split(",")] for k, vs in (a.split("=", 1) for a in grid_args)}
    seed = grid.pop("seed", [0])[0]
    protocol = grid.pop("protocol", ["auc"])[0]
    data, valid = load(Path(processed), protocol)
    for point in itertools.product(*grid.values()):
        overrides = dict(zip(grid, point, strict=True))
        model = build_baseline(name, protocol, overrides)
        stats = model.fit(data, seed=seed, valid=valid)
        metric = stats["valid_metric"]
        curve = stats.get(f"valid_{metric}_curve")
        best = f" best epoch {1 + max(range(len(curve)), key=curve.__getitem__)}: {max(curve):.4f}" if curve else ""
        print(f"{name} [{protocol}] {overrides} valid {metric} {stats[f'valid_{metric}']:.4f}{best} "
              f"fit {stats['seconds']:.1f}s", flush=True)
        if curve:
            print("   curve", " ".join(f"{a:.3f}" for a in curve), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
