"""Cross-domain zero-shot sets (paper section IV-A1): train on a source domain, evaluate on a held-out target domain.

Two ways to get two domains with shared users:

1. One dataset split by genre (`genre_domains`), what ML-100K allows. Rule: an item is in the *target* domain
   when its genres include any of the held-out `target_genres`; every other item, including items without
   genres, is in the *source* domain. "Any" rather than "only" keeps the target domain clean: no item with a
   held-out genre (e.g. an animated comedy) can leak into training through its other genres. With the default
   target genres Animation, Children's and Fantasy (a family/kids domain), ML-100K has 137 target and 1,545
   source items; see README for the resulting set sizes.
2. Two datasets whose users overlap through a user-id mapping table (`combine_domains`, e.g. Amazon + MovieLens):
   items are re-keyed so ids never collide and keep a `domain` column ("a" / "b") and their original id.

The *bridge users* (the "user mapping" of the paper) are the users with interactions in both domains.

`build_cross_domain_sets` makes, from the samples table (samples.py) and the interactions:
- `source_train`: training-split samples whose target item is a source item;
- `source_valid`: validation-split samples whose target item is a source item: where a model trained on the source
  domain is selected (early stopping), so no choice is ever made on the target domain;
- `target_eval`: samples of `eval_splits` whose target item is a target item (zero-shot: no target item is ever
  a training target or history item) and whose user has at least `min_source_interactions` source-domain
  interactions before it. The default eval_splits, validation and test, keep the global time cut: every
  evaluated rating is later than every training target, so no model has trained on the user's later tastes.
  Adding "train" evaluates every target-domain rating (5x more on ML-100K) at the price of that leak.
Histories in both sets are rebuilt from the user's source-domain interactions only: the previous
`history_len` source items rated before the sample's second (in (timestamp, item) order), so a target item never
appears in a history either, and a target-domain evaluation reads the user's latest source-domain tastes. A source_train
sample whose user has no earlier source-domain interaction has no history and is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from explainrec_core.data import rawcheck as rc
from explainrec_core.data.movielens import Tables
from explainrec_core.data.samples import history_gather
from explainrec_core.errors import ConfigError, DataError

SOURCE, TARGET = "source", "target"
SETS = ("source_train", "source_valid", "target_eval")
OUTPUT_COLUMNS = ("set", "sample_id", "user_id", "item_id", "rating", "label", "timestamp", "history_item_ids",
                  "history_ratings", "split")


def genre_domains(items: pl.DataFrame, target_genres: Sequence[str], items_file: str = "items") -> pl.DataFrame:
    """item_id -> domain ("source" | "target"): target = any of `target_genres` among the item's genres."""
    if "genres" not in items.columns:
        raise DataError(items_file, "items have no genres column: a genre-domain split needs item genres")
    if not target_genres:
        raise ConfigError("cross_domain.target_genres is empty: name the genres of the held-out target domain")
    known = set(items["genres"].explode().drop_nulls().unique().to_list())
    unknown = sorted(set(target_genres) - known)
    if unknown:
        raise DataError(items_file, f"target genres {unknown} match no item genre; known genres: {sorted(known)}",
                        column="genres", values=unknown)
    is_target = pl.col("genres").list.eval(pl.element().is_in(list(target_genres))).list.any().fill_null(False)
    return items.select("item_id", pl.when(is_target).then(pl.lit(TARGET)).otherwise(pl.lit(SOURCE)).alias("domain"))


def item_domains(items: pl.DataFrame, target_genres: Sequence[str], items_file: str = "items") -> pl.DataFrame:
    """item_id -> domain: the datasets' own domains when the items come from two datasets (`combine_domains`: "a" is
    the source, "b" the target), else the genre split (`genre_domains`)."""
    if "domain" in items.columns and set(items["domain"].drop_nulls().unique()) <= {"a", "b"}:
        return items.select("item_id", pl.col("domain").replace_strict({"a": SOURCE, "b": TARGET}))
    return genre_domains(items, target_genres, items_file)


def bridge_users(interactions: pl.DataFrame | pl.LazyFrame, domains: pl.DataFrame) -> pl.DataFrame:
    """Users with interactions in both domains, with their interaction counts per domain."""
    return (interactions.lazy().select("user_id", "item_id").join(domains.lazy(), on="item_id")
            .group_by("user_id").agg((pl.col("domain") == SOURCE).sum().alias("source_interactions"),
                                     (pl.col("domain") == TARGET).sum().alias("target_interactions"))
            .filter((pl.col("source_interactions") > 0) & (pl.col("target_interactions") > 0))
            .sort("user_id").collect())


