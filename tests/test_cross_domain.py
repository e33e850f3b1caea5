"""Cross-domain zero-shot sets: the genre split on real ML-100K, hand-computed histories, combining two datasets."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from explainrec_core.config import CrossDomainConfig, SamplesConfig, SplitConfig, load_config
from explainrec_core.data import cross_domain as cd
from explainrec_core.data.movielens import Tables
from explainrec_core.data.samples import build_samples
from explainrec_core.errors import ConfigError, DataError
from explainrec_core.steps.data_steps import run_cross_domain_sets
from tests.conftest import read_table, write_params


def test_real_ml100k_genre_split(processed_copy):
    cfg = load_config(processed_copy / "params.yaml")
    # the project's params.yaml uses the documented defaults for the split (the demo fits fewer baselines on it)
    assert dataclasses.replace(cfg.cross_domain, methods=()) == CrossDomainConfig()
    stats = run_cross_domain_sets(cfg, processed_copy)
    folder = processed_copy / "data/processed"
    assert not list(folder.glob(".*.tmp"))
    sets = read_table(folder, "cross_domain_sets")
    items, interactions = read_table(folder, "items"), read_table(folder, "interactions")
    target = set(items.filter(pl.col("genres").list.eval(pl.element().is_in(["Animation", "Children's", "Fantasy"]))
                              .list.any())["item_id"].to_list())
    assert len(target) == 137 and stats["n_target_items"] == 137 and stats["n_source_items"] == 1_682 - 137
    assert stats["n_bridge_users"] == 828
    assert stats["source_train"]["n_samples"] == 71_495 and stats["target_eval"]["n_samples"] == 1_554
    assert stats["target_eval"]["n_users"] == 206

    train, valid, evaluation = (sets.filter(pl.col("set") == name) for name in cd.SETS)
    assert set(valid["split"].unique()) == {"valid"} and not valid["item_id"].is_in(list(target)).any()
    assert stats["source_valid"]["n_samples"] == valid.height > 5_000
    # No target-domain item anywhere in the training set, nor in any history.
    assert not train["item_id"].is_in(list(target)).any()
    assert not sets["history_item_ids"].explode().is_in(list(target)).any()
    assert set(train["split"].unique()) == {"train"} and set(evaluation["split"].unique()) == {"valid", "test"}
    assert evaluation["item_id"].is_in(list(target)).all()

    # Every evaluated sample's user has >= 5 source-domain ratings before it, and its history is exactly the
    # user's last 10 of them (recomputed here row by row, the slow obvious way, for 50 evaluated samples).
    source = interactions.filter(~pl.col("item_id").is_in(list(target))).sort("user_id", "timestamp", "item_id")
    by_user = source.partition_by("user_id", as_dict=True)
    for row in evaluation.sample(50, seed=0).iter_rows(named=True):
        mine = by_user[(row["user_id"],)]
        earlier = mine.filter(pl.col("timestamp") < row["timestamp"])  # strictly before: same-second ties excluded
        assert earlier.height >= 5
        assert row["history_item_ids"] == earlier["item_id"].tail(10).to_list()
        assert row["history_ratings"] == earlier["rating"].tail(10).to_list()

    # The rows are the samples table's rows (same ids, targets, labels).
    samples = read_table(folder, "samples").select("sample_id", "user_id", "item_id", "label", "timestamp")
    assert sets.select(samples.columns).join(samples, on=samples.columns, how="anti").is_empty()


def _interactions(rows):
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "timestamp": pl.Int64}, orient="row")


def test_histories_are_source_items_only_by_hand():
    # Items 1-3 are source (Drama), 8 and 9 target (Animation). User 1 rates 1 (t1), 9 (t2), 2 and 3 (t3);
    # user 2 rates 9 (t1), 1 (t2), 8 (t3).
    inter = _interactions([(1, 1, 4.0, 1), (1, 9, 5.0, 2), (1, 2, 2.0, 3), (1, 3, 5.0, 3),
                           (2, 9, 1.0, 1), (2, 1, 3.0, 2), (2, 8, 4.0, 3)])
    items = pl.DataFrame({"item_id": [1, 2, 3, 8, 9],
                          "genres": [["Drama"], ["Drama"], ["Drama", "Comedy"], ["Animation", "Comedy"],
                                     ["Animation"]]})
    domains = cd.genre_domains(items, ["Animation"])
    assert domains.filter(pl.col("domain") == "target")["item_id"].to_list() == [8, 9]  # "any" rule
    samples = build_samples(inter, SamplesConfig(history_len=2, min_history=1), SplitConfig(0.5, 0.25))
    # Samples in (t, user, item) order: (1,9,t2) train, (2,1,t2) train, (1,2,t3) valid, (1,3,t3) test, (2,8,t3) test
    sets = cd.build_cross_domain_sets(samples, inter, domains, history_len=2, min_source_interactions=1,
                                      eval_splits=("train", "valid", "test"))
    rows = {(r["set"], r["user_id"], r["item_id"]): (r["history_item_ids"], r["split"])
            for r in sets.iter_rows(named=True)}
    # user 2's train sample on item 1 has no earlier source rating: dropped. User 1's target sample (item 9,
    # train) reads source history [1]; user 2's target sample (item 8) reads [1]; item 9 is never in a history.
    # User 1's valid-split source sample (item 2, t3) is source_valid with history [1] (item 3, same second, is not).
    assert rows == {("target_eval", 1, 9): ([1], "train"), ("target_eval", 2, 8): ([1], "test"),
                    ("source_valid", 1, 2): ([1], "valid")}
    # Only the train split feeds source_train and only valid feeds source_valid; item 3 is a test target.
    strict = cd.build_cross_domain_sets(samples, inter, domains, 2, 2, ("valid", "test"))
    assert strict["set"].to_list() == ["source_valid"]  # user 2 has one source rating before item 8, fewer than 2


def test_genre_domains_rejects_unknown_genres():
    items = pl.DataFrame({"item_id": [1], "genres": [["Drama"]]})
    with pytest.raises(DataError, match=r"target genres \['Cartoon'\] match no item genre; known genres: \['Drama'\]"):
        cd.genre_domains(items, ["Cartoon"])
    with pytest.raises(ConfigError, match="target_genres is empty"):
        cd.genre_domains(items, [])


def test_cross_domain_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="eval_splits among train/valid/test"):
        load_config(write_params(tmp_path, cross_domain={"eval_splits": ["test", "future"]}))
    with pytest.raises(ConfigError, match="min_source_interactions >= 1"):
        load_config(write_params(tmp_path, cross_domain={"min_source_interactions": 0}))


def _tables(users, items, inter, **user_cols) -> Tables:
    return Tables(_interactions(inter),
                  pl.DataFrame({"item_id": items, "title": [f"t{i}" for i in items],
                                "genres": [["Drama"]] * len(items)}),
                  pl.DataFrame({"user_id": users, **user_cols}))


def test_combine_domains_rekeys_items_and_maps_users():
    movies = _tables([1, 2], [1, 2, 3], [(1, 1, 4.0, 10), (2, 3, 2.0, 11)], age=[30, 40])
    books = _tables([1, 2, 3], [1, 2], [(1, 1, 5.0, 20), (2, 2, 3.0, 21), (3, 1, 1.0, 22)],
                    reviewer_id=["A9", "B7", "C5"])
    user_map = pl.DataFrame({"user_id_a": ["2"], "user_id_b": ["B7"]})  # movie user 2 is book reviewer B7
    both = cd.combine_domains(movies, books, user_map, key_b="reviewer_id")
    assert both.items.select("item_id", "source_item_id", "domain").rows() == [
        (1, 1, "a"), (2, 2, "a"), (3, 3, "a"), (5, 1, "b"), (6, 2, "b")]  # book ids shifted by 3 + 1
    # Book users: B7 -> 2 (mapped), A9 -> 3 and C5 -> 4 (new ids above the movie users').
    assert both.interactions.select("user_id", "item_id", "domain").rows() == [
        (1, 1, "a"), (2, 3, "a"), (2, 6, "b"), (3, 5, "b"), (4, 5, "b")]
    assert both.users.select("user_id", "age", "reviewer_id", "domain").rows() == [
        (1, 30, None, "a"), (2, 40, "B7", "both"), (3, None, "A9", "b"), (4, None, "C5", "b")]
    domains = both.items.select("item_id", pl.col("domain").replace({"a": "source", "b": "target"}))
    assert cd.bridge_users(both.interactions, domains)["user_id"].to_list() == [2]

    with pytest.raises(DataError, match=r"1 mapped id\(s\) missing from dataset b's users.reviewer_id"):
        cd.combine_domains(movies, books, pl.DataFrame({"user_id_a": ["1"], "user_id_b": ["Z1"]}),
                           key_b="reviewer_id")
    with pytest.raises(DataError, match="one-to-one"):
        cd.combine_domains(movies, books, pl.DataFrame({"user_id_a": ["1", "2"], "user_id_b": ["A9", "A9"]}),
                           key_b="reviewer_id")


def test_read_user_map_names_repeated_ids(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("user_id_a,user_id_b\n1,A9\n2,B7\n3,A9\n")
    with pytest.raises(DataError) as info:
        cd.read_user_map(path)
    assert info.value.column == "user_id_b" and "line 2" in str(info.value) and "line 4" in str(info.value)
    path.write_text("user_id_a,user_id_b\n1,A9\n2,B7\n")
    assert cd.read_user_map(path).rows() == [("1", "A9"), ("2", "B7")]


def test_source_domain_models_never_read_the_held_out_domain(processed_copy):
    """Flipping every held-out-genre rating of the training period changes nothing the cross-domain baselines and
    knowledge base learn from, nor their scores; flipping source-genre ratings does (so the check can fail)."""
    from explainrec_core.knowledge import store
    from explainrec_core.steps.baseline_runs import fit_for_protocol
    from explainrec_core.steps.cross_domain_steps import TARGET_EVAL, source_domain_data

    write_params(processed_copy, data={"raw_dir": str(load_config(processed_copy / "params.yaml").data.raw_dir),
                                       "processed_dir": "data/processed"},
                 baselines={"methods": ["bpr"], "hyperparameters": {"bpr": {"epochs": 2}}})
    cfg = load_config(processed_copy / "params.yaml")
    run_cross_domain_sets(cfg, processed_copy)
    folder = processed_copy / "data/processed"
    sets = read_table(folder, "cross_domain_sets")
    target = sets.filter(pl.col("set") == TARGET_EVAL).head(300)
    domains = cd.genre_domains(read_table(folder, "items"), cfg.cross_domain.target_genres)
    original = read_table(folder, "interactions")

    def scores_after(flip_domain: str | None) -> tuple[list, list]:
        flipped_items = domains.filter(pl.col("domain") == (flip_domain or ""))["item_id"].implode()
        changed = original.with_columns(pl.when(pl.col("item_id").is_in(flipped_items))
                                        .then(6.0 - pl.col("rating")).otherwise(pl.col("rating")).alias("rating"))
        changed.write_parquet(folder / "interactions.parquet")
        data = source_domain_data(cfg, processed_copy, sets)
        model, _ = fit_for_protocol("bpr", "auc", cfg, data, seed=0)
        kb = store.build(data, read_table(folder, "users"), sets.filter(pl.col("set") == "source_valid"),
                         cfg.knowledge)
        return model.score(target).tolist(), kb.score(target)["p"].to_list()

    reference = scores_after(None)
    assert scores_after("target") == reference
    assert scores_after("source") != reference


def test_two_dataset_mode_from_params(tmp_path, ml25m_raw):
    """`cross_domain.second_dataset`: ingest combines two datasets through the user map, and the cross-domain sets
    hold out the second dataset's items (no genre split)."""
    from explainrec_core.steps.data_steps import run_ingest, run_samples

    second = tmp_path / "second"
    second.mkdir()
    (second / "movies.csv").write_text("movieId,title,genres\n10,Heat (1995),Action|Crime\n"
                                       "11,Ronin (1998),Action\n", encoding="utf-8")
    # user 7 of the second dataset is user 1 of the first; user 8 is nobody there
    (second / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,10,5.0,1500000000\n"
                                        "7,11,2.0,1500000100\n8,10,4.0,1500000200\n", encoding="utf-8")
    (tmp_path / "users.csv").write_text("user_id_a,user_id_b\n1,7\n", encoding="utf-8")
    write_params(tmp_path, data={"format": "ml-25m", "raw_dir": str(ml25m_raw)},
                 samples={"min_history": 1},
                 cross_domain={"min_source_interactions": 1, "eval_splits": ["train", "valid", "test"],
                               "second_dataset": {"format": "ml-25m", "raw_dir": "second", "user_map": "users.csv",
                                                  "key_a": "user_id", "key_b": "user_id"}})
    cfg = load_config(tmp_path / "params.yaml")
    stats = run_ingest(cfg, tmp_path)
    assert stats["mapped_users"] == 1 and stats["domains"] == {"a": "ml-25m", "b": "ml-25m"}
    folder = tmp_path / "data/processed"
    items = read_table(folder, "items")
    b_items = set(items.filter(pl.col("domain") == "b")["item_id"].to_list())
    assert b_items == {17, 18}  # the first dataset's largest item id is 6: 10 + 7, 11 + 7
    inter = read_table(folder, "interactions")
    assert inter.filter(pl.col("domain") == "b").select("user_id", "item_id").rows() == [(1, 17), (1, 18), (4, 17)]
    run_samples(cfg, tmp_path)
    run_cross_domain_sets(cfg, tmp_path)
    sets = read_table(folder, "cross_domain_sets")
    held_out = sets.filter(pl.col("set") == "target_eval")
    # user 1 rated first-dataset films before the second dataset's: both of theirs are evaluated, zero-shot
    assert held_out.select("user_id", "item_id").sort("item_id").rows() == [(1, 17), (1, 18)]
    assert not sets["history_item_ids"].explode().is_in(list(b_items)).any()
    assert not sets.filter(pl.col("set") != "target_eval")["item_id"].is_in(list(b_items)).any()


def test_two_dataset_mode_needs_the_map(tmp_path):
    with pytest.raises(ConfigError, match="needs raw_dir and user_map"):
        load_config(write_params(tmp_path, cross_domain={"second_dataset": {"format": "ml-25m"}}))
