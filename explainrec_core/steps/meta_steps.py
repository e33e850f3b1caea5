"""meta_adaptation: the meta-learned new-user model (eq. 6), its variants compared on validation, the curve on test.

Each variant of `meta.orders` is trained on the same tasks (training-period users), then judged on the validation
samples of new users (fewer than `cold_start.max_user_train_interactions` training ratings) whose history is cut to
each k of `cold_start.curve_ks`: the mean AUC over k picks the variant kept. Every variant scores the test sets of
the true cold-start curve (data.samples.history_cut_sets) so the report can draw them; the comparison of the kept
variant with `none` (no adaptation) is paired, per k, on the same test samples.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData, one_thread
from explainrec_core.config import Config
from explainrec_core.data.samples import history_cut_sets, last_k_history
from explainrec_core.evaluation.paired import auc_difference, auc_with_ci
from explainrec_core.evaluation.scoring import auc
from explainrec_core.features.item_features import collaborative_vectors
from explainrec_core.io import write_parquet
from explainrec_core.knowledge import demographic, meta
from explainrec_core.knowledge.store import training_ratings
from explainrec_core.memory import peak_rss_mb
from explainrec_core.parallel import cpu_budget, run_jobs
from explainrec_core.plots import plot_training
from explainrec_core.progress import progress_bar
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.storage.base import swap_into_place

WEIGHTS, CONFIG = "model.safetensors", "config.json"
ITEM_INPUTS = "item_inputs.safetensors"  # the item rows the model was trained on (its own CF refit: not item_features')


def validation_sets(cfg: Config, samples: pl.DataFrame, ratings: pl.DataFrame) -> dict[int, pl.DataFrame]:
    """Validation samples of new users with >= max(k) earlier ratings, cut to each k (the same samples)."""
    counts = ratings.group_by("user_id").agg(n=pl.len())
    ks = cfg.cold_start.curve_ks
    new = (samples.filter(pl.col("split") == "valid").join(counts, on="user_id", how="left")
           .filter((pl.col("n").fill_null(0) < cfg.cold_start.max_user_train_interactions)
                   & (pl.col("history_item_ids").list.len() >= max(ks))))
    return {k: last_k_history(new, k) for k in ks}


def task_users_and_features(cfg: Config, data: TrainingData, ratings: pl.DataFrame,
                            item_features: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(the task users' training ratings, the item_features table with its collaborative column refitted without
    them, a report). The tasks are windows of training-period users' ratings; with item vectors fitted on every
    training rating, a task's query ratings would be edges of the graph behind its items' vectors, which a new
    user's test ratings never are. So a seeded `meta.task_user_share` of the users are the tasks, and the CF model
    (the item_features settings: multimodal.collaborative_model, the AUC protocol) is fitted on the others only."""
    users = np.sort(ratings["user_id"].unique().to_numpy())
    n_tasks = int(round(cfg.meta.task_user_share * users.size))
    if not 0 < n_tasks < users.size:
        raise ValueError(f"meta.task_user_share {cfg.meta.task_user_share} of {users.size} training-period users "
                         "leaves no task user or no user to fit the item vectors on")
    chosen = np.random.default_rng([cfg.meta.seed, 7]).choice(users, size=n_tasks, replace=False)
    task_ratings = ratings.filter(pl.col("user_id").is_in(chosen.tolist()))
    vectors, cf_report = collaborative_vectors(cfg, data, task_ratings.select("user_id", "item_id"))
    dim = cf_report["dim"]
    ids = item_features["item_id"].to_list()
    table = item_features.with_columns(
        pl.Series("collaborative", [None if i not in vectors else vectors[i].tolist() for i in ids],
                  dtype=pl.List(pl.Float32)),
        pl.Series("has_collaborative", [i in vectors for i in ids], dtype=pl.Boolean))
    report = {"task_users": int(n_tasks), "vector_users": int(users.size - n_tasks),
              "task_ratings": task_ratings.height, "items_with_vector": len(vectors), "dim": dim,
              "cf": {k: v for k, v in cf_report.items() if k != "dim"}}
    return task_ratings, table, report


