"""`explainrec explain` / `recommend` on real ML-100K tables: what the model is shown and what the person is shown."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from explainrec_core import paths
from explainrec_core.attribution.prompting import build_prompt
from explainrec_core.config import load_config
from explainrec_core.pipeline import run_step
from explainrec_core.recommend import CitedAttribute, Explanation, ServingData, history_before


@pytest.fixture(scope="module")
def serving(tmp_path_factory, processed_ml100k):
    import shutil

    root = tmp_path_factory.mktemp("serving")
    shutil.copytree(processed_ml100k, root, dirs_exist_ok=True)
    cfg = load_config(root / "params.yaml")
    for step in ("item_attributes", "preference_attributions", "preference_knowledge_base"):
        run_step(step, cfg, root)
    return ServingData(cfg, root)


def _tied_rating(interactions: pl.DataFrame) -> dict:
    """A real rating that shares its second with another rating of the same user, and has later ratings."""
    ties = interactions.filter(pl.len().over("user_id", "timestamp") > 1)
    later = interactions.group_by("user_id").agg(pl.col("timestamp").max().alias("last"))
    return ties.join(later, on="user_id").filter(pl.col("timestamp") < pl.col("last")).sort("user_id", "item_id").row(
        0, named=True)


def test_the_history_shown_is_strictly_before_the_queried_rating(serving):
    target = _tied_rating(serving.interactions)
    user, item, t = target["user_id"], target["item_id"], target["timestamp"]
    rated = serving.interactions.filter(pl.col("user_id") == user)
    ctx = serving.context(user, item)
    shown = [i for i, _, _ in ctx.history]
    at_or_after = set(rated.filter(pl.col("timestamp") >= t)["item_id"].to_list())
    assert len(at_or_after) >= 3  # the queried rating, one in the same second, later ones
    assert item not in shown and not at_or_after & set(shown)
    expected = rated.filter(pl.col("timestamp") < t).sort("timestamp", "item_id").tail(serving.cfg.samples.history_len)
    assert shown == expected["item_id"].to_list() and len(shown) > 0
    prompt = build_prompt(ctx, True, serving.cfg.attribution.reasons_per_item)
    history_part = prompt.split("Whether the user will like")[0]
    for later in at_or_after:
        assert serving.builder.titles[later] not in history_part
    # an item the user never rated is judged from everything they rated, latest last
    unrated = next(i for i in serving.builder.titles if i not in set(rated["item_id"].to_list()))
    latest = rated.sort("timestamp", "item_id").tail(serving.cfg.samples.history_len)["item_id"].to_list()
    assert [i for i, _, _ in serving.context(user, unrated).history] == latest


def test_history_before_excludes_ties_and_the_rating_itself():
    rated = pl.DataFrame({"item_id": [1, 2, 3, 4, 5], "timestamp": [10, 20, 30, 30, 40], "rating": [5.0] * 5})
    assert history_before(rated, 3, 10)["item_id"].to_list() == [1, 2]
    assert history_before(rated, 4, 1)["item_id"].to_list() == [2]
    assert history_before(rated, 99, 2)["item_id"].to_list() == [4, 5]


def test_leanings_come_from_the_training_period_asset(serving):
    cfg, root = serving.cfg, serving.root
    table = pl.read_parquet(paths.resolve(paths.processed("preference_attributions"), cfg, root))
    user = table["user_id"][0]
    profile = serving.profile(user, 3)
    mine = table.filter((pl.col("user_id") == user) & (pl.col("label") != ""))
    assert profile["likes"][0] == (mine.sort("log_odds", descending=True)["label"][0],
                                   pytest.approx(mine["log_odds"].max()))
    assert profile["dislikes"][0][1] == pytest.approx(mine["log_odds"].min())
    # the asset decides, not the ratings on screen: a row only the asset has shows up
    marked = pl.concat([table, pl.DataFrame({"user_id": [user], "kind": ["genre"], "value": ["Asset-only"],
                                             "label": ["Asset-only"], "n_liked": [9], "n_disliked": [0],
                                             "log_odds": [99.0]}, schema=table.schema)])
    serving.preferences = marked
    try:
        assert serving.profile(user, 3)["likes"][0] == ("Asset-only", 99.0)
    finally:
        serving.preferences = table
    # a user who joined after the training period has no training-period leanings
    late = serving.interactions.filter(~pl.col("user_id").is_in(table["user_id"].unique().implode()))["user_id"]
    assert late.len() and serving.profile(late[0], 3) == {"likes": [], "dislikes": []}


def test_a_new_user_gets_the_knowledge_base_evidence(serving):
    """A user who joined after the training period, and one in the users table who never rated anything: both get
    P(like) for people like them, each group named, and a context (an empty history for the second)."""
    kb = pl.read_parquet(paths.resolve(paths.KNOWLEDGE_BASE, serving.cfg, serving.root) / "items.parquet")
    table = pl.read_parquet(paths.resolve(paths.processed("preference_attributions"), serving.cfg, serving.root))
    late = serving.interactions.filter(~pl.col("user_id").is_in(table["user_id"].unique().implode()))["user_id"][0]
    evidence = serving.knowledge(late, 50)
    assert evidence["training_period_ratings"] == 0 and evidence["evidence"] == "age,all,gender,occupation"
    assert {g["group"].split("=")[0] for g in evidence["groups"]} == {"age", "all", "gender", "occupation"}
    mixed = sum(g["weight"] * g["p"] for g in evidence["groups"]) / sum(g["weight"] for g in evidence["groups"])
    assert evidence["p_like"] == pytest.approx(mixed)
    everyone = kb.filter((pl.col("group_type") == "all") & (pl.col("item_id") == 50))["p"][0]
    assert next(g["p"] for g in evidence["groups"] if g["group"] == "all=all") == pytest.approx(everyone)
    trained = serving.knowledge(table["user_id"][0], 50)["training_period_ratings"]
    assert trained > 0
    newcomer = int(serving.users["user_id"].max()) + 1
    original = serving.users
    serving.users = pl.concat([original, pl.DataFrame({"user_id": [newcomer], "age": [30], "gender": ["F"],
                                                       "occupation": ["unheard-of job"], "zip_code": ["00000"]},
                                                      schema=original.schema)])
    try:
        assert serving.context(newcomer, 50).history == [] and serving.profile(newcomer) == {"likes": [],
                                                                                            "dislikes": []}
        # added after the KB was built: their groups come from the users table as it is now; an occupation the
        # training period never saw is left out, and that is said
        assert serving.knowledge(newcomer, 50)["evidence"] == "age,all,gender"
    finally:
        serving.users = original
    with pytest.raises(Exception, match="unknown user"):
        serving.rated(newcomer + 1)


class FakeRecommender:
    def explain(self, user, item):
        return Explanation(user, item, '"Star Wars (1977)"', 0.81, "Yes",
                           "Yes. The user enjoys a classic Sci-Fi adventure.", 1,
                           [CitedAttribute("genre", "Sci-Fi", True, True),
                            CitedAttribute("genre", "Adventure", True, False)], [1, 2])

    def profile(self, user, n=3):
        return {"likes": [("Sci-Fi", 1.25)], "dislikes": [("Horror", -0.5)]}

    def knowledge(self, user, item):
        return {"p_like": 0.72, "evidence": "all,gender", "training_period_ratings": 0,
                "groups": [{"group": "all=all", "p": 0.7, "ratings_of_item": 300, "weight": 0.6},
                           {"group": "gender=m", "p": 0.75, "ratings_of_item": 200, "weight": 0.4}]}


def test_explain_prints_what_a_person_reads(monkeypatch):
    from explainrec_core.cli import explain as cli_explain
    from explainrec_core.cli import app

    monkeypatch.setattr(cli_explain, "_recommender", lambda params: FakeRecommender())
    result = CliRunner().invoke(app, ["explain", "--user", "1", "--item", "50"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert 'item 50: "Star Wars (1977)"' in lines[0] and "answer: Yes   P(Yes) = 0.810" in lines[1]
    assert lines[2].startswith("explanation: Yes. The user enjoys a classic Sci-Fi adventure.")
    assert "argues for liking" in lines[2] and "###" not in result.stdout
    assert "cited attributes: Sci-Fi (item ✓, history ✓), Adventure (item ✓, history ✗)" in result.stdout
    assert "training period the user leaned toward: Sci-Fi (+1.25); away from: Horror (-0.50)" in result.stdout
    printed = " ".join(result.stdout.split())  # rich wraps long lines
    assert ("knowledge base: people like this user like it with P = 0.72 (all=all 0.70 (weight 0.60), gender=m "
            "0.75 (weight 0.40)); the user has 0 training-period ratings (a new user") in printed
    result = CliRunner().invoke(app, ["explain", "--user", "1", "--item", "50", "--json"])
    payload = json.loads(result.stdout)
    assert payload["citations"][1] == {"kind": "genre", "label": "Adventure", "true_of_item": True,
                                       "history_supports_answer": False}
    assert payload["stance"] == 1 and payload["profile"]["likes"] == [["Sci-Fi", 1.25]]
