"""Cross-domain correlations: how a user's leaning in one domain goes with their leaning in another.

Domains are the items' genres on MovieLens and their categories on Amazon (the `genres` column of the items table).
A user's leaning in a domain is their like rate there minus their overall like rate; for each pair of domains the
correlation (Pearson) of the two leanings is taken over the users with at least `min_ratings` training-period
ratings in both. A positive value says that liking more than usual in one domain goes with the same in the other:
evidence for a user the target domain has not seen yet (zero-shot cross-domain transfer).
"""

from __future__ import annotations

import polars as pl


def item_domains(items: pl.DataFrame) -> pl.DataFrame:
    """(item_id, domain): one row per genre/category of each item; items without any have no row."""
    return (items.select("item_id", domain=pl.col("genres")).explode("domain")
            .filter(pl.col("domain").is_not_null() & (pl.col("domain") != "")).unique().sort("item_id", "domain"))


def domain_correlations(ratings: pl.DataFrame, domains: pl.DataFrame, min_ratings: int) -> pl.DataFrame:
    """(domain_a, domain_b, n_users, correlation) for each pair a < b with at least 3 qualifying users and leanings
    that vary (otherwise a correlation is undefined and the pair is left out)."""
    overall = ratings.group_by("user_id").agg(user_rate=pl.col("label").mean())
    per_domain = (ratings.join(domains, on="item_id").group_by("user_id", "domain")
                  .agg(n=pl.len(), rate=pl.col("label").mean())
                  .filter(pl.col("n") >= min_ratings)
                  .join(overall, on="user_id")
                  .select("user_id", "domain", leaning=pl.col("rate") - pl.col("user_rate")))
    pairs = (per_domain.join(per_domain, on="user_id", suffix="_b")
             .filter(pl.col("domain") < pl.col("domain_b"))
             .group_by(domain_a="domain", domain_b="domain_b")
             .agg(n_users=pl.len(), correlation=pl.corr("leaning", "leaning_b")))
    return (pairs.filter((pl.col("n_users") >= 3) & pl.col("correlation").is_finite())
            .sort("domain_a", "domain_b"))
