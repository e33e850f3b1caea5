"""Temporal patterns of the training period: item like-rate trends and recency, and each group's era preferences.

Windows of `window_days` count back from the end of the training period (window 0 is the most recent). Per item:
its ratings and like rate overall and in window 0, the slope of its like rate per window towards the present
(least squares over the windows it was rated in, weighted by their ratings; 0 with fewer than two windows, and
`trend_windows` says how many there were), and the days since its last rating (null when never rated).
Per demographic group and release decade: the group's like rate of that decade's items, smoothed toward the
group's overall rate like the attribute rates of demographic.py.
"""

from __future__ import annotations

import polars as pl

DAY = 86_400


def item_trends(ratings: pl.DataFrame, item_ids: list[int], end_timestamp: int, window_days: int) -> pl.DataFrame:
    """One row per catalogue item: n, like_rate, n_recent, like_rate_recent, trend, trend_windows,
    days_since_last. `ratings`: item_id, label, timestamp (training period)."""
    windowed = ratings.with_columns(window=(end_timestamp - pl.col("timestamp")) // (window_days * DAY))
    per_window = (windowed.group_by("item_id", "window").agg(n=pl.len(), rate=pl.col("label").mean())
                  .with_columns(x=-pl.col("window").cast(pl.Float64)))  # later windows have larger x
    # weighted least squares slope of rate on x, weights n
    slope = (per_window.group_by("item_id").agg(
        trend_windows=pl.len(),
        xm=(pl.col("n") * pl.col("x")).sum() / pl.col("n").sum(),
        ym=(pl.col("n") * pl.col("rate")).sum() / pl.col("n").sum(),
        sxy=(pl.col("n") * pl.col("x") * pl.col("rate")).sum(),
        sxx=(pl.col("n") * pl.col("x") ** 2).sum(), sw=pl.col("n").sum())
        .with_columns(denominator=pl.col("sxx") - pl.col("sw") * pl.col("xm") ** 2)
        .select("item_id", "trend_windows", trend=pl.when((pl.col("trend_windows") >= 2) & (pl.col("denominator") > 0))
                .then((pl.col("sxy") - pl.col("sw") * pl.col("xm") * pl.col("ym")) / pl.col("denominator"))
                .otherwise(0.0)))
    overall = ratings.group_by("item_id").agg(n=pl.len(), like_rate=pl.col("label").mean(),
                                              last=pl.col("timestamp").max())
    recent = windowed.filter(pl.col("window") == 0).group_by("item_id").agg(
        n_recent=pl.len(), like_rate_recent=pl.col("label").mean())
    catalogue = pl.DataFrame({"item_id": item_ids}, schema={"item_id": pl.Int64})
    return (catalogue.join(overall, on="item_id", how="left").join(recent, on="item_id", how="left")
            .join(slope, on="item_id", how="left")
            .select("item_id", n=pl.col("n").fill_null(0), like_rate="like_rate",
                    n_recent=pl.col("n_recent").fill_null(0), like_rate_recent="like_rate_recent",
                    trend=pl.col("trend").fill_null(0.0), trend_windows=pl.col("trend_windows").fill_null(0),
                    days_since_last=(end_timestamp - pl.col("last")) / DAY)
            .sort("item_id"))


def era_preferences(ratings: pl.DataFrame, groups_of_users: pl.DataFrame, groups: pl.DataFrame,
                    items: pl.DataFrame, k: float) -> pl.DataFrame:
    """(group_type, group_value, decade, n, likes, p): a group's like rate of the items released in a decade.
    `groups`: the group table of demographic.estimate (its smoothed overall rate `p`); items without a year have
    no decade and are left out."""
    keys = ["group_type", "group_value"]
    decades = items.filter(pl.col("year").is_not_null()).select("item_id", decade=(pl.col("year") // 10) * 10)
    return (ratings.select("user_id", "item_id", "label").join(groups_of_users, on="user_id")
            .join(decades, on="item_id").group_by(*keys, "decade").agg(n=pl.len(), likes=pl.col("label").sum())
            .join(groups.select(*keys, p_group="p"), on=keys)
            .with_columns(p=(pl.col("likes") + k * pl.col("p_group")) / (pl.col("n") + k)).drop("p_group")
            .sort(*keys, "decade"))
