"""MMGCN and LATTICE on real ML-100K with a small item_features table built from the real items (genre + decade
multi-hot attributes, a hashed bag of title words as a cheap text vector, random `collaborative` vectors, no image):
brief fits beat chance on the validation split, every row gets a finite score, a missing modality is zeroed and
masked, the collaborative column is never read, and no item_features is refused."""

from __future__ import annotations

import dataclasses
import zlib
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from explainrec_core.baselines import BASELINES, Recommender, TrainingData
from explainrec_core.baselines import lattice as lattice_module
from explainrec_core.baselines import mmgcn as mmgcn_module
from explainrec_core.baselines.lattice import knn_edges
from explainrec_core.baselines.registry import RANKING_CONFIGS, build_baseline
from tests.conftest import read_table

MODELS = ("mmgcn", "lattice")
MODULES = {"mmgcn": mmgcn_module, "lattice": lattice_module}
SHORT = {"mmgcn": {"epochs": 2}, "lattice": {"epochs": 3, "lr": 1e-2}}
"""A brief fit per model (the tuned settings take 12 and 30 epochs)."""
TEXT_DIM, COLLAB_DIM = 32, 8


def _vectors(rows: np.ndarray, present: np.ndarray | None = None) -> pl.Series:
    present = np.ones(len(rows), dtype=bool) if present is None else present
    return pl.Series([row.tolist() if keep else None for row, keep in zip(rows, present, strict=True)],
                     dtype=pl.List(pl.Float32))


