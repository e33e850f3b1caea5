"""Recommendations and explanations for people, from the champion (attributed) adapter the pipeline trained.

`explain(user, item)`: the user's latest `history_len` ratings form the history (as in training), the model's
P(Yes) decides the answer, and the explanation is generated after that answer, so the two always agree. Each
attribute the explanation cites is checked: true of the item and present in the user's history, or not.

`recommend(user, k)`: two stages, as LLM rankers are used in practice: the `candidates` most popular items the
user has not rated are retrieved, the LLM scores them all with one shared prompt prefix (KV cache), and the
top k get an explanation. Scoring every unrated item (about 1,600 on ML-100K) would take minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.attribution.builder import ContextBuilder
from explainrec_core.attribution.explanations import SampleContext, parse_citations
from explainrec_core.attribution.prompting import build_prompt, prompt_parts
from explainrec_core.config import Config
from explainrec_core.errors import DataError, ExplainRecError
from explainrec_core.evaluation.generation import generate
from explainrec_core.evaluation.prefix_scoring import score_shared_prefix
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models import adapters


class NoModelError(ExplainRecError):
    """There is no trained champion adapter yet."""


@dataclass
class Explanation:
    user_id: int
    item_id: int
    title: str
    p_yes: float
    answer: str
    explanation: str
    citations: list[tuple[str, str, bool]] = field(default_factory=list)  # (kind, label, faithful)

    def to_dict(self) -> dict:
        return {**self.__dict__, "citations": [list(c) for c in self.citations]}


class Recommender:
    def __init__(self, cfg: Config, root: Path | str = "."):
        self.cfg, self.root = cfg, Path(root)
        adapter = self.root / paths.EXPLAIN_ADAPTER
        if not (adapter / adapters.WEIGHTS).is_file():
            raise NoModelError(f"no champion adapter at {adapter} yet: train it with `explainrec run explain_adapter` "
                               "(after the steps before it) or `make demo`")
        tables = {name: paths.resolve(paths.processed(name), cfg, self.root)
                  for name in ("interactions", "items", "item_attributes")}
        for path in tables.values():
            if not path.is_file():
                raise NoModelError(f"{path} is missing: run the pipeline (`make demo`) before asking for "
                                   "recommendations")
        self.interactions = pl.read_parquet(tables["interactions"])
        self.items = pl.read_parquet(tables["items"])
        self.interactions_file = str(tables["interactions"])
        self.builder = ContextBuilder(self.items, pl.read_parquet(tables["item_attributes"]),
                                      cfg.samples.like_threshold, cfg.attribution.prior_strength)
        from explainrec_core.steps.llm_steps import load_base  # torch and the model only when needed

        info, base, self.tokenizer = load_base(self.root)
        self.answer_ids = info["answer_token_ids"]
        self.model = adapters.load_adapter(base, adapter)

    def _rated(self, user: int) -> pl.DataFrame:
        rated = self.interactions.filter(pl.col("user_id") == user).sort("timestamp", "item_id")
        if rated.is_empty():
            raise DataError(self.interactions_file, "unknown user", column="user_id", values=[user])
        return rated

    def context(self, user: int, item: int) -> SampleContext:
        if item not in self.builder.titles:
            raise DataError(str(paths.resolve(paths.processed("items"), self.cfg, self.root)), "unknown item",
                            column="item_id", values=[item])
        # The latest ratings, as training samples use the ratings before their target; the item itself is left out
        # so an already-rated item is explained from the rest of the history.
        rated = self._rated(user).filter(pl.col("item_id") != item).tail(self.cfg.samples.history_len)
        return self.builder.build(rated["item_id"].to_list(), rated["rating"].to_list(), item)

    def _explained(self, user: int, contexts: list[SampleContext], p_yes: list[float]) -> list[Explanation]:
        a = self.cfg.attribution
        prompts = [build_prompt(c, True, a.reasons_per_item) for c in contexts]
        answers = ["Yes" if p >= 0.5 else "No" for p in p_yes]
        # Generating after the answer the score gives keeps answer, P(Yes) and explanation consistent.
        rest = generate(self.model, self.tokenizer, [p + ans for p, ans in zip(prompts, answers, strict=True)],
                        a.max_new_tokens, self.cfg.evaluation.batch_size)
        out = []
        for ctx, p, ans, text in zip(contexts, p_yes, answers, rest, strict=True):
            explanation = (ans + text).strip()
            citations = [(c.kind, c.label, ctx.is_faithful(c))
                         for c in parse_citations(explanation, self.builder.vocabulary)]
            out.append(Explanation(user, ctx.target, ctx.target_title, float(p), ans, explanation, citations))
        return out

    def explain(self, user: int, item: int) -> Explanation:
        ctx = self.context(user, item)
        prompt = build_prompt(ctx, True, self.cfg.attribution.reasons_per_item)
        p_yes = float(score_yes(self.model, self.tokenizer, [prompt], self.answer_ids)[0])
        return self._explained(user, [ctx], [p_yes])[0]

    def recommend(self, user: int, k: int = 10, candidates: int = 100) -> list[Explanation]:
        if k < 1 or candidates < k:
            raise ValueError(f"need 1 <= k ({k}) <= candidates ({candidates})")
        rated = self._rated(user)
        popular = (self.interactions.group_by("item_id").len().sort("len", "item_id", descending=[True, False])
                   .filter(~pl.col("item_id").is_in(rated["item_id"].implode())).head(candidates))
        recent = rated.tail(self.cfg.samples.history_len)
        contexts = [self.builder.build(recent["item_id"].to_list(), recent["rating"].to_list(), item)
                    for item in popular["item_id"]]
        a = self.cfg.attribution
        prefix = prompt_parts(contexts[0], True, a.reasons_per_item)[0]
        scores = score_shared_prefix(self.model, self.tokenizer, prefix,
                                     [prompt_parts(c, True, a.reasons_per_item)[1] for c in contexts],
                                     self.answer_ids, batch_size=self.cfg.evaluation.batch_size * 4)
        top = sorted(range(len(contexts)), key=lambda i: (-scores[i], contexts[i].target))[:k]
        return self._explained(user, [contexts[i] for i in top], [float(scores[i]) for i in top])

    def profile(self, user: int, n: int = 3) -> dict[str, list[tuple[str, float]]]:
        """The user's strongest reasons over their latest history: attributes they like and dislike."""
        rated = self._rated(user).tail(self.cfg.samples.history_len)
        ctx = self.builder.build(rated["item_id"].to_list(), rated["rating"].to_list(), int(rated["item_id"][-1]))
        labelled = [(p.label, p.log_odds) for p in ctx.prefs.values() if p.label]
        return {"likes": sorted((x for x in labelled if x[1] > 0), key=lambda x: -x[1])[:n],
                "dislikes": sorted((x for x in labelled if x[1] < 0), key=lambda x: x[1])[:n]}
