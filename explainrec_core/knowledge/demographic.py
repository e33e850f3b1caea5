"""Demographic preferences (paper eq. 5): P(i | u) = sum_g w_g p_g(i) over the groups g that user u belongs to.

Groups are the values of the demographic columns the users table has (ML-100K: age band, gender, occupation) and
`all`, every user. A group's like rate of an item is smoothed twice, so a small group or an item it never rated
still gets a defined estimate:

    p_g        = (likes_g + k p) / (n_g + k)                   the group's overall like rate, toward the global p
    p_g(a)     = (likes_g(a) + k p_g) / (n_g(a) + k)           per attribute (genre), toward p_g
    q_g(i)     = mean of p_g(a) over the item's attributes     (p_g for an item without any)
    p_g(i)     = (likes_g(i) + m q_g(i)) / (n_g(i) + m)        per item, toward q_g(i)

with k = `knowledge.attribute_smoothing` and m chosen on validation from `knowledge.item_smoothing`. The weights
w (one per group type, softmax-normalised over the types a user has a known value for, so `all` alone is left for a
user without demographics) are learned by maximum likelihood on the training-period ratings, each rating scored
with its own count removed from its groups' item counts (leave-one-out: otherwise the weights would reward the
groups that memorise their own ratings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

ALL = "all"
GROUP_COLUMNS = ("age", "gender", "occupation")
"""Demographic columns read when the users table has them (age is banded; the others are used as they are)."""


def age_label(age: int, bands: tuple[int, ...]) -> str:
    """The band of an age: bands (18, 25, 35) give "<18", "18-24", "25-34", "35+"."""
    i = int(np.searchsorted(np.array(bands), age, side="right"))
    if i == 0:
        return f"<{bands[0]}"
    return f"{bands[i - 1]}+" if i == len(bands) else f"{bands[i - 1]}-{bands[i] - 1}"


def user_groups(users: pl.DataFrame, age_bands: tuple[int, ...]) -> pl.DataFrame:
    """(user_id, group_type, group_value): every user in `all`, plus one row per known demographic value. A null,
    empty or negative value is unknown: that type is left out for the user (never a group of its own)."""
    frames = [users.select("user_id", group_type=pl.lit(ALL), group_value=pl.lit(ALL))]
    if "age" in users.columns:
        known = users.filter(pl.col("age").is_not_null() & (pl.col("age") >= 0))
        frames.append(known.select("user_id", group_type=pl.lit("age"), group_value=pl.col("age").map_elements(
            lambda a: age_label(int(a), age_bands), return_dtype=pl.String)))
    for column in GROUP_COLUMNS[1:]:
        if column in users.columns:
            value = pl.col(column).cast(pl.String).str.strip_chars().str.to_lowercase()
            frames.append(users.select("user_id", group_type=pl.lit(column), group_value=value)
                          .filter(pl.col("group_value").is_not_null() & (pl.col("group_value") != "")))
    return pl.concat(frames).unique().sort("user_id", "group_type")


@dataclass(frozen=True)
class GroupTables:
    """The estimates of one training period; `items` is dense: every (group, catalogue item) pair."""

    global_rate: float
    groups: pl.DataFrame  # group_type, group_value, n_users, n, likes, p
    attributes: pl.DataFrame  # group_type, group_value, attribute, n, likes, p
    items: pl.DataFrame  # group_type, group_value, item_id, n, likes, prior (q_g(i))

    def item_rates(self, m: float) -> pl.DataFrame:
        """`items` with p = p_g(i) at item smoothing m."""
        return self.items.with_columns(p=(pl.col("likes") + m * pl.col("prior")) / (pl.col("n") + m))


def estimate(ratings: pl.DataFrame, groups_of_users: pl.DataFrame, item_attributes: pl.DataFrame,
             item_ids: list[int], k: float) -> GroupTables:
    """Counts and smoothed rates from `ratings` (user_id, item_id, label) of the training period.
    `item_attributes`: (item_id, attribute), one row per attribute an item has; `item_ids`: the catalogue."""
    if ratings.is_empty():
        raise ValueError("no training-period ratings: the knowledge base has nothing to estimate from")
    p = float(ratings["label"].mean())
    rated = ratings.select("user_id", "item_id", "label").join(groups_of_users, on="user_id")
    keys = ["group_type", "group_value"]
    groups = (rated.group_by(keys).agg(n_users=pl.col("user_id").n_unique(), n=pl.len(), likes=pl.col("label").sum())
              .with_columns(p=(pl.col("likes") + k * p) / (pl.col("n") + k)).sort(keys))
    attributes = (rated.join(item_attributes, on="item_id").group_by(*keys, "attribute")
                  .agg(n=pl.len(), likes=pl.col("label").sum())
                  .join(groups.select(*keys, p_group="p"), on=keys)
                  .with_columns(p=(pl.col("likes") + k * pl.col("p_group")) / (pl.col("n") + k))
                  .drop("p_group").sort(*keys, "attribute"))
    catalogue = pl.DataFrame({"item_id": item_ids}, schema={"item_id": pl.Int64})
    # q_g(i): the mean over the item's attributes of p_g(a); an attribute the group never rated counts as p_g
    priors = (groups.select(*keys, p_group="p").join(item_attributes, how="cross")
              .join(attributes.select(*keys, "attribute", p_attr="p"), on=[*keys, "attribute"], how="left")
              .group_by(*keys, "item_id").agg(prior=pl.col("p_attr").fill_null(pl.col("p_group")).mean()))
    counts = rated.group_by(*keys, "item_id").agg(n=pl.len(), likes=pl.col("label").sum())
    items = (groups.select(*keys, p_group="p").join(catalogue, how="cross")
             .join(priors, on=[*keys, "item_id"], how="left").join(counts, on=[*keys, "item_id"], how="left")
             .select(*keys, "item_id", n=pl.col("n").fill_null(0), likes=pl.col("likes").fill_null(0),
                     prior=pl.col("prior").fill_null(pl.col("p_group")))
             .sort(*keys, "item_id"))
    return GroupTables(p, groups, attributes, items)


def _evidence(rows: pl.DataFrame, groups_of_users: pl.DataFrame, rates: pl.DataFrame) -> pl.DataFrame:
    """(row, group_type, p) for each row of (user_id, item_id) and each group type whose value the KB knows."""
    indexed = rows.select("user_id", "item_id").with_row_index("row")
    # everyone is in `all`, also a user the users table did not have when the groups were listed
    unlisted = indexed.select("user_id").unique().join(groups_of_users, on="user_id", how="anti").select(
        "user_id", group_type=pl.lit(ALL), group_value=pl.lit(ALL))
    groups_of_users = pl.concat([groups_of_users, unlisted.cast(groups_of_users.schema)])
    return (indexed.join(groups_of_users, on="user_id")
            .join(rates.select("group_type", "group_value", "item_id", "p", "n", "likes"),
                  on=["group_type", "group_value", "item_id"]))


def score(rows: pl.DataFrame, groups_of_users: pl.DataFrame, rates: pl.DataFrame, weights: dict[str, float],
          global_rate: float) -> pl.DataFrame:
    """P(i | u) for each row (user_id, item_id), with `evidence`: the group types used (`all` alone for a user
    without known demographics or missing from `groups_of_users`; a value the training period never saw is left
    out) or `global rate` for an item outside the catalogue. Always finite."""
    w = pl.DataFrame({"group_type": list(weights), "w": list(weights.values())})
    found = _evidence(rows, groups_of_users, rates).join(w, on="group_type")
    mixed = found.group_by("row").agg(p=(pl.col("w") * pl.col("p")).sum() / pl.col("w").sum(),
                                      evidence=pl.col("group_type").sort().str.join(","))
    out = rows.with_row_index("row").join(mixed, on="row", how="left").sort("row")
    return out.select(pl.exclude("row")).with_columns(p=pl.col("p").fill_null(global_rate),
                                                      evidence=pl.col("evidence").fill_null("global rate"))


def fit_weights(ratings: pl.DataFrame, groups_of_users: pl.DataFrame, tables: GroupTables, m: float,
                steps: int = 50) -> dict[str, float]:
    """Group-type weights by maximum likelihood on the training `ratings` (user_id, item_id, label), each scored
    leave-one-out (see the module docstring). Softmax weights over every group type (they sum to 1; a user's are
    renormalised over the types they have)."""
    types = tables.groups["group_type"].unique().sort().to_list()
    found = (ratings.select("user_id", "item_id", "label").with_row_index("row")
             .join(groups_of_users, on="user_id")
             .join(tables.items, on=["group_type", "group_value", "item_id"])
             # the rating is in its own groups' counts (n >= 1): take it out
             .with_columns(p=(pl.col("likes") - pl.col("label") + m * pl.col("prior")) / (pl.col("n") - 1 + m),
                           t=pl.col("group_type").replace_strict({t: i for i, t in enumerate(types)},
                                                                 return_dtype=pl.Int64)))
    rows, cols = (torch.from_numpy(found[c].to_numpy().astype(np.int64)) for c in ("row", "t"))
    rates = torch.zeros(ratings.height, len(types), dtype=torch.float64)
    mask = torch.zeros_like(rates)
    rates[rows, cols] = torch.from_numpy(found["p"].to_numpy().copy())  # polars' arrays are read-only
    mask[rows, cols] = 1.0
    y = torch.from_numpy(ratings["label"].cast(pl.Float64).to_numpy().copy())
    theta = torch.zeros(len(types), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([theta], max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        w = torch.exp(theta - theta.max()) * mask
        p = ((w * rates).sum(1) / w.sum(1)).clamp(1e-6, 1 - 1e-6)
        value = torch.nn.functional.binary_cross_entropy(p, y)
        value.backward()
        return value

    optimiser.step(loss)
    weights = torch.softmax(theta.detach(), 0).tolist()
    return dict(zip(types, weights, strict=True))
