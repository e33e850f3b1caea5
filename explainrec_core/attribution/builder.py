"""Build `SampleContext`s from the pipeline's tables: titles, attributes and catalogue priors, looked up once."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from explainrec_core.attribution.explanations import SampleContext, vocabulary
from explainrec_core.attribution.preferences import attribute_priors
from explainrec_core.prompts import quote_item


class ContextBuilder:
    def __init__(self, items: pl.DataFrame, attributes: pl.DataFrame, like_threshold: float, prior_strength: float):
        self.titles = {r["item_id"]: quote_item(r["title"] or f"item {r['item_id']}", r["year"])
                       for r in items.select("item_id", "title", "year").iter_rows(named=True)}
        self.attrs_of: dict[int, list[tuple[str, str, str]]] = {}
        for item, kind, value, label in attributes.select("item_id", "kind", "value", "label").iter_rows():
            self.attrs_of.setdefault(item, []).append((kind, value, label))
        self.priors = attribute_priors(attributes, items.height)
        self.like_threshold = like_threshold
        self.strength = prior_strength
        self.vocabulary = vocabulary(self.attrs_of)

    def build(self, history_ids: Sequence[int], history_ratings: Sequence[float], target: int) -> SampleContext:
        history = [(int(i), self.titles[int(i)], float(r) > self.like_threshold)
                   for i, r in zip(history_ids, history_ratings, strict=True)]
        return self.from_history(history, target)

    def from_history(self, history: list[tuple[int, str, bool]], target: int) -> SampleContext:
        return SampleContext.build(history, target, self.titles[target], self.attrs_of, self.priors, self.strength)

    def rebuild(self, ctx: SampleContext):
        """A function giving `ctx` with a shorter history (for `prompting.fit_prompt`)."""
        return lambda history: self.from_history(history, ctx.target)