def small_item_features(items: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """An item_features table of the asset's schema from the real catalogue, cheap to build."""
    items = items.sort("item_id")
    genres = sorted({g for gs in items["genres"].to_list() for g in (gs or [])})
    decades = sorted({(y or 0) // 10 for y in items["year"].to_list()})
    attributes = np.zeros((items.height, len(genres) + len(decades)), dtype=np.float32)
    text = np.zeros((items.height, TEXT_DIM), dtype=np.float32)
    for k, (title, year, gs) in enumerate(items.select("title", "year", "genres").iter_rows()):
        for g in gs or []:
            attributes[k, genres.index(g)] = 1.0
        attributes[k, len(genres) + decades.index((year or 0) // 10)] = 1.0
        for word in (title or "").lower().split():  # signed feature hashing of the title's words
            h = zlib.crc32(word.encode())
            text[k, h % TEXT_DIM] += 1.0 if (h >> 16) % 2 else -1.0
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-9)
    collaborative = np.random.default_rng(seed).normal(size=(items.height, COLLAB_DIM)).astype(np.float32)
    has_text = np.linalg.norm(text, axis=1) > 0
    return pl.DataFrame({
        "item_id": items["item_id"],
        "text": _vectors(text, has_text),
        "attributes": _vectors(attributes),
        "collaborative": _vectors(collaborative),
        "image": _vectors(np.zeros((items.height, 4), dtype=np.float32), np.zeros(items.height, dtype=bool)),
    }).with_columns(**{f"has_{m}": pl.col(m).is_not_null() for m in ("text", "attributes", "collaborative", "image")})


@pytest.fixture(scope="module")
def ml100k(processed_ml100k):
    """The real ML-100K training data (test split dropped: it stays unseen) with small item features; `new_item`
    is a catalogue item without any training-period interaction."""
    folder = processed_ml100k / "data" / "processed"
    samples = read_table(folder, "samples").filter(pl.col("split") != "test")
    items = read_table(folder, "items")
    features = small_item_features(items)
    data = TrainingData.from_tables(samples, read_table(folder, "interactions"), items, 3.0,
                                    item_features=features)
    rated = set(data.interactions["item_id"].to_list())
    new_item = next(i for i in features.filter(pl.col("has_text"))["item_id"].to_list() if i not in rated)
    popular = data.liked()["item_id"].value_counts(sort=True)["item_id"].head(5).to_list()
    valid = samples.filter(pl.col("split") == "valid")
    unseen_user = 10_000_000
    batch = pl.concat([
        valid.select("user_id", "item_id", "history_item_ids", "history_ratings").head(30),
        pl.DataFrame([
            (unseen_user, new_item, popular, [5.0] * 5),  # unseen user, item nobody rated in training
            (unseen_user, popular[0], popular[1:], [5.0, 4.0, 2.0, 1.0]),  # unseen user, liked + disliked history
            (unseen_user + 1, popular[0], [], []),  # unseen user, no history
            (int(data.liked()["user_id"][0]), new_item, [], []),  # a training user, the new item
            (unseen_user, 99_999_999, popular, [5.0] * 5),  # an item outside catalogue and features
            (unseen_user, new_item, [99_999_998, popular[0]], [5.0, 5.0]),  # an unknown history item
        ], schema={"user_id": pl.Int64, "item_id": pl.Int64, "history_item_ids": pl.List(pl.Int64),
                   "history_ratings": pl.List(pl.Float64)}, orient="row"),
    ])
    return SimpleNamespace(data=data, valid=valid, features=features, new_item=new_item, batch=batch)


@pytest.fixture(scope="module")
def reference(ml100k):
    """name -> (model, stats) of a brief fit with the base features (fitted once per module, with `valid`)."""
    fits = {}

    def get(name: str):
        if name not in fits:
            model = build_baseline(name, "auc", SHORT[name])
            fits[name] = (model, model.fit(ml100k.data, seed=0, valid=ml100k.valid))
        return fits[name]

    return get


def _fit_with(ml100k, name: str, features: pl.DataFrame | None) -> Recommender:
    model = build_baseline(name, "auc", SHORT[name])
    model.fit(dataclasses.replace(ml100k.data, item_features=features), seed=0)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_brief_fit_beats_chance_on_the_validation_split(name, reference):
    model, stats = reference(name)
    assert isinstance(model, Recommender) and model.name == name
    # untrained (0 epochs) these features give valid AUC 0.56 (mmgcn) / 0.51 (lattice); briefly fitted ~0.67
    assert stats["valid_auc"] > 0.62, stats["valid_auc"]
    assert stats["loss_curve"][-1] < stats["loss_curve"][0]
    # the content modalities present: image is all null here, collaborative is not content
    assert stats["modalities"] == ["text", "attributes"]


@pytest.mark.parametrize("name", MODELS)
def test_every_row_gets_a_finite_score(name, reference, ml100k):
    model, _ = reference(name)
    batch = ml100k.batch
    scores = model.score(batch)
    assert scores.shape == (batch.height,) and np.isfinite(scores).all()
    assert model.score(batch.head(0)).shape == (0,)
    new_item_rows = (batch["item_id"] == ml100k.new_item).to_numpy()
    unknown_rows = (batch["item_id"] == 99_999_999).to_numpy()
    assert (scores[unknown_rows] == 0).all()
    # an item nobody rated in training has a representation from its features
    row = model.item_index.lookup([ml100k.new_item])[0]
    assert row >= 0 and model.item_final[row].abs().sum() > 0
    assert (scores[new_item_rows] != 0).all()


@pytest.mark.parametrize("name", MODELS)
def test_a_missing_modality_is_zeroed_and_masked(name, reference, ml100k):
    """The new item loses its text: as a null vector, or as a junk vector flagged has_text = false. Both fits are
    identical (the junk values are never read), its text row is zero and masked, and its scores change (its text
    was used while it had one)."""
    is_new = pl.col("item_id") == ml100k.new_item
    null_text = ml100k.features.with_columns(
        text=pl.when(is_new).then(None).otherwise(pl.col("text")),
        has_text=pl.when(is_new).then(False).otherwise(pl.col("has_text")))
    junk = pl.Series([[1e3 * (k % 7 - 3) for k in range(TEXT_DIM)]] * ml100k.features.height,
                     dtype=pl.List(pl.Float32))
    junk_text = ml100k.features.with_columns(
        text=pl.when(is_new).then(junk).otherwise(pl.col("text")),
        has_text=pl.when(is_new).then(False).otherwise(pl.col("has_text")))
    without, flagged = _fit_with(ml100k, name, null_text), _fit_with(ml100k, name, junk_text)
    batch = ml100k.batch
    np.testing.assert_array_equal(without.score(batch), flagged.score(batch))

    row = flagged.item_index.lookup([ml100k.new_item])[0]
    text = next(m for m in flagged.net.modalities if m.name == "text")
    assert not text.present[row] and (text.features[row] == 0).all()
    attributes = next(m for m in flagged.net.modalities if m.name == "attributes")
    assert attributes.present[row] and (attributes.features[row] != 0).any()
    names = [m.name for m in flagged.net.modalities]
    k = names.index("text")
    with torch.no_grad():
        if name == "mmgcn":  # it enters the text GCN with a zero row (the projection's bias masked too)
            assert (flagged.net.gcns[k].item_inputs(text)[row] == 0).all()
            a = names.index("attributes")
            assert (flagged.net.gcns[a].item_inputs(attributes)[row] != 0).any()
        else:  # it is in neither text graph: no neighbours there, nobody's neighbour
            learned = knn_edges(flagged.net.maps[k](text.features), text.present, flagged.config.knn_k)
            for rows, cols, _ in (flagged.net.original[k], learned):
                assert row not in rows and row not in cols and len(rows) > 0

    new_item_rows = (batch["item_id"] == ml100k.new_item).to_numpy()
    model, _ = reference(name)
    assert not np.allclose(model.score(batch)[new_item_rows], without.score(batch)[new_item_rows])


@pytest.mark.parametrize("name", MODELS)
def test_the_collaborative_column_is_ignored(name, reference, ml100k):
    other = ml100k.features.with_columns(
        collaborative=small_item_features(ml100k.data.items, seed=1)["collaborative"])
    assert not other["collaborative"].equals(ml100k.features["collaborative"])
    model, _ = reference(name)
    np.testing.assert_array_equal(_fit_with(ml100k, name, other).score(ml100k.batch), model.score(ml100k.batch))


@pytest.mark.parametrize("name", MODELS)
def test_no_item_features_is_refused(name, ml100k):
    with pytest.raises(ValueError, match="item_features"):
        _fit_with(ml100k, name, None)
    only_collaborative = ml100k.features.select("item_id", "collaborative", "has_collaborative")
    with pytest.raises(ValueError, match="content modality"):
        _fit_with(ml100k, name, only_collaborative)


@pytest.mark.parametrize("name", MODELS)
def test_registered_with_a_setting_per_protocol(name):
    module = MODULES[name]
    assert BASELINES[name]().name == name and RANKING_CONFIGS[name] is module.RANKING_CONFIG
    auc_config, ranking_config = build_baseline(name).config, build_baseline(name, "ranking").config
    assert ranking_config == module.RANKING_CONFIG
    # the ranking protocol wants unrated items as negatives, the AUC one the user's disliked items
    assert ranking_config.disliked_negatives == 0.0 < auc_config.disliked_negatives
