"""The collaborative modality's CF fit leaves out the LLM's training targets (multimodal.collaborative_holdout):
a training prompt's vectors must not encode its own answer, as a validation or test prompt's never do."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import BaselinesConfig, Config
from explainrec_core.features.item_features import collaborative_vectors, hold_out
from tests.test_baselines import group_world

FAST = {"lightgcn": {"epochs": 3, "dim": 8}}


def _setup():
    samples, interactions, items = group_world(n_users=40, n_items=20, per_user=8)
    data = TrainingData.from_tables(samples, interactions, items, like_threshold=3.0)
    cfg = dataclasses.replace(Config(), baselines=BaselinesConfig(hyperparameters=FAST, seeds=(0,)))
    # "training prompts": three training targets, one of them disliked (a disliked target is a hard negative of
    # LightGCN's sampler, so it leaks too)
    train = data.train.sort("sample_id")
    liked, disliked = train.filter(pl.col("label") == 1), train.filter(pl.col("label") == 0)
    targets = pl.concat([liked.head(2), disliked.head(1)]).select("user_id", "item_id")
    return cfg, data, targets


def test_hold_out_removes_exactly_the_pairs_liked_or_not():
    _, data, targets = _setup()
    kept = hold_out(data, targets)
    assert kept.interactions.height == data.interactions.height - 3
    assert kept.interactions.join(targets, on=["user_id", "item_id"]).is_empty()
    # every other interaction is untouched, and no-op inputs return the data itself
    rest = data.interactions.join(targets, on=["user_id", "item_id"], how="anti")
    assert kept.interactions.sort("user_id", "item_id").equals(rest.sort("user_id", "item_id"))
    assert hold_out(data, None) is data and hold_out(data, targets.head(0)) is data


def test_collaborative_vectors_are_fitted_without_the_held_out_targets():
    cfg, data, targets = _setup()
    held, report = collaborative_vectors(cfg, data, targets)
    # the same fit as on a training period that never had those ratings: the targets cannot reach the vectors
    manual = dataclasses.replace(data, interactions=data.interactions.join(targets, on=["user_id", "item_id"],
                                                                           how="anti"))
    reference, _ = collaborative_vectors(cfg, manual)
    assert held.keys() == reference.keys()
    assert all(np.array_equal(held[i], reference[i]) for i in held)
    assert report["held_out_interactions"] == 3
    assert report["training_interactions"] == data.interactions.height - 3
    # ... and not the fit on the whole period (so this test can fail)
    whole, whole_report = collaborative_vectors(cfg, data)
    assert whole_report["held_out_interactions"] == 0
    assert any(not np.array_equal(whole[i], held[i]) for i in held.keys() & whole.keys())
