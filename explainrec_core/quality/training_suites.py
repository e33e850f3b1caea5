"""Great Expectations suites for the tables the models train and are evaluated on.

The data gate (suites.py) checks the tables every step starts from; these check what the later steps build from
them: the TALLRec prompts, the attribution prompts, the item attributes and the cross-domain sets. A bad prompt
(empty, a second "### Response:" that the model would learn to continue, an answer that disagrees with the
label) or a sample in two splits (a training sample scored as a test sample) silently moves every number, so
each of these is a blocking check before the steps that train on the table.

As in suites.py, properties that span rows or tables are turned into derived columns first, so GX still does
the checking and reports the offending values.
"""

from __future__ import annotations

import math

import great_expectations.expectations as gxe
import pandas as pd
import polars as pl

from explainrec_core.config import Config
from explainrec_core.data.cross_domain import SETS as CROSS_DOMAIN_SETS
from explainrec_core.data.samples import SPLITS
from explainrec_core.prompts import rec_response

MARKER = "### Response:"
"""Where the prompt ends and the answer starts: exactly one per prompt, or training teaches the wrong boundary."""
PROMPT_SETS = {"train": "train", "valid": "valid", "test": "test", "new_user": "test", "new_item": "test"}
"""Prompt set -> the split its samples must come from (the cold-start sets are subsets of the test split)."""


def _not_null(*columns: str) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _all_true(*columns: str) -> list:
    return [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in columns]


def prompts_frame(prompts: pl.DataFrame, sample_splits: pl.DataFrame, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """Prompt rows with derived columns: the split each set must draw from, how many splits each sample appears in,
    whether that is the sample's own split in the samples table, text lengths, marker counts, answer vs label."""
    answer = pl.when(pl.col("label") == 1).then(pl.lit(rec_response(1))).otherwise(pl.lit(rec_response(0)))
    return (
        prompts.with_columns(pl.col("set").replace_strict(PROMPT_SETS, default=None, return_dtype=pl.String)
                             .alias("set_split"))
        .join(sample_splits.select("sample_id", pl.col("split").alias("sample_split")), on="sample_id", how="left")
        .with_columns(
            pl.col("set_split").n_unique().over("sample_id").alias("splits_of_sample"),
            (pl.col("set_split") == pl.col("sample_split")).fill_null(False).alias("set_matches_sample_split"),
            pl.col("response").str.strip_chars().str.starts_with(answer).fill_null(False)
            .alias("response_answers_label"),
            *[pl.col(c).str.strip_chars().str.len_chars().alias(f"{c}_chars") for c in text_columns],
            *[pl.col(c).str.count_matches(MARKER, literal=True).alias(f"{c}_markers") for c in text_columns],
        )
        .to_pandas()
    )


def prompts_suite(text_columns: tuple[str, ...]) -> list:
    """For rec_prompts (text: prompt) and explain_prompts (prompt and prompt_plain, the ablation's prompt)."""
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in ("set", "sample_id", "label", "response", *text_columns)],
        *_not_null("set", "sample_id", "label", "response", *text_columns),
        gxe.ExpectColumnValuesToBeInSet(column="set", value_set=list(PROMPT_SETS)),
        # Training, model selection and evaluation each need their set.
        gxe.ExpectColumnDistinctValuesToContainSet(column="set", value_set=list(SPLITS)),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["set", "sample_id"]),
        # Train, valid and test are disjoint: a sample in two of them is trained on and then scored.
        gxe.ExpectColumnValuesToBeInSet(column="splits_of_sample", value_set=[1]),
        *_all_true("set_matches_sample_split", "response_answers_label"),
        *[gxe.ExpectColumnValuesToBeBetween(column=f"{c}_chars", min_value=1) for c in text_columns],
        *[gxe.ExpectColumnValuesToBeBetween(column=f"{c}_markers", min_value=1, max_value=1) for c in text_columns],
        gxe.ExpectColumnValueLengthsToBeBetween(column="response", min_value=1),
    ]


