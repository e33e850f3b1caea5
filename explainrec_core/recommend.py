"""Recommendations and explanations for people, from the champion the pipeline trained: the attributed model with
item tokens (explain_item_token_adapter: the attributed LoRA + its fusion, verified against item_features on load).

`explain(user, item)`: the history is the user's latest `history_len` ratings strictly before the target's time:
if the user rated the item, before that rating's timestamp (ratings in the same second are left out too, as the
order within a second is unknown; the queried rating itself never shows), otherwise before now, i.e. all of
them. The model's P(Yes) decides the answer and the explanation is generated after that answer, stopped at the
end of its first sentence. Each attribute the explanation cites is checked: is it true of the item, and does the
shown history lean the answer's way on it? The user's leanings shown next to it are their training-period
preferences (the `preference_attributions` asset), not something recomputed from the ratings on screen.

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
from explainrec_core.attribution.explanations import SampleContext, explanation_stance, parse_citations
from explainrec_core.attribution.response_text import clean_response
from explainrec_core.baselines.base import at_or_before
from explainrec_core.config import Config
from explainrec_core.errors import DataError, ExplainRecError
from explainrec_core.evaluation.generation import explain_after_answer
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.features.item_prompts import slotted_explain_parts, slotted_explain_prompt
from explainrec_core.features.item_token_model import score_slotted_candidates, scoring_embedder
from explainrec_core.knowledge import demographic, store
from explainrec_core.models import adapters

TABLES = ("interactions", "items", "users", "item_attributes", "preference_attributions")


class NoModelError(ExplainRecError):
    """There is no trained champion adapter yet."""


@dataclass(frozen=True)
class CitedAttribute:
    kind: str
    label: str
    true_of_item: bool
    history_supports_answer: bool  # the shown history leans the answer's way on it


@dataclass
class Explanation:
    user_id: int
    item_id: int
    title: str
    p_yes: float
    answer: str
    explanation: str  # "Yes. <one sentence>", template markers stripped
    stance: int = 0  # +1 argues for liking, -1 against, 0 neither (explanations.explanation_stance)
    citations: list[CitedAttribute] = field(default_factory=list)
    history_item_ids: list[int] = field(default_factory=list)  # what the prompt showed, oldest first

    def to_dict(self) -> dict:
        return {**self.__dict__, "citations": [c.__dict__ for c in self.citations]}


def history_before(rated: pl.DataFrame, item: int, history_len: int) -> pl.DataFrame:
    """The latest `history_len` of a user's ratings (sorted by time) strictly before the target's time: the
    time they rated `item` (the earliest such rating), or after all of them when they have not rated it."""
    own = rated.filter(pl.col("item_id") == item)
    if not own.is_empty():
        rated = rated.filter(pl.col("timestamp") < own["timestamp"].min())
    return rated.tail(history_len)


def leanings(table: pl.DataFrame, user: int, n: int) -> dict[str, list[tuple[str, float]]]:
    """A user's strongest training-period reasons (`preference_attributions` rows): the n attributes with the
    highest and the n with the lowest log-odds. People have no printable label and are left out."""
    rows = table.filter((pl.col("user_id") == user) & (pl.col("label") != "")).select("label", "log_odds")
    likes = rows.filter(pl.col("log_odds") > 0).sort("log_odds", "label", descending=[True, False]).head(n)
    dislikes = rows.filter(pl.col("log_odds") < 0).sort("log_odds", "label").head(n)
    return {"likes": [(lab, float(lo)) for lab, lo in likes.iter_rows()],
            "dislikes": [(lab, float(lo)) for lab, lo in dislikes.iter_rows()]}


class ServingData:
    """The pipeline's tables a person's question is answered from; no model."""

    def __init__(self, cfg: Config, root: Path | str = "."):
        self.cfg, self.root = cfg, Path(root)
        files = {name: paths.resolve(paths.processed(name), cfg, self.root) for name in TABLES}
        for path in files.values():
            if not path.is_file():
                raise NoModelError(f"{path} is missing: run the pipeline (`make demo`) before asking for "
                                   "recommendations")
        self.files = {name: str(path) for name, path in files.items()}
        self.interactions = pl.read_parquet(files["interactions"])
        self.items = pl.read_parquet(files["items"])
        self.preferences = pl.read_parquet(files["preference_attributions"])
        self.users = pl.read_parquet(files["users"])
        self._kb: store.KnowledgeBase | None = None
        self.builder = ContextBuilder(self.items, pl.read_parquet(files["item_attributes"]),
                                      cfg.samples.like_threshold, cfg.attribution.prior_strength)

    def rated(self, user: int) -> pl.DataFrame:
        """The user's ratings in time order; none for a user the users table knows who has not rated yet (a new
        user: the knowledge base speaks for them); an error for an id in neither table."""
        rated = self.interactions.filter(pl.col("user_id") == user).sort("timestamp", "item_id")
        if rated.is_empty() and not (self.users["user_id"] == user).any():
            raise DataError(self.files["interactions"], "unknown user (not in the users table either)",
                            column="user_id", values=[user])
        return rated

    def knowledge(self, user: int, item: int) -> dict | None:
        """What the preference knowledge base says about (user, item), eq. 5: P(like) for people like this user,
        each group's rate and weight, and how many training-period ratings the user has; None before the
        `preference_knowledge_base` step has run."""
        folder = paths.resolve(paths.KNOWLEDGE_BASE, self.cfg, self.root)
        if self._kb is None:
            if not folder.is_dir():
                return None
            self._kb = store.load(folder)
        kb = self._kb
        # the user's groups from the users table as it is now (a user added since the KB was built has them too)
        mine = demographic.user_groups(self.users.filter(pl.col("user_id") == user), self.cfg.knowledge.age_bands)
        rows = pl.DataFrame({"user_id": [user], "item_id": [item]})
        scored = demographic.score(rows, mine, kb.tables["items"], kb.manifest["weights"],
                                   kb.manifest["global_rate"]).row(0, named=True)
        weights = kb.manifest["weights"]
        groups = (mine
                  .join(kb.tables["items"].filter(pl.col("item_id") == item), on=["group_type", "group_value"])
                  .sort("group_type"))
        cut = kb.manifest["trained_until"]
        rated = self.interactions.filter(pl.col("user_id") == user)
        in_period = rated.filter(at_or_before(cut["timestamp"], cut["user_id"], cut["item_id"]))
        return {"p_like": float(scored["p"]), "evidence": scored["evidence"],
                "groups": [{"group": f"{r['group_type']}={r['group_value']}", "p": float(r["p"]),
                            "ratings_of_item": int(r["n"]), "weight": float(weights[r["group_type"]])}
                           for r in groups.iter_rows(named=True)],
                "training_period_ratings": in_period.height}

    def context(self, user: int, item: int) -> SampleContext:
        if item not in self.builder.titles:
            raise DataError(self.files["items"], "unknown item", column="item_id", values=[item])
        shown = history_before(self.rated(user), item, self.cfg.samples.history_len)
        return self.builder.build(shown["item_id"].to_list(), shown["rating"].to_list(), item)

    def profile(self, user: int, n: int = 3) -> dict[str, list[tuple[str, float]]]:
        self.rated(user)  # unknown users fail here, with the interactions file named
        return leanings(self.preferences, user, n)


class Recommender:
    def __init__(self, cfg: Config, root: Path | str = "."):
        self.cfg, self.root = cfg, Path(root)
        adapter = self.root / paths.CHAMPION_ADAPTER
        if not (adapter / adapters.WEIGHTS).is_file():
            raise NoModelError(f"no champion adapter at {adapter} yet: train it with `explainrec run "
                               f"{paths.CHAMPION}` (after the steps before it) or `make demo`")
        self.data = ServingData(cfg, self.root)
        # torch and the model only when needed
        from explainrec_core.steps.item_token_steps import load_item_token_model

        info, self.model, self.tokenizer, self.slot_id = load_item_token_model(cfg, self.root, paths.CHAMPION_ADAPTER)
        self.answer_ids = info["answer_token_ids"]

    def _prompts(self, contexts: list[SampleContext]):
        a, user_token = self.cfg.attribution, self.cfg.multimodal.user_token
        built = [slotted_explain_prompt(c, a.reasons_per_item, user_token) for c in contexts]
        return [p for p, _ in built], [r for _, r in built]

    def _explained(self, user: int, contexts: list[SampleContext], p_yes: list[float]) -> list[Explanation]:
        a, vocab = self.cfg.attribution, self.data.builder.vocabulary
        prompts, requests = self._prompts(contexts)
        # Generating after the answer the score gives keeps answer, P(Yes) and explanation consistent.
        explained = explain_after_answer(self.model.llm, self.tokenizer, prompts, p_yes, a.max_new_tokens,
                                         self.cfg.evaluation.batch_size, embed=scoring_embedder(self.model, requests))
        out = []
        for ctx, p, (ans, text) in zip(contexts, p_yes, explained, strict=True):
            explanation = clean_response(text, answer=ans)
            citations = [CitedAttribute(c.kind, c.label, ctx.is_true(c), ctx.supports(c, ans))
                         for c in parse_citations(explanation, vocab)]
            out.append(Explanation(user, ctx.target, ctx.target_title, float(p), ans, explanation,
                                   explanation_stance(explanation, ctx, vocab), citations,
                                   [item for item, _, _ in ctx.history]))
        return out

    def explain(self, user: int, item: int) -> Explanation:
        ctx = self.data.context(user, item)
        prompts, requests = self._prompts([ctx])
        p_yes = float(score_yes(self.model.llm, self.tokenizer, prompts, self.answer_ids,
                                embed=scoring_embedder(self.model, requests), slot_id=self.slot_id)[0])
        return self._explained(user, [ctx], [p_yes])[0]

    def recommend(self, user: int, k: int = 10, candidates: int = 100) -> list[Explanation]:
        if k < 1 or candidates < k:
            raise ValueError(f"need 1 <= k ({k}) <= candidates ({candidates})")
        rated = self.data.rated(user)
        popular = (self.data.interactions.group_by("item_id").len().sort("len", "item_id", descending=[True, False])
                   .filter(~pl.col("item_id").is_in(rated["item_id"].implode())).head(candidates))
        # Unrated candidates: their target time is now, so the history is the latest ratings (history_before).
        contexts = [self.data.context(user, item) for item in popular["item_id"]]
        parts = [slotted_explain_parts(c, self.cfg.attribution.reasons_per_item, self.cfg.multimodal.user_token)
                 for c in contexts]
        scores = score_slotted_candidates(self.model, self.tokenizer, parts[0][0], [suffix for _, suffix in parts],
                                          self.answer_ids, self.cfg.evaluation.batch_size * 4)
        top = sorted(range(len(contexts)), key=lambda i: (-scores[i], contexts[i].target))[:k]
        return self._explained(user, [contexts[i] for i in top], [float(scores[i]) for i in top])

    def profile(self, user: int, n: int = 3) -> dict[str, list[tuple[str, float]]]:
        """The user's training-period leanings (`preference_attributions`)."""
        return self.data.profile(user, n)

    def knowledge(self, user: int, item: int) -> dict | None:
        """The knowledge base's evidence for (user, item) (ServingData.knowledge)."""
        return self.data.knowledge(user, item)
