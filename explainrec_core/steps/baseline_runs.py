"""Fitting and scoring the baselines, one (method, seed) run at a time, on one single-threaded process per core.

Every baseline fits on one torch thread (`baselines.base.one_thread`: their matrices are tiny, a second thread made
them slower), so the baselines step used to leave all cores but one idle while the pipeline waited for it (196 s
of a 17-minute demo run on 2 cores, 112 s on two worker processes; 2026-12-07). The runs are independent and each
seeds itself (explainrec_core/parallel.py): the results equal one process's (a test checks it).

This module imports only what the runs need (no LLM libraries), so a worker process starts in a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from explainrec_core.baselines.base import Recommender, TrainingData
from explainrec_core.baselines.registry import BASELINES, PROTOCOLS, build_baseline
from explainrec_core.config import Config
from explainrec_core.errors import ConfigError
from explainrec_core.evaluation.ranking import collect_scores, positive_ranks, ranking_metrics
from explainrec_core.evaluation.scoring import auc
from explainrec_core.parallel import run_jobs

# Relative cost of one run (both protocols' fits and the scoring), from the demo's fit times (2026-12-07, seconds:
# sasrec 60, lattice 40, lightgcn 25, mmgcn 24, content 11, bpr 10, popularity 0): the longest runs start first,
# so the pool does not end with one worker busy and the others idle.
RUN_COST = {"sasrec": 60, "lattice": 40, "lightgcn": 25, "mmgcn": 24, "content": 11, "bpr": 10, "popularity": 0}


def build(name: str, protocol: str, cfg: Config) -> Recommender:
    """The baseline tuned for `protocol`, with the overrides of params.yaml for that protocol."""
    if name not in BASELINES:
        raise ConfigError(f"baselines.methods: unknown method {name!r}; known: {sorted(BASELINES)}")
    key = "hyperparameters" if protocol == "auc" else "ranking_hyperparameters"
    try:
        return build_baseline(name, protocol, getattr(cfg.baselines, key).get(name, {}))
    except TypeError as exc:  # an unknown field name
        raise ConfigError(f"baselines.{key}.{name}: {exc}") from None


def fit_for_protocol(method: str, protocol: str, cfg: Config, data: TrainingData,
                     seed: int) -> tuple[Recommender, float]:
    """One baseline fitted with its setting for `protocol`: (model, fit seconds)."""
    model = build(method, protocol, cfg)
    return model, model.fit(data, seed).get("seconds")


def fit_per_protocol(method: str, cfg: Config, data: TrainingData, seed: int) -> dict[str, tuple[Recommender, float]]:
    """protocol -> (fitted model, fit seconds); one fit serves both protocols when their settings are equal."""
    fitted: dict[str, tuple[Recommender, float]] = {}
    for protocol in PROTOCOLS:
        model = build(method, protocol, cfg)
        same = next((fit for fit in fitted.values() if fit[0].config == model.config), None)
        fitted[protocol] = same or (model, model.fit(data, seed).get("seconds"))
    return fitted


def score_auc_sets(model: Recommender, sets: dict[str, pl.DataFrame],
                   llm_subset: pl.DataFrame) -> tuple[dict, list[pl.DataFrame]]:
    """AUC of every set (all samples, and the LLM's seeded subset) and the scores of that subset."""
    row, scored, start = {}, [], time.perf_counter()
    for name, frame in sets.items():
        scores = model.score(frame)
        row[f"{name}_auc"] = auc(frame["label"].to_numpy(), scores)
        keep = llm_subset.filter(pl.col("set") == name)["sample_id"].implode()
        mask = frame["sample_id"].is_in(keep).to_numpy()
        scored.append(frame.filter(mask).select("sample_id", "label").with_columns(
            pl.lit(name).alias("set"), pl.Series("score", scores[mask])))
        row[f"{name}_auc_llm_subset"] = auc(frame.filter(mask)["label"].to_numpy(), scores[mask])
    row["ms_per_sample"] = 1e3 * (time.perf_counter() - start) / sum(f.height for f in sets.values())
    return row, scored


def rank_lists(model: Recommender, candidates: pl.DataFrame, expanded: pl.DataFrame,
               in_llm: np.ndarray) -> tuple[dict, np.ndarray]:
    """Hit@K / NDCG@K / MRR on every list and on the LLM's lists, and the positive's rank in each list."""
    start = time.perf_counter()
    grid = collect_scores(expanded, model.score(expanded), candidates["candidates"].list.len()[0])
    row = {"ms_per_sample": 1e3 * (time.perf_counter() - start) / max(expanded.height, 1)}
    row.update({f"rank_{k}": v for k, v in ranking_metrics(grid).items()})
    row.update({f"rank_llm_subset_{k}": v for k, v in ranking_metrics(grid[in_llm]).items()})
    return row, positive_ranks(grid)


@dataclass(frozen=True)
class BaselineInputs:
    """What every run reads (sent once to each worker process)."""

    cfg: Config
    data: TrainingData
    sets: dict[str, pl.DataFrame]      # AUC sets: test, cold-start, true cold-start curve
    llm_subset: pl.DataFrame           # (set, sample_id) whose per-sample scores are kept
    candidates: pl.DataFrame           # ranking lists
    expanded: pl.DataFrame             # the lists, one row per candidate
    in_llm: np.ndarray                 # which lists the LLMs rank too


@dataclass(frozen=True)
class RunResult:
    method: str
    seed: int
    rows: list[dict]                   # one per protocol: the baseline_results rows
    scores: list[pl.DataFrame]         # per-sample scores on the LLM subsets
    ranks: pl.DataFrame                # the positive's rank in every list


def run_one(inputs: BaselineInputs, method: str, seed: int) -> RunResult:
    """Fit `method` with `seed` in both protocols' settings, score the AUC sets and rank the lists."""
    fitted = fit_per_protocol(method, inputs.cfg, inputs.data, seed)
    key = {"method": method, "seed": seed}
    (auc_model, auc_seconds), (rank_model, rank_seconds) = fitted["auc"], fitted["ranking"]
    auc_row, scored = score_auc_sets(auc_model, inputs.sets, inputs.llm_subset)
    rank_row, ranks = rank_lists(rank_model, inputs.candidates, inputs.expanded, inputs.in_llm)
    return RunResult(method, seed,
                     rows=[{**key, "protocol": "auc", "fit_seconds": auc_seconds, **auc_row},
                           {**key, "protocol": "ranking", "fit_seconds": rank_seconds, **rank_row}],
                     scores=[frame.with_columns(pl.lit(method).alias("method"), pl.lit(seed).alias("seed"))
                             for frame in scored],
                     ranks=pl.DataFrame({**key, "protocol": "ranking", "sample_id": inputs.candidates["sample_id"],
                                         "rank": ranks}))


def run_all(inputs: BaselineInputs, runs: Sequence[tuple[str, int]], workers: int,
            on_done: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Every (method, seed) run, in the order of `runs`, on `workers` single-threaded processes (parallel.py)."""
    return run_jobs(run_one, inputs, runs, workers, cost=lambda run: RUN_COST.get(run[0], 10),
                    on_done=(lambda _, result: on_done(result)) if on_done else None)
