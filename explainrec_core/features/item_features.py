"""The `item_features` asset: one row per item, one vector per modality, nulls where an item lacks a modality.

Modalities (config.MODALITIES):
- text: the item sentence "Title (Year). Genres: A, B" through all-MiniLM-L6-v2 (384-d, unit length), or the
  open_clip text tower when CLIP weights are configured (`multimodal.text_encoder: clip`);
- image: open_clip's image tower over item images (features/image_encoder.py); off unless real CLIP weights
  are configured: random-weight CLIP features would be noise passed off as information;
- attributes: multi-hot over the most frequent attribute values of the item_attributes table plus the genres
  (catalogue metadata, no interactions), L2-normalised;
- collaborative: the item vectors of a CF model (LightGCN by default) fitted on the training period only. Items
  nobody liked in the training period have no edge in its graph, so their vector is the random initialisation:
  those get null, never a vector that looks informative.
  With `multimodal.collaborative_holdout` (the default) the fit leaves out the ratings the LLM is trained to
  predict: the targets of rec_prompts' training prompts. Otherwise a training prompt's liked target is an edge of
  the graph its own vectors were fitted on, so its affinity (user . item) already encodes the answer, while a
  validation or test target never is one: the LLM would learn to trust an affinity that is weaker where it is
  used. Held out, every prompt the LLM reads, trained on or scored, has vectors fitted without its target
  (`scripts/cf_holdout_check.py` measures the gap).
- collaborative_ranking: the same CF model fitted with its ranking-protocol setting (`baselines.
  ranking_hyperparameters`: uniform negatives, so its vectors tell items a user will pick from the catalogue from
  the rest), same training period and holdout. The AUC setting's negatives are the user's disliked items, which is
  what telling liked from disliked rated items needs, and the opposite of what ranking among unrated items needs:
  on 1,000 validation lists of real ML-100K, the fold-in affinity of the AUC-protocol vectors ranks at NDCG@10
  0.213 (below popularity), the ranking-protocol ones at 0.496; on the 200 validation prompts their AUCs are 0.668
  and 0.575 (2026-12-07, seed 0). A prompt can carry both.
The pair modalities are not stored: they are per (user, item) pair and computed when a prompt is built
(features/feature_bank.py): `affinity` (`affinity_ranking`), user vector * item's collaborative
(collaborative_ranking) vector, elementwise, and `knowledge`,
the preference knowledge base's evidence (features/knowledge_evidence.py).

User vectors are not stored either: a user is always represented by the mean collaborative vector of the liked
items their prompt shows (LightGCN's fold-in). Most test users joined after the training period and have no
learned vector, and a training sample's learned user vector would have been fitted on that sample's own target.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.content import encode_texts, item_text
from explainrec_core.baselines.registry import build_baseline
from explainrec_core.config import STORED_MODALITIES, Config
from explainrec_core.errors import DataError


@dataclass(frozen=True)
class FeatureTable:
    frame: pl.DataFrame
    """item_id, one List(Float32) column per stored modality (null = missing), has_<modality> booleans."""
    report: dict
    """Per modality: dimension, coverage, source; why a modality is off."""


def attribute_vectors(items: pl.DataFrame, attributes: pl.DataFrame, max_values: int) -> tuple[np.ndarray, list[str]]:
    """(n_items, n_values) L2-normalised multi-hot over the `max_values` most frequent attribute values (the genres
    count as attribute values too), rows in `items` order; values shared by fewer than 2 items carry no
    similarity and are left out."""
    per_item: dict[int, set[str]] = {int(i): {f"genre:{g}" for g in (genres or [])}
                                     for i, genres in items.select("item_id", "genres").iter_rows()}
    for item, value in attributes.select("item_id", "value").iter_rows():
        if item in per_item and value:
            per_item[item].add(str(value))
    counts = Counter(v for values in per_item.values() for v in values)
    vocab = [v for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2][:max_values]
    column = {v: k for k, v in enumerate(vocab)}
    matrix = np.zeros((items.height, len(vocab)), dtype=np.float32)
    for row, item in enumerate(items["item_id"].to_list()):
        for v in per_item[item]:
            if v in column:
                matrix[row, column[v]] = 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0), vocab


def hold_out(data: TrainingData, pairs: pl.DataFrame | None) -> TrainingData:
    """`data` without the training-period interactions of the given (user_id, item_id) pairs."""
    if pairs is None or pairs.is_empty():
        return data
    keys = pairs.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)).unique()
    kept = data.interactions.with_columns(pl.col("user_id", "item_id").cast(pl.Int64)).join(
        keys, on=["user_id", "item_id"], how="anti")
    return dataclasses.replace(data, interactions=kept)


def collaborative_vectors(cfg: Config, data: TrainingData, held_out: pl.DataFrame | None = None,
                          protocol: str = "auc") -> tuple[dict[int, np.ndarray], dict]:
    """Item vectors of the configured CF model fitted on the training period (the `protocol`'s settings, the first
    baseline seed) without the `held_out` (user_id, item_id) pairs' interactions; only items with a liked
    interaction left (an edge of the graph) get one."""
    n_before = data.interactions.height
    data = hold_out(data, held_out)
    name = cfg.multimodal.collaborative_model
    settings = (cfg.baselines.ranking_hyperparameters if protocol == "ranking"
                else cfg.baselines.hyperparameters)
    model = build_baseline(name, protocol, settings.get(name))
    seed = cfg.baselines.seeds[0] if cfg.baselines.seeds else 0
    stats = model.fit(data, seed)
    if name == "lightgcn":
        matrix = model.item_final.numpy()
    else:  # bpr: the item factors (its item bias is a popularity term, not a direction)
        matrix = model.net.items.weight.detach().numpy()
    liked = set(data.liked()["item_id"].to_list())
    vectors = {int(i): matrix[k].astype(np.float32) for k, i in enumerate(model.item_index.ids) if int(i) in liked}
    return vectors, {"model": name, "protocol": protocol, "seed": seed,
                     "fit_seconds": round(stats.get("seconds", 0.0), 2),
                     "training_interactions": data.interactions.height,
                     "held_out_interactions": n_before - data.interactions.height, "dim": int(matrix.shape[1])}


def build_item_features(cfg: Config, items: pl.DataFrame, attributes: pl.DataFrame, data: TrainingData,
                        images=None, held_out: pl.DataFrame | None = None) -> FeatureTable:
    """The item_features table for every catalogue item. `images`: an `ImageFeatures` (features/image_encoder.py)
    or None when the image modality is off. `held_out`: (user_id, item_id) pairs the CF fit leaves out (the LLM's
    training targets)."""
    mm = cfg.multimodal
    items = items.unique("item_id", keep="first").sort("item_id")
    if items.is_empty():
        raise DataError("items", "the items table is empty: no item to describe")
    ids = items["item_id"].to_list()
    columns: dict[str, list] = {}
    report: dict = {}

    texts = [item_text(t, y, g) for t, y, g in items.select("title", "year", "genres").iter_rows()]
    if mm.text_encoder == "clip":
        from explainrec_core.features.image_encoder import ClipSpec, encode_texts_clip

        by_id = encode_texts_clip(ClipSpec(mm.clip_model, mm.clip_pretrained), dict(zip(ids, texts, strict=True)))
        text = np.stack([by_id[i] for i in ids])
        report["text"] = {"source": f"open_clip {mm.clip_model} text tower ({mm.clip_pretrained})"}
    else:
        text = encode_texts(texts)
        report["text"] = {"source": "all-MiniLM-L6-v2 over 'Title (Year). Genres: ...'"}
    columns["text"] = list(text.astype(np.float32))

    attr, vocab = attribute_vectors(items, attributes, mm.max_attribute_values)
    has_attr = attr.any(axis=1)
    columns["attributes"] = [row if ok else None for row, ok in zip(attr, has_attr, strict=True)]
    report["attributes"] = {"source": "multi-hot of genres and item_attributes values (shared by >= 2 items)",
                            "values": len(vocab)}

    for column, protocol in (("collaborative", "auc"), ("collaborative_ranking", "ranking")):
        cf, cf_report = collaborative_vectors(cfg, data, held_out, protocol)
        columns[column] = [cf.get(i) for i in ids]
        source = f"{cf_report['model']} ({protocol}-protocol setting) fitted on the training period"
        if cf_report["held_out_interactions"]:
            source += " without the LLM's training targets"
        report[column] = {"source": source, **cf_report}

    if images is None:
        columns["image"] = [None] * len(ids)
        report["image"] = {"source": None, "off": "no CLIP weights configured (multimodal.clip_pretrained)"
                           if not mm.clip_pretrained else "no image folder configured (multimodal.image_dir)"}
    else:
        columns["image"] = [images.vectors.get(i) for i in ids]
        report["image"] = {"source": f"open_clip {images.model} ({images.pretrained})", "encoded": images.encoded,
                           "missing": images.missing, "corrupt": images.corrupt,
                           "corrupt_examples": images.corrupt_examples, "ignored_files": images.ignored_files}

    frame = pl.DataFrame({"item_id": pl.Series(ids, dtype=pl.Int64)})
    for m in STORED_MODALITIES:
        values = columns[m]
        frame = frame.with_columns(
            pl.Series(m, [None if v is None else np.asarray(v, np.float32).tolist() for v in values],
                      dtype=pl.List(pl.Float32)),
            pl.Series(f"has_{m}", [v is not None for v in values], dtype=pl.Boolean))
        present = [v for v in values if v is not None]
        report[m].update(dim=len(present[0]) if present else 0, coverage=round(len(present) / len(ids), 4),
                         items=len(present))
    report["n_items"] = len(ids)
    return FeatureTable(frame, report)


def features_digest(frame: pl.DataFrame) -> str:
    """A content hash of a feature table: a fusion trained on one table refuses another (features/fusion.py)."""
    digest = hashlib.sha256()
    for m in STORED_MODALITIES:
        digest.update(m.encode())
    digest.update(frame["item_id"].to_numpy().tobytes())
    for m in STORED_MODALITIES:
        if m in frame.columns:
            values = frame[m].explode().fill_null(float("nan")).to_numpy().astype(np.float32)
            digest.update(values.tobytes())
    return digest.hexdigest()
