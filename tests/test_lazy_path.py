"""The lazy data path gives exactly what the eager one gave, and the ML-25M reader's fast path (genome included)
accepts and rejects exactly what the row-level reader does."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from explainrec_core.config import ColdStartConfig, SamplesConfig, SplitConfig, load_config
from explainrec_core.data import movielens, rawcheck
from explainrec_core.data import samples as samples_mod
from explainrec_core.data.ingest import read_tables
from explainrec_core.data.samples import build_cold_start_sets, build_samples, cold_start_stats, sample_stats
from explainrec_core.errors import DataError
from explainrec_core.steps.data_steps import sink_parquet
from tests.conftest import read_table

# --- a plain eager reference: the implementation before the lazy refactor (git db5a4c3), with strict histories ---

SAMPLE_KEY = ("timestamp", "user_id", "item_id")


def reference_samples(interactions: pl.DataFrame, cfg: SamplesConfig, split: SplitConfig) -> pl.DataFrame:
    n_hist = cfg.history_len
    by_user = interactions.sort("user_id", "timestamp", "item_id")
    # Histories hold only ratings strictly before the target's second: look back far enough to skip the target's
    # same-second batch-mates, then keep the last n_hist earlier ones.
    lookback = n_hist + by_user.group_by("user_id", "timestamp").len()["len"].max()
    earlier = {k: pl.col("timestamp").shift(k).over("user_id") < pl.col("timestamp") for k in range(1, lookback)}

    def previous(col: str, dtype: pl.DataType) -> pl.Expr:
        shifted = [pl.when(earlier[k]).then(pl.col(col).shift(k).over("user_id")) for k in range(lookback - 1, 0, -1)]
        return pl.concat_list(shifted).list.drop_nulls().list.tail(n_hist).cast(pl.List(dtype))

    samples = (
        by_user.with_columns(
            (pl.col("timestamp").rank("min").over("user_id") - 1).alias("position"),
            previous("item_id", pl.Int64).alias("history_item_ids"),
            previous("rating", pl.Float64).alias("history_ratings"),
            pl.max_horizontal(pl.when(earlier[k]).then(pl.col("timestamp").shift(k).over("user_id"))
                              for k in range(1, lookback)).alias("history_end_timestamp"),
        )
        .filter(pl.col("position") >= cfg.min_history)
        .sort(*SAMPLE_KEY)
        .with_row_index("sample_id")
    )
    n = samples.height
    n_train, n_valid_end = int(n * split.train), int(n * (split.train + split.valid))
    sample_id = pl.col("sample_id").cast(pl.Int64)
    return samples.select(
        sample_id, "user_id", "item_id", "rating",
        (pl.col("rating") > cfg.like_threshold).cast(pl.Int8).alias("label"),
        "timestamp", "history_item_ids", "history_ratings", "history_end_timestamp",
        pl.when(sample_id < n_train).then(pl.lit("train"))
        .when(sample_id < n_valid_end).then(pl.lit("valid"))
        .otherwise(pl.lit("test")).alias("split"),
    )


def reference_cold_start(samples: pl.DataFrame, interactions: pl.DataFrame, cfg: ColdStartConfig) -> pl.DataFrame:
    ts, user, item = samples.filter(pl.col("split") == "train").sort(*SAMPLE_KEY).select(SAMPLE_KEY).row(-1)
    period = interactions.filter((pl.col("timestamp") < ts) | ((pl.col("timestamp") == ts) & (
        (pl.col("user_id") < user) | ((pl.col("user_id") == user) & (pl.col("item_id") <= item)))))
    users = period.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("user_train_interactions"))
    items = period.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("item_train_interactions"))
    test = (samples.filter(pl.col("split") == "test").select("sample_id", "user_id", "item_id", "label")
            .join(users, on="user_id", how="left").join(items, on="item_id", how="left")
            .with_columns(pl.col("user_train_interactions", "item_train_interactions").fill_null(0)))
    return (pl.concat([
        test.filter(pl.col("user_train_interactions") < cfg.max_user_train_interactions)
        .with_columns(pl.lit("new_user").alias("set")),
        test.filter(pl.col("item_train_interactions") < cfg.max_item_train_interactions)
        .with_columns(pl.lit("new_item").alias("set"))])
        .select("set", "sample_id", "user_id", "item_id", "label", "user_train_interactions",
                "item_train_interactions").sort("set", "sample_id"))


SAMPLES_CFG, SPLIT_CFG, COLD_CFG = SamplesConfig(10, 1, 3.0), SplitConfig(0.8, 0.1), ColdStartConfig(5, 5)
# sha256 of write_ndjson() of the reference's output on real ML-100K with the settings above (polars 2.1.0),
# recorded when histories became strictly before the target's second: a second witness besides the reference code.
FROZEN_SAMPLES_SHA = "13d5ff89c0fa64e50d85274bd5168d34705b570c987bc3f872324d77ce073100"
FROZEN_COLD_SHA = "f31e5c374dc1a553928f42156015c594a633e6d9bf80bd300e793e799e39c308"


def _sha(df: pl.DataFrame) -> str:
    return hashlib.sha256(df.write_ndjson().encode()).hexdigest()


@pytest.fixture(scope="module")
def ml100k_interactions(processed_ml100k) -> Path:
    return processed_ml100k / "data/processed/interactions.parquet"


def test_lazy_samples_equal_the_eager_reference_on_real_ml100k(ml100k_interactions, tmp_path, monkeypatch):
    eager_in = pl.read_parquet(ml100k_interactions)
    expected = reference_samples(eager_in, SAMPLES_CFG, SPLIT_CFG)
    assert expected.height == 97_865 and _sha(expected) == FROZEN_SAMPLES_SHA

    eager_out = build_samples(eager_in, SAMPLES_CFG, SPLIT_CFG)
    assert isinstance(eager_out, pl.DataFrame)
    assert_frame_equal(eager_out, expected)

    # Lazy in, lazy out; streamed in small batches so histories are gathered across many batch boundaries.
    batches: list[int] = []
    gather = samples_mod.history_gather

    def counting(*args, **kwargs):
        inner = gather(*args, **kwargs)

        def wrapped(batch: pl.Series) -> pl.Series:
            batches.append(len(batch))
            return inner(batch)

        return wrapped

    monkeypatch.setattr(samples_mod, "history_gather", counting)
    query = build_samples(pl.scan_parquet(ml100k_interactions), SAMPLES_CFG, SPLIT_CFG)
    assert isinstance(query, pl.LazyFrame)
    with pl.Config(streaming_chunk_size=5_000):
        sink_parquet(query, tmp_path / "samples.parquet")
    assert len(batches) >= 2 * 19  # two history columns, ~20 batches each
    streamed = pl.read_parquet(tmp_path / "samples.parquet")
    assert_frame_equal(streamed, expected)
    assert _sha(streamed) == FROZEN_SAMPLES_SHA


def test_lazy_cold_start_and_stats_equal_the_eager_reference(ml100k_interactions):
    interactions = pl.read_parquet(ml100k_interactions)
    samples = reference_samples(interactions, SAMPLES_CFG, SPLIT_CFG)
    expected = reference_cold_start(samples, interactions, COLD_CFG)
    assert _sha(expected) == FROZEN_COLD_SHA
    lazy = build_cold_start_sets(samples.lazy(), pl.scan_parquet(ml100k_interactions), COLD_CFG)
    assert isinstance(lazy, pl.LazyFrame)
    assert_frame_equal(lazy.collect(engine="streaming"), expected)
    assert_frame_equal(build_cold_start_sets(samples, interactions, COLD_CFG), expected)
    # Statistics from a lazy frame are those of the eager one (values recorded before the refactor).
    assert sample_stats(samples.lazy()) == sample_stats(samples)
    assert sample_stats(samples)["test"] == {"n_samples": 9787, "n_users": 166, "n_items": 1343,
                                             "positive_rate": 0.5632, "first_timestamp": 891383204,
                                             "last_timestamp": 893286638}
    assert sample_stats(samples)["mean_history_len"] == 9.599
    assert cold_start_stats(expected.lazy()) == {
        "new_user": {"n_samples": 8405, "n_users": 98, "n_items": 1280, "positive_rate": 0.5588},
        "new_item": {"n_samples": 305, "n_users": 76, "n_items": 170, "positive_rate": 0.4098},
    }


def test_pipeline_steps_write_the_reference_tables(processed_ml100k):
    """The session fixture ran the real steps (scan -> lazy -> streaming sink); compare with the reference."""
    folder = processed_ml100k / "data/processed"
    cfg = load_config(processed_ml100k / "params.yaml")
    interactions = read_table(folder, "interactions")
    expected = reference_samples(interactions, cfg.samples, cfg.split)
    assert_frame_equal(read_table(folder, "samples"), expected)
    assert_frame_equal(read_table(folder, "cold_start_sets"), reference_cold_start(expected, interactions,
                                                                                   cfg.cold_start))


def test_unsorted_interactions_give_the_same_samples(ml100k_interactions):
    interactions = pl.read_parquet(ml100k_interactions)
    shuffled = interactions.sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(build_samples(shuffled, SAMPLES_CFG, SPLIT_CFG),
                       build_samples(interactions, SAMPLES_CFG, SPLIT_CFG))


def test_a_failing_sink_leaves_the_previous_file(tmp_path):
    target = tmp_path / "samples.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(target)
    before = target.read_bytes()

    def boom(batch: pl.Series) -> pl.Series:
        raise RuntimeError("disk full halfway")

    query = pl.LazyFrame({"x": [1, 2, 3]}).select(pl.col("x").map_batches(boom, pl.Int64, is_elementwise=True))
    with pytest.raises(Exception, match="disk full halfway"):
        sink_parquet(query, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["samples.parquet"]  # no temporary file left


# --- ML-25M reader: tag genome, fast path vs row-level path ---

GENOME_TAGS = """tagId,tag
1,atmospheric
2,pixar animation
3,funny
4,toys
5,boring
6,kids
7,friendship
8,computer animation
9,"clever, witty"
10,family
11,witty
12,nostalgic
13,dark
"""
# Film 1: 11 tags >= 0.5 (two tied at 0.9); the 11th (toys, 0.5) falls outside the top 10. Film 2: all < 0.5.
# Film 4: exactly 0.5 counts. Films 3, 5, 6: no genome scores.
_FILM1 = {1: 0.9, 2: 0.95, 3: 0.9, 4: 0.5, 5: 0.49, 6: 0.7, 7: 0.8, 8: 0.85, 9: 0.6, 10: 0.65, 11: 0.75, 12: 0.55,
          13: 0.1}
GENOME_SCORES = "movieId,tagId,relevance\n" + "".join(f"1,{t},{r}\n" for t, r in _FILM1.items()) + (
    "2,1,0.2\n2,13,0.4\n4,5,0.5\n4,13,0.02\n")


@pytest.fixture
def ml25m_genome(ml25m_raw) -> Path:
    (ml25m_raw / "genome-tags.csv").write_text(GENOME_TAGS)
    (ml25m_raw / "genome-scores.csv").write_text(GENOME_SCORES)
    return ml25m_raw


def test_genome_tags_are_the_top_relevant_ones(ml25m_genome):
    assert movielens.GENOME_TOP_N == 10 and movielens.GENOME_MIN_RELEVANCE == 0.5
    items = {r["item_id"]: r for r in read_tables("ml-25m", ml25m_genome).items.iter_rows(named=True)}
    assert items[1]["genome_tags"] == ["pixar animation", "atmospheric", "funny", "computer animation", "friendship",
                                       "witty", "kids", "family", "clever, witty", "nostalgic"]
    assert items[2]["genome_tags"] == [] and items[3]["genome_tags"] == []
    assert items[4]["genome_tags"] == ["boring"]
    assert items[1]["tags"] == ["pixar", "funny, clever"]  # the free-text tags are still there


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


GENOME_ERRORS = [
    # (edit of genome-scores.csv, column named, fragments of the message)
    (("1,2,0.95", "1,2,1.5"), "relevance", ["outside [0.0, 1.0]", "line 3: 1.5"]),
    (("1,2,0.95", "1,2,high"), "relevance", ["non-numeric", "line 3: 'high'"]),
    (("4,5,0.5", "4,99,0.5"), "tagId", ["missing from", "genome-tags.csv", "line 17: 99"]),
    (("4,5,0.5", "999,5,0.5"), "movieId", ["missing from", "movies.csv", "line 17: 999"]),
    (("2,13,0.4", "2,1,0.4"), "movieId, tagId", ["share a (movieId, tagId) key", "line 15", "line 16", "(2, 1)"]),
]


@pytest.mark.parametrize("edit, column, fragments", GENOME_ERRORS, ids=[c[1] + str(i) for i, c in
                                                                       enumerate(GENOME_ERRORS)])
def test_bad_genome_scores_are_named(ml25m_genome, edit, column, fragments):
    _edit(ml25m_genome / "genome-scores.csv", *edit)
    with pytest.raises(DataError) as info:
        read_tables("ml-25m", ml25m_genome)
    assert info.value.file.endswith("genome-scores.csv") and info.value.column == column
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {info.value}"


def test_half_a_genome_is_an_error(ml25m_genome):
    (ml25m_genome / "genome-tags.csv").unlink()
    with pytest.raises(DataError, match="genome-tags.csv: file not found; the tag genome needs both"):
        read_tables("ml-25m", ml25m_genome)
    (ml25m_genome / "genome-scores.csv").unlink()
    assert "genome_tags" not in read_tables("ml-25m", ml25m_genome).items.columns


def test_ratings_fast_path_and_row_level_path_agree(ml25m_genome, monkeypatch):
    text_reads: list[str] = []
    read_delimited = rawcheck.read_delimited

    def spy(path, *args, **kwargs):
        text_reads.append(Path(path).name)
        return read_delimited(path, *args, **kwargs)

    monkeypatch.setattr(rawcheck, "read_delimited", spy)
    clean = read_tables("ml-25m", ml25m_genome)
    assert "ratings.csv" not in text_reads and "genome-scores.csv" not in text_reads  # fast path only

    # Padding the typed reader rejects but the row-level reader strips: same tables, via the slow path.
    _edit(ml25m_genome / "ratings.csv", "1,2,3.5,1147868817", "1,2,3.5 ,1147868817")
    _edit(ml25m_genome / "genome-scores.csv", "1,2,0.95", "1,2,0.95 ")
    text_reads.clear()
    padded = read_tables("ml-25m", ml25m_genome)
    assert text_reads.count("ratings.csv") == 1 and text_reads.count("genome-scores.csv") == 1
    assert_frame_equal(padded.interactions, clean.interactions)
    assert_frame_equal(padded.items, clean.items)

    # Timestamps written as floats stay on the fast path and give the same whole seconds.
    _edit(ml25m_genome / "ratings.csv", "1,2,3.5 ,1147868817", "1,2,3.5,1147868817")
    _edit(ml25m_genome / "ratings.csv", "3,2,1.0,1439474480", "3,2,1.0,1439474480.0")
    text_reads.clear()
    floats = read_tables("ml-25m", ml25m_genome)
    assert "ratings.csv" not in text_reads
    assert_frame_equal(floats.interactions, clean.interactions)
