"""Personal, data-driven reasons: which attributes a user's liked items have more often than their disliked ones.

For a user's rated items (a sample's history window, or everything they rated in the training period) and an
attribute `a`, with n_L(a) of the N_L liked items and n_D(a) of the N_D disliked items having it:

    log_odds(a) = logit((n_L(a) + k * p(a)) / (N_L + k)) - logit((n_D(a) + k * p(a)) / (N_D + k))

where p(a) is the share of catalogue items with `a` (the prior) and k = `prior_strength` pseudo-ratings.
The prior pulls rare evidence toward zero: one liked Film-Noir among ten ratings is weak evidence; the score
is 0 when liked and disliked items have the attribute equally often, positive when liked ones have it more.
(Smoothed log-odds with an informative prior, as in Monroe et al. 2008, "Fightin' Words", without the
z-scaling: we rank attributes within one user, where the variance term changes little.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from explainrec_core.attribution.attributes import PERSON_KINDS

_EPS = 1e-6


def attribute_priors(attributes: pl.DataFrame, n_items: int) -> dict[str, float]:
    """value -> share of catalogue items that have it."""
    counts = attributes.group_by("value").agg(pl.col("item_id").n_unique().alias("n"))
    return {v: n / n_items for v, n in counts.iter_rows()}


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def log_odds(n_liked: int, n_disliked: int, total_liked: int, total_disliked: int, prior: float,
             strength: float) -> float:
    liked = (n_liked + strength * prior) / (total_liked + strength)
    disliked = (n_disliked + strength * prior) / (total_disliked + strength)
    return _logit(liked) - _logit(disliked)


@dataclass(frozen=True)
class Preference:
    kind: str
    value: str
    label: str
    n_liked: int
    n_disliked: int
    log_odds: float


def preferences(history: Sequence[tuple[int, bool]], attrs_of: dict[int, list[tuple[str, str, str]]],
                priors: dict[str, float], strength: float) -> dict[str, Preference]:
    """value -> Preference for every attribute of the history items.

    `history` is (item_id, liked) pairs; `attrs_of[item]` lists the item's (kind, value, label).
    """
    total_liked = sum(1 for _, liked in history if liked)
    total_disliked = len(history) - total_liked
    counts: dict[str, list] = {}
    for item, liked in history:
        for kind, value, label in attrs_of.get(item, ()):
            entry = counts.setdefault(value, [kind, label, 0, 0])
            entry[2 if liked else 3] += 1
    return {value: Preference(kind, value, label, n_l, n_d,
                              log_odds(n_l, n_d, total_liked, total_disliked, priors.get(value, 0.0), strength))
            for value, (kind, label, n_l, n_d) in counts.items()}


def user_preference_table(interactions: pl.DataFrame, attributes: pl.DataFrame, like_threshold: float,
                          strength: float, n_items: int) -> pl.DataFrame:
    """One row per (user, attribute) over the given interactions, vectorised: the `preference_attributions` asset.

    Person attributes (Freebase ids) are kept: they are what links a user's films to each other.
    """
    priors = attributes.group_by("value").agg((pl.col("item_id").n_unique() / n_items).alias("prior"))
    rated = interactions.select("user_id", "item_id", (pl.col("rating") > like_threshold).alias("liked"))
    totals = rated.group_by("user_id").agg(pl.col("liked").sum().alias("total_liked"),
                                           (~pl.col("liked")).sum().alias("total_disliked"))
    k = strength

    def logit(expr: pl.Expr) -> pl.Expr:
        p = expr.clip(_EPS, 1 - _EPS)
        return (p / (1 - p)).log()

    return (
        rated.join(attributes, on="item_id")
        .group_by("user_id", "kind", "value", "label")
        .agg(pl.col("liked").sum().cast(pl.Int64).alias("n_liked"),
             (~pl.col("liked")).sum().cast(pl.Int64).alias("n_disliked"))
        .join(totals, on="user_id").join(priors, on="value")
        .with_columns(
            (logit((pl.col("n_liked") + k * pl.col("prior")) / (pl.col("total_liked") + k))
             - logit((pl.col("n_disliked") + k * pl.col("prior")) / (pl.col("total_disliked") + k)))
            .alias("log_odds"))
        .select("user_id", "kind", "value", "label", "n_liked", "n_disliked", "log_odds")
        .sort("user_id", "log_odds", "value", descending=[False, True, False])
    )


def item_reasons(item: int, liked: bool, prefs: dict[str, Preference],
                 attrs_of: dict[int, list[tuple[str, str, str]]], n: int) -> list[str]:
    """Labels of the item's attributes that best explain its rating for this user (liked: most positive
    log-odds; disliked: most negative), skipping persons (shown only through other films) and neutral ones."""
    sign = 1.0 if liked else -1.0
    scored = [(sign * prefs[value].log_odds, label) for kind, value, label in attrs_of.get(item, ())
              if kind not in PERSON_KINDS and value in prefs and sign * prefs[value].log_odds > 0]
    return [label for _, label in sorted(scored, key=lambda x: (-x[0], x[1]))[:n]]