def item_attributes_suite(cfg: Config, item_ids: list[int]) -> list:
    """Attributes name known items, and enough items have one: an item without any can only get a vague
    explanation. Coverage = distinct attributed items / catalogue items (item ids are checked to be known)."""
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in ("item_id", "kind", "value", "label")],
        *_not_null("item_id", "kind", "value", "label"),
        # People (director, actor, writer) have no label of their own: a prompt shows the film they link to.
        gxe.ExpectColumnValueLengthsToBeBetween(column="value", min_value=1),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["item_id", "kind", "value"]),
        gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=item_ids),
        gxe.ExpectColumnUniqueValueCountToBeBetween(
            column="item_id", min_value=math.ceil(cfg.quality.min_attribute_coverage * len(item_ids)),
            description=f"at least {cfg.quality.min_attribute_coverage:.0%} of the {len(item_ids)} items have an "
                        "attribute (quality.min_attribute_coverage)"),
    ]


def cross_domain_frame(sets: pl.DataFrame, cfg: Config) -> pd.DataFrame:
    """Cross-domain rows with derived columns: history length, label vs rating, the split each set may draw from,
    and whether a target-domain item is ever seen in training (as a source_train target or in any history)."""
    source_train, source_valid, target_eval = CROSS_DOMAIN_SETS
    train = sets.filter(pl.col("set") == source_train)
    seen = pl.concat([train["item_id"], sets["history_item_ids"].explode().drop_nulls()]).unique().implode()
    allowed = (pl.when(pl.col("set") == source_train).then(pl.col("split") == "train")
               .when(pl.col("set") == source_valid).then(pl.col("split") == "valid")
               .otherwise(pl.col("split").is_in(list(cfg.cross_domain.eval_splits))))
    return (
        sets.with_columns(
            pl.col("history_item_ids").list.len().alias("history_len"),
            (pl.col("history_item_ids").list.len() == pl.col("history_ratings").list.len()).alias("history_aligned"),
            ((pl.col("rating") > cfg.samples.like_threshold).cast(pl.Int8) == pl.col("label"))
            .alias("label_matches_rating"),
            allowed.fill_null(False).alias("split_allowed_for_set"),
            ((pl.col("set") == target_eval) & pl.col("item_id").is_in(seen)).alias("target_item_in_training"),
        )
        .drop("history_item_ids", "history_ratings")
        .to_pandas()
    )


def cross_domain_suite(cfg: Config) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in ("set", "sample_id", "item_id", "label", "split")],
        *_not_null("set", "sample_id", "user_id", "item_id", "label", "split"),
        gxe.ExpectColumnValuesToBeInSet(column="set", value_set=list(CROSS_DOMAIN_SETS)),
        gxe.ExpectColumnDistinctValuesToContainSet(column="set", value_set=list(CROSS_DOMAIN_SETS)),
        # One row per sample: no sample is both trained on (source) and evaluated (target).
        gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeBetween(column="history_len", min_value=1, max_value=cfg.samples.history_len),
        *_all_true("history_aligned", "label_matches_rating", "split_allowed_for_set"),
        # Zero-shot: no target-domain item is a training target or history item.
        gxe.ExpectColumnValuesToBeInSet(column="target_item_in_training", value_set=[False]),
    ]


def item_features_frame(features: pl.DataFrame, modalities: tuple[str, ...]) -> pd.DataFrame:
    """One row per item with derived columns per modality: the vector's length, whether every value is finite,
    and whether has_<modality> agrees with the vector being there."""
    derived = []
    for m in modalities:
        if m not in features.columns:
            continue
        derived += [
            pl.col(m).list.len().alias(f"{m}_dim"),
            pl.col(m).list.eval(pl.element().is_finite()).list.all().fill_null(True).alias(f"{m}_finite"),
            (pl.col(m).is_not_null() == pl.col(f"has_{m}")).fill_null(False).alias(f"{m}_flag_agrees"),
        ]
    return features.with_columns(derived).select(
        "item_id", *[c for m in modalities if m in features.columns
                     for c in (f"has_{m}", f"{m}_dim", f"{m}_finite", f"{m}_flag_agrees")]).to_pandas()