def build_cross_domain_sets(samples: pl.DataFrame | pl.LazyFrame, interactions: pl.DataFrame | pl.LazyFrame,
                            domains: pl.DataFrame, history_len: int, min_source_interactions: int,
                            eval_splits: Sequence[str] = ("valid", "test")) -> pl.DataFrame:
    """The `source_train`, `source_valid` and `target_eval` sets (module docstring), one row per sample,
    OUTPUT_COLUMNS."""
    inter = interactions.lazy().select("user_id", "item_id", "rating", "timestamp")
    source = (inter.join(domains.lazy().filter(pl.col("domain") == SOURCE).select("item_id"), on="item_id", how="semi")
              .sort("user_id", "timestamp", "item_id").collect())
    is_source = pl.col("domain") == SOURCE
    picked = (samples.lazy().join(domains.lazy(), on="item_id", how="left")
              .filter((pl.col("split").is_in(["train", "valid"]) & is_source)
                      | (pl.col("split").is_in(list(eval_splits)) & (pl.col("domain") == TARGET)))
              .select("sample_id", "user_id", "item_id", "rating", "label", "timestamp", "split",
                      pl.when(~is_source).then(pl.lit(SETS[2]))
                      .when(pl.col("split") == "train").then(pl.lit(SETS[0]))
                      .otherwise(pl.lit(SETS[1])).alias("set"))
              .collect())
    # Where each sample sits among its user's source interactions: the number rated strictly before its second
    # (as in samples.py: ratings given in the same second as the target are not its history). Sample rows sort
    # before every interaction of the same second, the target itself included.
    marks = pl.concat([
        source.select("user_id", "timestamp", "item_id", pl.lit(1, pl.Int8).alias("kind"),
                      pl.lit(None, pl.Int64).alias("sample_id")),
        picked.select("user_id", "timestamp", "item_id", pl.lit(0, pl.Int8).alias("kind"), "sample_id"),
    ]).sort("user_id", "timestamp", "kind", "item_id")
    starts = source.with_row_index("row").group_by("user_id").agg(pl.col("row").min().alias("user_start"))
    before = (marks.with_columns(pl.col("kind").cum_sum().over("user_id").cast(pl.Int64).alias("n_before"))
              .filter(pl.col("kind") == 0)
              .join(starts, on="user_id", how="left")
              .select("sample_id", "n_before",
                      (pl.col("user_start").fill_null(0) + pl.col("n_before")).cast(pl.Int64).alias("row"),
                      pl.min_horizontal("n_before", history_len).cast(pl.Int64).alias("history_len")))
    items = history_gather(source["item_id"].cast(pl.Int64).to_numpy(), history_len, pl.Int64)
    ratings = history_gather(source["rating"].cast(pl.Float64).to_numpy(), history_len, pl.Float64)
    window = pl.struct("row", "history_len")
    needed = pl.when(pl.col("set") == SETS[2]).then(max(min_source_interactions, 1)).otherwise(1)
    return (picked.join(before, on="sample_id").filter(pl.col("n_before") >= needed)
            .with_columns(window.map_batches(items, pl.List(pl.Int64)).alias("history_item_ids"),
                          window.map_batches(ratings, pl.List(pl.Float64)).alias("history_ratings"))
            .select(OUTPUT_COLUMNS).sort("set", "sample_id"))


def cross_domain_stats(sets: pl.DataFrame, domains: pl.DataFrame, bridge: pl.DataFrame) -> dict:
    stats: dict = {
        "n_source_items": int((domains["domain"] == SOURCE).sum()),
        "n_target_items": int((domains["domain"] == TARGET).sum()),
        "n_bridge_users": bridge.height,
    }
    for name in SETS:
        part = sets.filter(pl.col("set") == name)
        stats[name] = {
            "n_samples": part.height,
            "n_users": part["user_id"].n_unique(),
            "n_items": part["item_id"].n_unique(),
            "positive_rate": round(float(part["label"].mean()), 4) if part.height else None,
            "mean_history_len": round(float(part["history_item_ids"].list.len().mean()), 3) if part.height else None,
        }
    return stats


def read_user_map(path: Path, key_a: str = "user_id_a", key_b: str = "user_id_b") -> pl.DataFrame:
    """A user-id mapping CSV (header `user_id_a,user_id_b` by default; ids as text) -> two String columns,
    one-to-one (a repeated id on either side is an error naming its lines)."""
    df = rc.read_delimited(path, [key_a, key_b], separator=",", has_header=True)
    for key in (key_a, key_b):
        df = rc.cast_column(df, path, key, pl.String)  # empty ids are errors
        rc.check_unique(df, path, [key])
    return rc.drop_row_index(df).select(pl.col(key_a).alias("user_id_a"), pl.col(key_b).alias("user_id_b"))


