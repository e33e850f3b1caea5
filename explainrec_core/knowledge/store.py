"""The preference knowledge base as one asset: built from the training period, saved as a folder, loaded back.

    knowledge_base/
      manifest.json      weights w_g, the item smoothing chosen on validation, global like rate, training cut,
                         the validation AUC of each smoothing tried, counts
      groups.parquet     group_type, group_value, n_users, n, likes, p      (a group's overall like rate)
      attributes.parquet group_type, group_value, attribute, n, likes, p    (its like rate per genre/category)
      items.parquet      group_type, group_value, item_id, n, likes, prior, p   (p_g(i), every catalogue item)
      user_groups.parquet user_id, group_type, group_value                  (who belongs to which group)
      cross_domain.parquet domain_a, domain_b, n_users, correlation
      temporal.parquet   item_id, n, like_rate, n_recent, like_rate_recent, trend, trend_windows, days_since_last
      era.parquet        group_type, group_value, decade, n, likes, p

The folder is written next to its target and swapped in only when complete, so a failed build leaves the previous
knowledge base intact.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from explainrec_core.baselines.base import SAMPLE_KEY, TrainingData
from explainrec_core.config import KnowledgeConfig
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_json, write_parquet
from explainrec_core.knowledge import cross_domain, demographic, temporal
from explainrec_core.storage.base import swap_into_place

TABLES = ("groups", "attributes", "items", "user_groups", "cross_domain", "temporal", "era")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class KnowledgeBase:
    manifest: dict
    tables: dict[str, pl.DataFrame]

    def score(self, rows: pl.DataFrame) -> pl.DataFrame:
        """P(i | u) of eq. 5 for rows (user_id, item_id), with the evidence used (see demographic.score)."""
        return demographic.score(rows.select("user_id", "item_id"), self.tables["user_groups"],
                                 self.tables["items"], self.manifest["weights"], self.manifest["global_rate"])


def training_ratings(data: TrainingData) -> pl.DataFrame:
    """The training-period interactions with their labels (user_id, item_id, timestamp, label)."""
    return data.interactions.select("user_id", "item_id", "timestamp",
                                    label=(pl.col("rating") > data.like_threshold).cast(pl.Int64))


def build(data: TrainingData, users: pl.DataFrame, valid: pl.DataFrame, cfg: KnowledgeConfig) -> KnowledgeBase:
    """Every part of the knowledge base from `data` (training period only). `valid` samples (user_id, item_id,
    label) choose the item smoothing; they are scored, never counted."""
    ratings = training_ratings(data)
    item_ids = data.items["item_id"].sort().to_list()
    groups_of_users = demographic.user_groups(users, cfg.age_bands)
    domains = cross_domain.item_domains(data.items)
    tables = demographic.estimate(ratings, groups_of_users, domains.rename({"domain": "attribute"}), item_ids,
                                  cfg.attribute_smoothing)
    tried = {}
    for m in cfg.item_smoothing:
        weights = demographic.fit_weights(ratings, groups_of_users, tables, m)
        scored = demographic.score(valid.select("user_id", "item_id"), groups_of_users, tables.item_rates(m),
                                   weights, tables.global_rate)
        tried[m] = (auc(valid["label"].to_list(), scored["p"].to_list()), weights)
    # the best validation AUC; a tie (or no AUC: one class) keeps the smallest smoothing
    best = max(tried, key=lambda m: (tried[m][0] if tried[m][0] is not None else -1.0, -m))
    end = int(ratings["timestamp"].max())
    cut = dict(zip(SAMPLE_KEY, data.train.sort(*SAMPLE_KEY).select(SAMPLE_KEY).row(-1), strict=True))
    manifest = {
        "weights": tried[best][1], "item_smoothing": best, "attribute_smoothing": cfg.attribute_smoothing,
        "global_rate": tables.global_rate, "group_types": sorted(tried[best][1]),
        "valid_auc_by_item_smoothing": {str(m): v for m, (v, _) in tried.items()},
        "trained_until": cut, "last_rating_timestamp": end, "training_ratings": ratings.height,
        "users_with_demographics": int(groups_of_users.filter(pl.col("group_type") != demographic.ALL)
                                       ["user_id"].n_unique()),
        "fallbacks": {"no demographics": "the `all` group alone",
                      "a value unseen in the training period": "that group type is left out",
                      "an item with no training ratings": "its group's genre rates (or the group's rate: no genres)",
                      "an item outside the catalogue": "the global like rate"},
    }
    return KnowledgeBase(manifest, {
        "groups": tables.groups, "attributes": tables.attributes, "items": tables.item_rates(best),
        "user_groups": groups_of_users,
        "cross_domain": cross_domain.domain_correlations(ratings, domains, cfg.min_domain_ratings),
        "temporal": temporal.item_trends(ratings, item_ids, end, cfg.window_days),
        "era": temporal.era_preferences(ratings, groups_of_users, tables.groups, data.items,
                                        cfg.attribute_smoothing),
    })


def save(kb: KnowledgeBase, folder: Path) -> Path:
    """Write the folder next to `folder`, then swap it in (the previous one stays intact on any error)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        staging.mkdir()
        for name in TABLES:
            write_parquet(kb.tables[name], staging / f"{name}.parquet")
        write_json(kb.manifest, staging / MANIFEST)
        swap_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load(folder: Path) -> KnowledgeBase:
    folder = Path(folder)
    missing = [name for name in (*(f"{t}.parquet" for t in TABLES), MANIFEST) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: not a knowledge base, missing {missing} (run preference_knowledge_base)")
    return KnowledgeBase(json.loads((folder / MANIFEST).read_text()),
                         {name: pl.read_parquet(folder / f"{name}.parquet") for name in TABLES})