def item_features_suite(item_ids: list[int], dims: dict[str, int], min_attribute_coverage: float) -> list:
    """Every catalogue item once; per modality one dimension, finite values, flags that agree; the text modality
    for every item, attributes for at least `min_attribute_coverage` of them, collaborative vectors (both CF
    settings) for some (items nobody liked in the training period have none: masked, not zero). `dims`: modality
    -> its dimension (the first present vector's), for the modalities that have any vector."""
    n = len(item_ids)
    checks = [
        gxe.ExpectTableRowCountToBeBetween(min_value=n, max_value=n),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=item_ids),
        gxe.ExpectColumnValuesToBeInSet(column="has_text", value_set=[True]),
        gxe.ExpectColumnSumToBeBetween(column="has_attributes", min_value=math.ceil(min_attribute_coverage * n),
                                       description=f"at least {min_attribute_coverage:.0%} of the items have an "
                                                   "attribute vector"),
        gxe.ExpectColumnSumToBeBetween(column="has_collaborative", min_value=1),
        gxe.ExpectColumnSumToBeBetween(column="has_collaborative_ranking", min_value=1),
    ]
    for m, dim in dims.items():
        checks += [
            gxe.ExpectColumnValuesToBeBetween(column=f"{m}_dim", min_value=dim, max_value=dim),  # nulls are skipped
            gxe.ExpectColumnValuesToBeInSet(column=f"{m}_finite", value_set=[True]),
            gxe.ExpectColumnValuesToBeInSet(column=f"{m}_flag_agrees", value_set=[True]),
        ]
    return checks


def knowledge_base_frame(tables: dict[str, pl.DataFrame], manifest: dict, catalogue: int,
                         training_ratings: int, training_cut: int) -> pd.DataFrame:
    """The knowledge base's item table (one row per group and catalogue item) with derived columns: items per
    group, whether the group type has a weight, and table-wide facts (the weights' sum, how many training users
    miss a group row, out-of-range correlations and era rates, and whether exactly the training period's ratings
    were counted, none later than its last target)."""
    groups, users = tables["groups"], tables["user_groups"]
    all_group = groups.filter(pl.col("group_type") == "all")
    counted = int(all_group["n"].sum()) if all_group.height else -1
    # a user with training ratings is in `all`'s users; each of their known groups must then have a row
    uncovered = (users.join(groups.select("group_type", "group_value"), on=["group_type", "group_value"], how="anti")
                 .join(tables["items"].select("group_type").unique(), on="group_type", how="semi"))
    trained_users = int(all_group["n_users"].sum()) if all_group.height else 0
    cross, era = tables["cross_domain"], tables["era"]
    return tables["items"].with_columns(
        items_in_group=pl.len().over("group_type", "group_value"),
        group_weighted=pl.col("group_type").is_in(list(manifest.get("weights", {}))),
        likes_within_n=(pl.col("likes") >= 0) & (pl.col("likes") <= pl.col("n")),
        weights_sum=pl.lit(float(sum(manifest.get("weights", {}).values()))),
        unknown_groups_of_users=pl.lit(uncovered.height if trained_users else 0),
        correlations_out_of_range=pl.lit(cross.filter(~pl.col("correlation").is_between(-1, 1)).height),
        era_rates_out_of_range=pl.lit(era.filter(~pl.col("p").is_between(0, 1)).height),
        training_period_only=pl.lit(counted == training_ratings == manifest.get("training_ratings")
                                    and manifest.get("last_rating_timestamp", training_cut + 1) <= training_cut),
    ).with_columns(items_in_group_expected=pl.lit(catalogue)).to_pandas()


def knowledge_base_suite(catalogue: int) -> list:
    """Probabilities in [0, 1] and defined for every group and catalogue item, weights that sum to 1 over the
    group types, correlations in [-1, 1], and nothing counted from after the training period."""
    return [
        *_not_null("p", "prior"),
        gxe.ExpectColumnValuesToBeBetween(column="p", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="prior", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="items_in_group", min_value=catalogue, max_value=catalogue,
                                          description="every group covers every catalogue item"),
        *_all_true("group_weighted", "likes_within_n", "training_period_only"),
        gxe.ExpectColumnValuesToBeBetween(column="weights_sum", min_value=0.999, max_value=1.001),
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0)
          for c in ("unknown_groups_of_users", "correlations_out_of_range", "era_rates_out_of_range")],
    ]
