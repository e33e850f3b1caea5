"""rating_evaluation: the rating-prediction task (paper eq. 10's rating term) measured like every other task.

Each method predicts the star rating of every sample's target from what was known before it (training-period
ratings and the sample's history) and is scored by RMSE and MAE against the true rating on:
- `test`: the test samples every LLM variant scores (rec_prompts' seeded test subset), so an LLM rating head can be
  paired with these rows;
- `test_all`: the whole test split;
- `valid`: the whole validation split (the split BiasedMF's settings were chosen on; reported, never tuned on test).

Methods: `global_mean` (the floor), `biases` (mu + b_u + b_i: biased MF with no factors) and `biased_mf` (params
`rating`). Every "A vs B" is paired on the same samples: RMSE and MAE differences with 95% bootstrap intervals
against biased MF.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import Config
from explainrec_core.io import write_parquet
from explainrec_core.rating.biased_mf import BiasedMF, BiasedMFConfig, GlobalMean
from explainrec_core.rating.metrics import error_summary
from explainrec_core.steps.data_steps import read_processed


def rating_models(cfg: Config) -> dict:
    r = cfg.rating
    settings = BiasedMFConfig(dim=r.dim, reg=r.reg, reg_bias=r.reg_bias, sweeps=r.sweeps)
    return {"global_mean": GlobalMean(), "biases": BiasedMF(dataclasses.replace(settings, dim=0)),
            "biased_mf": BiasedMF(settings)}


def _sets(cfg: Config, root: Path, samples: pl.DataFrame) -> dict[str, pl.DataFrame]:
    llm_test = pl.read_parquet(root / paths.REC_PROMPTS, columns=["set", "sample_id"]).filter(pl.col("set") == "test")
    return {"test": samples.filter(pl.col("sample_id").is_in(llm_test["sample_id"].implode())),
            "test_all": samples.filter(pl.col("split") == "test"),
            "valid": samples.filter(pl.col("split") == "valid")}


def run_rating_evaluation(cfg: Config, root: Path) -> dict:
    samples = read_processed(cfg, root, "samples")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"),
                                    read_processed(cfg, root, "items"), cfg.samples.like_threshold)
    sets = _sets(cfg, root, samples)
    frames, fits = [], {}
    for name, model in rating_models(cfg).items():
        start = time.perf_counter()
        stats = model.fit(data.interactions, seed=cfg.rating.seed)
        for set_name, rows in sets.items():
            frames.append(rows.select("sample_id", "rating").with_columns(
                pl.lit(name).alias("method"), pl.lit(set_name).alias("set"),
                pl.Series("prediction", model.predict(rows), dtype=pl.Float64)))
        fits[name] = {**stats, "seconds": round(time.perf_counter() - start, 2)}
        if isinstance(model, BiasedMF):
            fits[name]["unknown_items"] = {s: model.unknown_items(rows) for s, rows in sets.items()}
    scores = pl.concat(frames).select("method", "set", "sample_id", "rating", "prediction")
    if not np.isfinite(scores["prediction"].to_numpy()).all():
        raise ValueError("rating_evaluation: a model predicted a non-finite rating")
    write_parquet(scores, root / paths.RATING_SCORES)
    return {"fits": fits, "sets": error_summary(scores), "settings": dataclasses.asdict(cfg.rating)}