def combine_domains(tables_a: Tables, tables_b: Tables, user_map: pl.DataFrame, *, key_a: str = "user_id",
                    key_b: str = "user_id", map_file: str = "user map") -> Tables:
    """Two datasets as one, for cross-domain training: domain "a" and domain "b".

    `user_map` has columns user_id_a, user_id_b holding values of the users tables' `key_a` / `key_b` columns
    (e.g. key_b="reviewer_id" for Amazon's original ids). Mapped b-users take their a-user's id; unmapped
    b-users get new ids above a's largest. Items keep a's ids; b's items are shifted above a's largest id and
    keep their original id in `source_item_id`. Interactions, items and users get a `domain` column (users:
    "a", "b" or "both"). Columns one dataset lacks are null for the other's rows.
    """
    for key, tables, side in ((key_a, tables_a, "a"), (key_b, tables_b, "b")):
        if key not in tables.users.columns:
            raise DataError(map_file, f"users of dataset {side} have no column {key!r}; columns: "
                            f"{tables.users.columns}")
        col = f"user_id_{side}"
        known = tables.users.select(pl.col(key).cast(pl.String)).to_series()
        bad = user_map.filter(~pl.col(col).cast(pl.String).is_in(known.implode()))
        if bad.height:
            raise DataError(map_file, f"{bad.height} mapped id(s) missing from dataset {side}'s users.{key}",
                            column=col, values=bad[col].to_list())
    for col in ("user_id_a", "user_id_b"):
        dup = user_map.filter(pl.col(col).is_duplicated())
        if dup.height:
            raise DataError(map_file, "the user map must be one-to-one", column=col,
                            values=dup[col].unique().sort().to_list())
    ids_a = tables_a.users.select("user_id", pl.col(key_a).cast(pl.String).alias("user_id_a"))
    ids_b = tables_b.users.select("user_id", pl.col(key_b).cast(pl.String).alias("user_id_b"))
    pairs = (user_map.select(pl.col("user_id_a").cast(pl.String), pl.col("user_id_b").cast(pl.String))
             .join(ids_a.rename({"user_id": "new_id"}), on="user_id_a")
             .join(ids_b, on="user_id_b").select("user_id", "new_id"))
    user_base = int(tables_a.users["user_id"].max() or 0) + 1
    unmapped = (tables_b.users.select("user_id").join(pairs, on="user_id", how="anti").sort("user_id")
                .with_columns((pl.int_range(pl.len()) + user_base).cast(pl.Int64).alias("new_id")))
    b_users = pl.concat([pairs, unmapped])  # b's user_id -> combined user_id
    item_base = int(tables_a.items["item_id"].max() or 0) + 1

    def b_rekey(df: pl.DataFrame) -> pl.DataFrame:
        out = df.with_columns((pl.col("item_id") + item_base).alias("item_id")) if "item_id" in df.columns else df
        if "user_id" in df.columns:
            out = out.join(b_users, on="user_id", how="left").drop("user_id").rename({"new_id": "user_id"})
        return out

    interactions = pl.concat([tables_a.interactions.with_columns(pl.lit("a").alias("domain")),
                              b_rekey(tables_b.interactions).with_columns(pl.lit("b").alias("domain"))],
                             how="diagonal_relaxed")
    original = pl.col("item_id").alias("source_item_id")
    items = pl.concat([tables_a.items.with_columns(original, pl.lit("a").alias("domain")),
                       b_rekey(tables_b.items.with_columns(original, pl.lit("b").alias("domain")))],
                      how="diagonal_relaxed")
    users_b = b_rekey(tables_b.users)
    # A mapped user is one row: a's columns, plus b's columns a lacks (e.g. Amazon's reviewer_id).
    b_only = ["user_id", *(c for c in users_b.columns if c not in tables_a.users.columns)]
    users = pl.concat([
        tables_a.users.join(users_b.select(b_only).join(pairs.select(pl.col("new_id").alias("user_id")),
                                                        on="user_id", how="semi"), on="user_id", how="left")
        .with_columns(pl.when(pl.col("user_id").is_in(pairs["new_id"].implode())).then(pl.lit("both"))
                      .otherwise(pl.lit("a")).alias("domain")),
        users_b.join(unmapped.select(pl.col("new_id").alias("user_id")), on="user_id", how="semi")
        .with_columns(pl.lit("b").alias("domain")),
    ], how="diagonal_relaxed")
    first = ["user_id", "item_id"]
    return Tables(interactions.select(*first, pl.exclude(first)).sort("user_id", "timestamp", "item_id"),
                  items.select("item_id", pl.exclude("item_id")).sort("item_id"),
                  users.select("user_id", pl.exclude("user_id")).sort("user_id"))
