"""The preference knowledge base: estimates against hand computation, learned weights, fallbacks, the training
cut, the quality gate and the real step on ML-100K."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import KnowledgeConfig, load_config
from explainrec_core.errors import QualityGateError
from explainrec_core.evaluation import report
from explainrec_core.knowledge import cross_domain, demographic, store, temporal
from explainrec_core.pipeline import find_gate, run_gate, run_step

DAY = 86_400


def _users() -> pl.DataFrame:
    return pl.DataFrame({"user_id": [1, 2, 3, 4], "age": [20, 30, None, 40], "gender": ["M", "F", None, "F"],
                         "occupation": ["writer", "writer", None, " Artist "]},
                        schema={"user_id": pl.Int64, "age": pl.Int32, "gender": pl.String, "occupation": pl.String})


def _items() -> pl.DataFrame:
    return pl.DataFrame({"item_id": [10, 11, 12], "title": ["a", "b", "c"], "year": [1995, 1987, None],
                         "genres": [["Drama"], ["Drama", "Comedy"], []]},
                        schema={"item_id": pl.Int64, "title": pl.String, "year": pl.Int32,
                                "genres": pl.List(pl.String)})


def _ratings() -> pl.DataFrame:
    # user, item, label: item 12 (no genres) is never rated
    rows = [(1, 10, 1), (1, 11, 0), (2, 10, 1), (2, 11, 1), (3, 10, 0), (4, 11, 1)]
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "label": pl.Int64}, orient="row")


def test_user_groups_band_ages_and_leave_unknown_values_out():
    groups = demographic.user_groups(_users(), (18, 25, 35))
    by_user = {u: dict(zip(g["group_type"], g["group_value"], strict=True))
               for (u,), g in groups.group_by("user_id")}
    assert by_user[1] == {"all": "all", "age": "18-24", "gender": "m", "occupation": "writer"}
    assert by_user[3] == {"all": "all"}  # no demographics: only `all`, never a null group
    assert by_user[4]["occupation"] == "artist" and by_user[4]["age"] == "35+"
    assert [demographic.age_label(a, (18, 25)) for a in (5, 18, 24, 25, 90)] == ["<18", "18-24", "18-24", "25+",
                                                                                 "25+"]


def test_group_estimates_equal_a_hand_computation():
    k, m = 2.0, 3.0
    groups = demographic.user_groups(_users(), (18, 25, 35))
    attrs = cross_domain.item_domains(_items()).rename({"domain": "attribute"})
    tables = demographic.estimate(_ratings(), groups, attrs, [10, 11, 12], k)
    p = 4 / 6
    assert tables.global_rate == pytest.approx(p)
    # the group occupation=writer: users 1 and 2, ratings (10,1) (11,0) (10,1) (11,1)
    p_g = (3 + k * p) / (4 + k)
    drama = (3 + k * p_g) / (4 + k)  # items 10 and 11 are both Drama
    comedy = (1 + k * p_g) / (2 + k)  # item 11 only
    rates = tables.item_rates(m).filter((pl.col("group_type") == "occupation") & (pl.col("group_value") == "writer"))
    got = dict(zip(rates["item_id"], rates["p"], strict=True))
    assert got[10] == pytest.approx((2 + m * drama) / (2 + m))
    assert got[11] == pytest.approx((1 + m * (drama + comedy) / 2) / (2 + m))
    assert got[12] == pytest.approx(p_g)  # never rated, no genres: the group's overall rate
    group = tables.groups.filter(pl.col("group_value") == "writer").row(0, named=True)
    assert (group["n_users"], group["n"], group["likes"]) == (2, 4, 3)


def test_weights_favour_the_predictive_group_and_leave_one_out_stops_memorising():
    """Gender decides the label; each user has an occupation of their own, which would predict every rating
    perfectly from the rating itself if it were counted: leave-one-out gives it no credit."""
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 8
    users = pl.DataFrame({"user_id": range(n_users), "gender": ["M" if u % 2 else "F" for u in range(n_users)],
                          "occupation": [f"job{u}" for u in range(n_users)]})
    rows = [(u, i, int((u % 2 == 1) == (i < n_items // 2)) if rng.random() < 0.9 else int(rng.random() < 0.5))
            for u in range(n_users) for i in range(n_items)]
    ratings = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "label": pl.Int64}, orient="row")
    groups = demographic.user_groups(users, (18,))
    attrs = pl.DataFrame(schema={"item_id": pl.Int64, "attribute": pl.String})
    tables = demographic.estimate(ratings, groups, attrs, list(range(n_items)), 2.0)
    weights = demographic.fit_weights(ratings, groups, tables, m=2.0)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["gender"] > 0.8 and weights["occupation"] < 0.1


def test_scores_fall_back_by_name_and_are_never_nan():
    groups = demographic.user_groups(_users(), (18, 25, 35))
    attrs = cross_domain.item_domains(_items()).rename({"domain": "attribute"})
    tables = demographic.estimate(_ratings(), groups, attrs, [10, 11, 12], 2.0)
    weights = {"all": 0.4, "age": 0.1, "gender": 0.3, "occupation": 0.2}
    rows = pl.DataFrame({"user_id": [1, 3, 99, 1, 4], "item_id": [10, 10, 10, 999, 12]})
    out = demographic.score(rows, groups, tables.item_rates(3.0), weights, tables.global_rate)
    assert out["evidence"].to_list() == ["age,all,gender,occupation", "all", "all", "global rate",
                                         "age,all,gender,occupation"]
    assert out["p"].is_finite().all() and out["p"].is_between(0, 1).all()
    # user 4's age band (35+) never rated anything: that type has no group row and is renormalised away
    rates = tables.item_rates(3.0)
    all_10 = rates.filter((pl.col("group_type") == "all") & (pl.col("item_id") == 10))["p"][0]
    assert out["p"][1] == pytest.approx(all_10)
    assert out["p"][2] == pytest.approx(all_10)  # a user unknown to the users table: `all` still speaks
    assert out["p"][3] == pytest.approx(tables.global_rate)  # an item outside the catalogue


def test_cross_domain_correlation_is_pearson_of_leanings():
    ratings, domains = [], [(1, "A"), (2, "A"), (3, "B"), (4, "B")]
    liked = {0: (2, 2), 1: (2, 1), 2: (1, 1), 3: (0, 1), 4: (0, 0)}  # user -> likes of 2 in A, of 2 in B
    for u, (a, b) in liked.items():
        ratings += [(u, 1, int(a >= 1)), (u, 2, int(a >= 2)), (u, 3, int(b >= 1)), (u, 4, int(b >= 2))]
    frame = pl.DataFrame(ratings, schema={"user_id": pl.Int64, "item_id": pl.Int64, "label": pl.Int64}, orient="row")
    table = cross_domain.domain_correlations(frame, pl.DataFrame(domains, schema=["item_id", "domain"], orient="row"),
                                             min_ratings=2)
    overall = {u: (a + b) / 4 for u, (a, b) in liked.items()}
    lean_a = [a / 2 - overall[u] for u, (a, _) in liked.items()]
    lean_b = [b / 2 - overall[u] for u, (_, b) in liked.items()]
    row = table.row(0, named=True)
    assert (row["domain_a"], row["domain_b"], row["n_users"]) == ("A", "B", 5)
    assert row["correlation"] == pytest.approx(np.corrcoef(lean_a, lean_b)[0, 1])


def test_item_trend_is_the_weighted_slope_per_window():
    end = 100 * DAY
    # item 1: 2 ratings, 1 liked, in the window 2 back; 4 ratings, 3 liked, in the latest window
    ts_old, ts_new = end - 65 * DAY, end - 5 * DAY
    rows = [(1, 1, ts_old), (1, 0, ts_old)] + [(1, y, ts_new) for y in (1, 1, 1, 0)] + [(2, 1, ts_new)]
    ratings = pl.DataFrame(rows, schema={"item_id": pl.Int64, "label": pl.Int64, "timestamp": pl.Int64}, orient="row")
    trends = temporal.item_trends(ratings, [1, 2, 3], end, window_days=30).sort("item_id")
    x, y, w = np.array([-2.0, 0.0]), np.array([0.5, 0.75]), np.array([2.0, 4.0])
    slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    first = trends.row(0, named=True)
    assert first["trend"] == pytest.approx(slope) and first["trend_windows"] == 2
    assert (first["n"], first["n_recent"], first["like_rate_recent"]) == (6, 4, 0.75)
    assert first["days_since_last"] == pytest.approx(5.0)
    assert trends["trend"].to_list()[1:] == [0.0, 0.0]  # one window / never rated: 0, with the window count
    assert trends["n"][2] == 0 and trends["days_since_last"][2] is None


# --- the real step on ML-100K ---

@pytest.fixture(scope="module")
def kb_project(tmp_path_factory, processed_ml100k):
    import shutil

    root = tmp_path_factory.mktemp("kb")
    shutil.copytree(processed_ml100k, root, dirs_exist_ok=True)
    cfg = load_config(root / "params.yaml")
    stats = run_step("preference_knowledge_base", cfg, root)
    return root, cfg, stats


def test_the_step_builds_a_gated_knowledge_base_on_real_ml100k(kb_project):
    root, cfg, stats = kb_project
    kb = store.load(paths.resolve(paths.KNOWLEDGE_BASE, cfg, root))
    assert set(kb.manifest["weights"]) == {"all", "age", "gender", "occupation"}
    assert kb.manifest["item_smoothing"] in cfg.knowledge.item_smoothing
    assert len(kb.manifest["valid_auc_by_item_smoothing"]) == len(cfg.knowledge.item_smoothing)
    model = stats["demographic_model"]
    assert model["test"]["n"] > 1000 and 0.6 < model["test"]["auc"] < 0.9  # a real signal, not leakage-perfect
    curve = model["cold_start_curve"]  # no history is read: the same AUC at every k, on the same samples
    assert len({round(curve[f"new_user_k{k}"]["auc"], 12) for k in cfg.cold_start.curve_ks}) == 1
    assert curve["new_user_k0"]["n"] > 100 and curve["new_item_unseen"]["n"] > 10
    scores = pl.read_parquet(root / paths.KNOWLEDGE_BASE_SCORES)
    assert scores["p_yes"].is_finite().all() and set(scores["set"]) == {"valid", "test", "new_user", "new_item",
                                                                     "new_item_unseen", *(f"new_user_k{k}" for k in
                                                                                          cfg.cold_start.curve_ks)}
    assert [r.success for r in run_gate(cfg, root, find_gate("validate_preference_knowledge_base"))] == [True]
    cost = stats["cost"]  # Table IV: the build is its training; scoring is a table lookup per sample
    assert cost["train_seconds"] > 0 and 0 < cost["inference_ms_per_sample"] < 10 and cost["peak_memory_mb"] > 10
    assert cost["scored_samples"] == scores.height
    row = report._knowledge_base_method({"preference_knowledge_base": stats})["knowledge_base"]
    assert row["train_seconds"] == cost["train_seconds"] and row["peak_memory_mb"] == cost["peak_memory_mb"]


def test_a_test_period_rating_changes_nothing(kb_project):
    root, cfg, _ = kb_project
    samples = pl.read_parquet(root / "data/processed/samples.parquet")
    interactions = pl.read_parquet(root / "data/processed/interactions.parquet")
    items, users = (pl.read_parquet(root / f"data/processed/{n}.parquet") for n in ("items", "users"))
    valid = samples.filter(pl.col("split") == "valid")
    settings = KnowledgeConfig(item_smoothing=(5.0,))

    def build(inter: pl.DataFrame) -> store.KnowledgeBase:
        return store.build(TrainingData.from_tables(samples, inter, items, cfg.samples.like_threshold), users,
                           valid, settings)

    later = int(samples.filter(pl.col("split") == "test")["timestamp"].max())
    extra = pl.DataFrame({"user_id": [1], "item_id": [50], "rating": [5.0], "timestamp": [later]},
                         schema=interactions.schema)
    before, after = build(interactions), build(pl.concat([interactions, extra]))
    assert before.manifest == after.manifest
    for name in store.TABLES:  # (sums may run in another order: equal up to float rounding)
        assert_frame_equal(before.tables[name], after.tables[name], rtol=1e-12, atol=1e-12)


def test_the_gate_names_a_bad_probability_and_a_failed_build_keeps_the_previous_base(kb_project, tmp_path,
                                                                                     monkeypatch):
    import shutil

    root, cfg, _ = kb_project
    copy = tmp_path / "p"
    shutil.copytree(root, copy)
    folder = paths.resolve(paths.KNOWLEDGE_BASE, cfg, copy)
    items = pl.read_parquet(folder / "items.parquet")
    items.with_columns(p=pl.when(pl.row_index() == 3).then(1.7).otherwise(pl.col("p"))).write_parquet(
        folder / "items.parquet")
    with pytest.raises(QualityGateError, match="preference_knowledge_base") as failure:
        run_gate(cfg, copy, find_gate("validate_preference_knowledge_base"))
    report = json.loads((copy / "reports/quality/preference_knowledge_base.json").read_text())
    failed = [f for s in report["suites"] for f in s["failures"]]
    assert any(f["column"] == "p" and 1.7 in f["examples"] for f in failed), failure.value

    items.write_parquet(folder / "items.parquet")  # back to the good table
    good = {name: (folder / f"{name}.parquet").read_bytes() for name in store.TABLES}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        run_step("preference_knowledge_base", cfg, copy)
    assert {name: (folder / f"{name}.parquet").read_bytes() for name in store.TABLES} == good
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".knowledge_base")]
