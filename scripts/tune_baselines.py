"""Tune the baselines' defaults on the VALIDATION split (the test split is dropped before anything is read).

    python scripts/tune_baselines.py data/processed bpr dim=32,64 lr=0.003,0.01

Fits one model per point of the grid (seed 0 unless seed=...), prints the valid AUC (and the per-epoch valid
curve for the trained models) and the fit time. Writes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path

import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.registry import BASELINES


def load(processed: Path) -> tuple[TrainingData, pl.DataFrame]:
    samples = pl.read_parquet(processed / "samples.parquet").filter(pl.col("split") != "test")
    data = TrainingData.from_tables(samples, pl.read_parquet(processed / "interactions.parquet"),
                                    pl.read_parquet(processed / "items.parquet"), like_threshold=3.0)
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
    data, valid = load(Path(processed))
    grid = {k: [parse(v) for v in vs.split(",")] for k, vs in (a.split("=", 1) for a in grid_args)}
    seed = grid.pop("seed", [0])[0]
    default = BASELINES[name]()
    for point in itertools.product(*grid.values()):
        overrides = dict(zip(grid, point, strict=True))
        model = type(default)(dataclasses.replace(default.config, **overrides))
        stats = model.fit(data, seed=seed, valid=valid)
        curve = stats.get("valid_auc_curve")
        best = f" best epoch {1 + max(range(len(curve)), key=curve.__getitem__)}: {max(curve):.4f}" if curve else ""
        print(f"{name} {overrides} valid AUC {stats['valid_auc']:.4f}{best} fit {stats['seconds']:.1f}s", flush=True)
        if curve:
            print("   curve", " ".join(f"{a:.3f}" for a in curve), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
