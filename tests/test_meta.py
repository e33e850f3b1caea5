"""Meta-learning (eq. 6): the inner step against a manual computation, first- vs second-order outer gradients, a
toy task only adaptation can solve, and the step on real ML-100K."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.func import functional_call

from explainrec_core import paths
from explainrec_core.config import MetaConfig, load_config
from explainrec_core.evaluation import report
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_parquet
from explainrec_core.knowledge import meta
from explainrec_core.pipeline import run_step
from explainrec_core.steps.meta_steps import ITEM_INPUTS, load_model, task_users_and_features
from tests.conftest import write_params
from tests.test_multimodal_baselines import small_item_features


def _tiny(seed: int = 0) -> tuple[meta.MetaRecommender, dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = meta.MetaRecommender(item_dim=3, user_dim=2, hidden=4).double()
    x, u = torch.randn(5, 3, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    return model, dict(model.named_parameters()), x, u, y


def test_the_inner_step_is_theta_minus_alpha_times_the_support_gradient():
    model, params, x, u, y = _tiny()
    alpha = 0.3
    adapted = meta.adapt(model, params, x, u, y, alpha, steps=1, order="second")
    loss = nn.functional.binary_cross_entropy_with_logits(model(x, u), y)
    local = [n for n in params if n.startswith(meta.LOCAL)]
    grads = torch.autograd.grad(loss, [params[n] for n in local])
    assert sorted(adapted) == sorted(local)  # only the decision layers move
    for name, g in zip(local, grads, strict=True):
        torch.testing.assert_close(adapted[name], params[name] - alpha * g)
    # two steps: the second gradient is taken at the first step's parameters
    twice = meta.adapt(model, params, x, u, y, alpha, steps=2, order="first")
    shared = {n: p for n, p in params.items() if n not in local}
    mid = {n: params[n] - alpha * g for n, g in zip(local, grads, strict=True)}
    loss2 = nn.functional.binary_cross_entropy_with_logits(functional_call(model, {**shared, **mid}, (x, u)), y)
    grads2 = torch.autograd.grad(loss2, [mid[n] for n in local])
    for name, g in zip(local, grads2, strict=True):
        torch.testing.assert_close(twice[name], mid[name] - alpha * g)
    # no support or no adaptation: the parameters as they are
    for same in (meta.adapt(model, params, x[:0], u, y[:0], alpha, 1, "second"),
                 meta.adapt(model, params, x, u, y, alpha, 1, "none")):
        assert all(same[n] is params[n] for n in local)


def test_first_order_drops_the_second_derivative_and_second_order_keeps_it():
    model, params, x, u, y = _tiny(1)
    qx, qy = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    local = [n for n in params if n.startswith(meta.LOCAL)]

    def outer_grad(order: str) -> list[torch.Tensor]:
        logits = meta.adapted_logits(model, params, x, u, y, qx, 0.5, 1, order)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, qy)
        return list(torch.autograd.grad(loss, [params[n] for n in local]))

    first, second = outer_grad("first"), outer_grad("second")
    # first-order MAML: the outer gradient is the query gradient at the adapted parameters
    adapted = {n: p.detach().requires_grad_() for n, p in meta.adapt(model, params, x, u, y, 0.5, 1,
                                                                       "first").items()}
    shared = {n: p for n, p in params.items() if n not in local}
    at_adapted = torch.autograd.grad(nn.functional.binary_cross_entropy_with_logits(
        functional_call(model, {**shared, **adapted}, (qx, u)), qy), [adapted[n] for n in local])
    for a, b in zip(first, at_adapted, strict=True):
        torch.testing.assert_close(a, b)
    assert max(float((a - b).abs().max()) for a, b in zip(first, second, strict=True)) > 1e-6


def test_maml_learns_what_only_the_support_set_reveals():
    """Each user likes the items on one side of a hidden direction of their own; nothing about the user says which,
    so the model without adaptation is at chance and the adapted one is not."""
    rng = np.random.default_rng(0)
    n_items, dim = 200, 4
    item_x = torch.from_numpy(rng.normal(size=(n_items + 1, dim)).astype(np.float32))
    features = meta.Features({i: i for i in range(n_items)}, item_x, {}, torch.zeros(1, 1))

    def tasks(n_users: int, k: int, query: int, offset: int) -> meta.Tasks:
        users, sx, sy, qx, qy = [], [], [], [], []
        for u in range(n_users):
            sign = 1.0 if rng.random() < 0.5 else -1.0
            chosen = rng.choice(n_items, k + query, replace=False)
            labels = (sign * item_x[chosen, 0].numpy() > 0).astype(np.float32)
            users.append(offset + u)
            sx.append(chosen[:k]), sy.append(labels[:k]), qx.append(chosen[k:]), qy.append(labels[k:])
        return meta.Tasks(k, np.array(users), np.array(sx), np.array(sy), np.array(qx), np.array(qy))

    cfg = MetaConfig(query=8, inner_lr=2.0, epochs=8, tasks_per_batch=32, hidden=16, meta_lr=1e-2)
    train, test = tasks(400, 8, 8, 0), tasks(200, 8, 8, 10_000)
    results = {}
    for order in ("none", "first"):
        torch.manual_seed(0)
        model = meta.MetaRecommender(dim, 1, cfg.hidden)
        meta.meta_train(model, features, [train], cfg, order)
        params = {n: p.detach() for n, p in model.named_parameters()}
        scores = torch.stack([meta.adapted_logits(
            model, params, item_x[test.support_items[t]], torch.zeros(1), torch.from_numpy(test.support_y[t]),
            item_x[test.query_items[t]], cfg.inner_lr, cfg.inner_steps, order).detach() for t in range(200)])
        results[order] = auc(test.query_y.ravel().tolist(), scores.numpy().ravel().tolist())
    assert results["none"] < 0.6 and results["first"] > 0.8, results


def test_training_tasks_are_disjoint_windows_in_time_order():
    ratings = pl.DataFrame({"user_id": [1] * 7 + [2] * 3, "item_id": [17, 11, 12, 13, 14, 15, 16, 21, 22, 23],
                            "label": [1, 0, 1, 0, 1, 0, 1, 1, 1, 1],
                            "timestamp": [7, 1, 2, 3, 4, 5, 6, 1, 2, 3]})
    t = meta.training_tasks(ratings, k=1, query=2)
    assert t.users.tolist() == [1, 1, 2]  # user 1: windows 11|12,13 and 14|15,16 (17 is left over)
    assert t.support_items.tolist() == [[11], [14], [21]] and t.query_items.tolist() == [[12, 13], [15, 16], [22, 23]]
    assert t.query_y.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert meta.training_tasks(ratings, k=0, query=2).support_items.shape == (4, 0)  # 3 windows + 1


def test_the_step_compares_the_variants_on_valid_and_draws_the_test_curve(tmp_path, processed_ml100k):
    import shutil

    shutil.copytree(processed_ml100k, tmp_path, dirs_exist_ok=True)
    write_params(tmp_path, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                 meta={"orders": ["none", "first"], "epochs": 1, "query": 10})
    cfg = load_config(tmp_path / "params.yaml")
    items = pl.read_parquet(tmp_path / "data/processed/items.parquet")
    write_parquet(small_item_features(items), paths.resolve(paths.ITEM_FEATURES, cfg, tmp_path))
    stats = run_step("meta_adaptation", cfg, tmp_path)
    assert set(stats["orders"]) == {"none", "first"} and stats["chosen"] in stats["orders"]
    none = stats["orders"]["none"]["test_auc"]
    assert len(set(round(v, 12) for v in none.values())) == 1  # no adaptation reads no history
    for order, v in stats["orders"].items():
        assert set(v["valid_auc"]) == set(cfg.cold_start.curve_ks) and 0.5 < v["valid_mean_auc"] < 1.0, order
        assert v["train_seconds"] > 0 and v["inference_ms_per_sample"] > 0 and v["peak_memory_mb"] > 10, order
    # the variants trained on two worker processes (parallel.py) give the same models and scores as one process
    first_scores = pl.read_parquet(tmp_path / paths.META_SCORES)
    write_params(tmp_path, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                 meta={"orders": ["none", "first"], "epochs": 1, "query": 10, "workers": 2})
    again = run_step("meta_adaptation", load_config(tmp_path / "params.yaml"), tmp_path)
    assert {o: v["test_auc"] for o, v in again["orders"].items()} == {o: v["test_auc"] for o, v in
                                                                      stats["orders"].items()}
    assert pl.read_parquet(tmp_path / paths.META_SCORES).equals(first_scores)
    # the report costs each variant from these figures (Table IV)
    methods = report._meta_methods({"meta_adaptation": stats})
    assert {m["train_seconds"] for m in methods.values()} == {v["train_seconds"] for v in stats["orders"].values()}
    scores = pl.read_parquet(tmp_path / paths.META_SCORES)
    assert scores.height == 2 * len(cfg.cold_start.curve_ks) * stats["test_samples"]
    model, settings = load_model(tmp_path / paths.META_MODEL)
    assert settings["order"] == stats["chosen"] and isinstance(model, meta.MetaRecommender)
    # the kept variant is paired with no adaptation per k, unless no adaptation itself was kept
    assert set(stats["chosen_vs_none"]) == (set() if stats["chosen"] == "none" else set(cfg.cold_start.curve_ks))
    # the item inputs it was trained on travel with it: the CF refit without the task users, not item_features'
    inputs = load_file(tmp_path / paths.META_MODEL / ITEM_INPUTS)
    assert inputs["item_x"].shape[0] == inputs["item_ids"].shape[0] + 1  # + the unknown item's row
    split = stats["task_split"]
    assert split["task_users"] > 0 and split["vector_users"] > 0 and split["cf"]["held_out_interactions"] == \
        split["task_ratings"] > 0
    with pytest.raises(ValueError, match="one history length"):
        meta.score_samples(model, meta.build_features(small_item_features(items), pl.DataFrame(
            {"user_id": [1], "group_type": ["all"], "group_value": ["all"]})),
            pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "history_item_ids": [[1], [1, 2]],
                          "history_ratings": [[5.0], [5.0, 1.0]]}), 3.0, cfg.meta, "first")


def test_the_task_users_ratings_never_reach_the_item_vectors(tmp_path, processed_ml100k):
    """meta_adaptation's item CF vectors are refitted without the task users' ratings: flipping a task user's
    training rating leaves every item input unchanged, flipping another user's changes them (the test can fail)."""
    from explainrec_core.baselines.base import TrainingData
    from explainrec_core.knowledge.store import training_ratings

    root = processed_ml100k
    write_params(tmp_path, data={"raw_dir": "unused", "processed_dir": "data/processed"})
    cfg = load_config(tmp_path / "params.yaml")
    read = lambda name: pl.read_parquet(root / f"data/processed/{name}.parquet")  # noqa: E731
    items = read("items")
    features = small_item_features(items)

    def inputs(interactions):
        data = TrainingData.from_tables(read("samples"), interactions, items, cfg.samples.like_threshold)
        tasks, table, _ = task_users_and_features(cfg, data, training_ratings(data), features)
        return tasks, table["collaborative"].to_list()

    interactions = read("interactions")
    tasks, before = inputs(interactions)
    data = TrainingData.from_tables(read("samples"), interactions, items, cfg.samples.like_threshold)
    period = training_ratings(data)
    others = period.join(tasks.select("user_id").unique(), on="user_id", how="anti")
    for row, changes in ((tasks.row(0, named=True), False), (others.row(0, named=True), True)):
        flipped = interactions.with_columns(
            pl.when((pl.col("user_id") == row["user_id"]) & (pl.col("item_id") == row["item_id"]))
            .then(pl.lit(1.0 if row["label"] else 5.0)).otherwise(pl.col("rating")).alias("rating"))
        _, after = inputs(flipped)
        assert (after != before) is changes, row