def save_model(model: meta.MetaRecommender, settings: dict, folder: Path,
               features: meta.Features | None = None) -> None:
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        staging.mkdir(parents=True)
        save_file({n: t.contiguous() for n, t in model.state_dict().items()}, staging / WEIGHTS)
        if features is not None:  # the last row is the unknown item's zero vector
            ids = sorted(features.item_index, key=features.item_index.get)
            save_file({"item_ids": torch.tensor(ids, dtype=torch.int64), "item_x": features.item_x.contiguous()},
                      staging / ITEM_INPUTS)
        (staging / CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        swap_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model(folder: Path) -> tuple[meta.MetaRecommender, dict]:
    settings = json.loads((folder / CONFIG).read_text())
    model = meta.MetaRecommender(settings["item_dim"], settings["user_dim"], settings["hidden"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model, settings


@dataclass(frozen=True)
class MetaInputs:
    """What every variant trains and is judged on (sent once to each worker process)."""

    cfg: Config
    features: meta.Features
    tasks: list[meta.Tasks]
    valid: dict[int, pl.DataFrame]
    test_k: dict[int, pl.DataFrame]


def train_variant(inputs: MetaInputs, order: str) -> tuple[dict, dict, list[float], list[pl.DataFrame]]:
    """One variant of `meta.orders`, trained and scored on one thread: (its metrics, its weights, its query losses,
    its per-sample test scores)."""
    cfg, features, threshold = inputs.cfg, inputs.features, inputs.cfg.samples.like_threshold
    with one_thread():
        # Tiny tensors: with 2 torch threads the step ran >10x slower than with one on the 2-core machine
        torch.manual_seed(cfg.meta.seed)
        model = meta.MetaRecommender(features.item_x.shape[1], features.user_x.shape[1], cfg.meta.hidden)
        started = time.perf_counter()
        losses = meta.meta_train(model, features, inputs.tasks, cfg.meta, order)
        train_seconds = time.perf_counter() - started
        valid_auc = {k: auc(v["label"].to_list(), meta.score_samples(model, features, v, threshold, cfg.meta,
                                                                      order).tolist()) for k, v in inputs.valid.items()}
        test_auc, scoring_seconds, scored, frames = {}, 0.0, 0, []
        for k, frame in inputs.test_k.items():
            started = time.perf_counter()  # per sample: adapt to its user's k ratings (eq. 6), then score
            p = meta.score_samples(model, features, frame, threshold, cfg.meta, order)
            scoring_seconds, scored = scoring_seconds + time.perf_counter() - started, scored + frame.height
            test_auc[k] = auc(frame["label"].to_list(), p.tolist())
            frames.append(frame.select("sample_id", "label").with_columns(
                order=pl.lit(order), set=pl.lit(f"new_user_k{k}"), p_yes=pl.Series(p)))
    metrics = {"valid_auc": valid_auc, "valid_mean_auc": float(np.mean(list(valid_auc.values()))),
               "test_auc": test_auc, "final_loss": float(np.mean(losses[-20:])), "steps": len(losses),
               "train_seconds": train_seconds, "inference_ms_per_sample": 1e3 * scoring_seconds / max(scored, 1),
               "peak_memory_mb": peak_rss_mb()}  # of the process that trained it (a worker: parallel.py)
    return metrics, model.state_dict(), losses, frames


def run_meta_adaptation(cfg: Config, root: Path) -> dict:
    samples, items = read_processed(cfg, root, "samples"), read_processed(cfg, root, "items")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"), items,
                                    cfg.samples.like_threshold)
    ratings = training_ratings(data)
    task_ratings, item_table, split = task_users_and_features(
        cfg, data, ratings, pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root)))
    features = meta.build_features(item_table, demographic.user_groups(read_processed(cfg, root, "users"),
                                                                       cfg.knowledge.age_bands))
    ks = cfg.cold_start.curve_ks
    tasks = [meta.training_tasks(task_ratings, k, cfg.meta.query) for k in ks]
    valid = validation_sets(cfg, samples, ratings)
    test = history_cut_sets(samples, read_processed(cfg, root, "cold_start_sets"), ks)
    inputs = MetaInputs(cfg, features, tasks, valid, {k: test[f"new_user_k{k}"] for k in ks})
    # The variants are independent single-threaded trainings: one worker process per core (parallel.py)
    orders = [(order,) for order in cfg.meta.orders]
    with progress_bar(len(orders), "meta_adaptation: training and scoring the variants") as advance:
        trained = run_jobs(train_variant, inputs, orders, cfg.meta.workers or cpu_budget(),
                           on_done=lambda job, _: advance(1, info=f"{job[0]} done"))
    variants = {order: metrics for (order,), (metrics, _, _, _) in zip(orders, trained, strict=True)}
    frames = [frame for *_, variant_frames in trained for frame in variant_frames]
    models = {}
    for (order,), (_, weights, losses, _) in zip(orders, trained, strict=True):
        model = meta.MetaRecommender(features.item_x.shape[1], features.user_x.shape[1], cfg.meta.hidden)
        model.load_state_dict(weights)
        models[order] = (model, losses)
    chosen = max(variants, key=lambda o: variants[o]["valid_mean_auc"])
    model, losses = models[chosen]
    save_model(model, {"order": chosen, "item_dim": features.item_x.shape[1], "user_dim": features.user_x.shape[1],
                       "hidden": cfg.meta.hidden, "inner_lr": cfg.meta.inner_lr,
                       "inner_steps": cfg.meta.inner_steps, "task_split": split}, root / paths.META_MODEL, features)
    plot_training([(i + 1, v) for i, v in enumerate(losses)], [], f"meta_adaptation ({chosen}): query loss",
                  root / paths.FIGURES / "meta_adaptation_training.png", metric_name="")
    scores = pl.concat(frames)
    write_parquet(scores, root / paths.META_SCORES)
    paired = {}
    if chosen != "none" and "none" in variants:  # the kept variant vs no adaptation, on the same test samples
        for k in ks:
            part = scores.filter(pl.col("set") == f"new_user_k{k}")
            a, b = (part.filter(pl.col("order") == o).select("sample_id", "label", score="p_yes") for o in (chosen,
                                                                                                       "none"))
            paired[k] = {"auc": auc_with_ci(a).to_dict(), "vs_none": auc_difference(a, b).to_dict()}
    return {"orders": variants, "chosen": chosen, "tasks": {k: len(t.users) for k, t in zip(ks, tasks, strict=True)},
            "valid_samples": valid[ks[0]].height, "test_samples": inputs.test_k[ks[0]].height, "task_split": split,
            "chosen_vs_none": paired}
