"""The data path at ML-25M scale: our polars path against the same steps written plainly in pandas.

    python scripts/bench_data.py                        # full scale: 25,000,095 ratings (1.2 GB of CSV)
    python scripts/bench_data.py --ratings 1000000 --out results.json

1. Generates a synthetic dataset with ML-25M's files, schema and shape (ratings, movies, links, tags and the
   tag genome) as real CSV files in a temporary folder (or --data-dir): 162,541 users with at least 20
   ratings each and a long-tailed activity, 62,423 films (59,047 of them rated) with Zipf-like popularity,
   half-star ratings with ML-25M's histogram, per-user increasing timestamps from 1995 to 2019, quoted
   titles with commas. Generation is vectorised (numpy/polars), in its own process, and timed separately.
2. Runs the whole data path (ingest -> samples -> splits -> cold-start sets, writing parquet) in a child
   process, twice: (a) our functions (explainrec_core, polars lazy/streaming), (b) the same steps written
   plainly in pandas, as preprocessing scripts usually are (--pandas-lists adds a third run building the
   histories as per-row Python lists, for smaller scales). Each child reports its wall time, CPU time and
   peak RSS (VmHWM; the paths start no processes of their own). The parent stops a child when the shared
   machine's available memory falls below --min-free-gib.
3. Prints a table (rich) and writes the figures as JSON with --out.

The data are synthetic: figures measure the data path's cost at this shape, not anything about the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

# ML-25M's published shape (README of ml-25m.zip and the files themselves).
ML25M_RATINGS = 25_000_095
ML25M_USERS = 162_541
ML25M_MOVIES = 62_423
ML25M_RATED_MOVIES = 59_047
ML25M_MAX_MOVIE_ID = 209_171
ML25M_TAGS = 1_093_360
ML25M_GENOME_TAGS = 1_128
ML25M_GENOME_MOVIES = 13_816
MIN_RATINGS_PER_USER = 20
MAX_RATINGS_PER_USER = 32_202
FIRST_TS, LAST_TS = 789_652_009, 1_574_327_703  # 1995-01-09 .. 2019-11-21, ML-25M's first and last rating
# ML-25M's rating histogram (counts per half star 0.5 .. 5.0).
RATING_VALUES = np.arange(1, 11) / 2
RATING_COUNTS = np.array([393_068, 776_815, 399_490, 1_640_868, 1_262_797, 4_896_928, 3_177_318, 6_639_798,
                          2_200_539, 3_612_474])
GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
# Share of films in each genre (roughly ML-25M's: Drama and Comedy dominate, Film-Noir and IMAX are rare).
GENRE_SHARE = [0.12, 0.07, 0.04, 0.04, 0.27, 0.09, 0.09, 0.41, 0.04, 0.01, 0.09, 0.003, 0.02, 0.04, 0.16, 0.06,
               0.14, 0.02, 0.02]
# Item popularity p(rank) ~ (rank + 300)^-1.8. The generated 25M set (seed 0) has 10 to 43,663 ratings per
# rated film, median 40 (ML-25M's most rated film has 81,491: distinct items per user and heavy users reaching
# into the tail flatten the head); users have 20 to 32,202 ratings, median 70, mean 153.8 (ML-25M: 20 to
# 32,202, mean 153.8).
ZIPF_OFFSET, ZIPF_EXPONENT = 300, 1.8


def _shape(n_ratings: int) -> dict:
    """Users and films scale with the number of ratings (full scale = ML-25M's counts)."""
    f = n_ratings / ML25M_RATINGS
    users = max(10, round(ML25M_USERS * f))
    movies = max(500, round(ML25M_MOVIES * f)) if f < 1 else ML25M_MOVIES
    rated = max(400, round(ML25M_RATED_MOVIES * f)) if f < 1 else ML25M_RATED_MOVIES
    return {"ratings": n_ratings, "users": users, "movies": movies, "rated_movies": min(rated, movies),
            "tags": max(100, round(ML25M_TAGS * f)), "genome_movies": max(50, round(ML25M_GENOME_MOVIES * f)),
            "genome_tags": ML25M_GENOME_TAGS if f >= 0.2 else 200}


def _user_counts(rng: np.random.Generator, n_ratings: int, n_users: int, max_count: int) -> np.ndarray:
    """Ratings per user: 20 + a long lognormal tail, summing to n_ratings (ML-25M: mean 153.8, max 32,202)."""
    if n_ratings < MIN_RATINGS_PER_USER * n_users:
        raise SystemExit(f"--ratings {n_ratings} is too small for {n_users} users with >= 20 ratings each")
    tail = rng.lognormal(np.log(51), 1.39, n_users)

    def total(scale: float) -> np.ndarray:
        return np.minimum(MIN_RATINGS_PER_USER + np.floor(tail * scale).astype(np.int64), max_count)

    lo, hi = 0.0, 1.0
    while total(hi).sum() < n_ratings:  # the cap may need a larger scale than the plain ratio
        hi *= 2
    for _ in range(60):
        lo, hi = ((lo + hi) / 2, hi) if total((lo + hi) / 2).sum() < n_ratings else (lo, (lo + hi) / 2)
    counts = total(lo)
    missing = n_ratings - int(counts.sum())  # < n_users: floor() loses less than 1 per user
    room = np.flatnonzero(counts < max_count)
    counts[rng.choice(room, size=missing, replace=False)] += 1
    return counts


def _distinct_items(rng: np.random.Generator, counts: np.ndarray, n_rated: int) -> pl.DataFrame:
    """(user, item rank) pairs: counts[u] distinct items per user, drawn by Zipf popularity.

    Drawing with replacement and dropping repeats leaves heavy users short; only those draw again for what
    they lack (Zipf first, then uniformly: a user with thousands of ratings reaches far into the tail).
    """
    cdf = np.cumsum((np.arange(n_rated) + ZIPF_OFFSET) ** -ZIPF_EXPONENT)
    cdf /= cdf[-1]
    target = pl.DataFrame({"user": np.arange(counts.size, dtype=np.int32), "k": counts})
    done: list[pl.DataFrame] = []
    open_users = target
    pending = pl.DataFrame(schema={"user": pl.Int32, "item": pl.Int32, "key": pl.Float64})
    for round_ in range(40):
        need = open_users["k"].to_numpy() - open_users.join(pending.group_by("user").len(), on="user", how="left")[
            "len"].fill_null(0).to_numpy()
        want = need + (need * (0.1 + 0.3 * round_)).astype(np.int64) + 2
        user = np.repeat(open_users["user"].to_numpy(), want)
        if round_ < 3:
            item = np.searchsorted(cdf, rng.random(user.size)).astype(np.int32)
        else:
            item = rng.integers(0, n_rated, user.size, dtype=np.int32)
        drawn = pl.DataFrame({"user": user, "item": item, "key": rng.random(user.size)})
        pending = pl.concat([pending, drawn]).unique(["user", "item"], keep="first")
        sizes = pending.group_by("user").len().join(open_users, on="user")
        full = sizes.filter(pl.col("len") >= pl.col("k"))["user"]
        done.append(pending.filter(pl.col("user").is_in(full.implode())))
        pending = pending.filter(~pl.col("user").is_in(full.implode()))
        open_users = open_users.filter(~pl.col("user").is_in(full.implode()))
        if open_users.height == 0:
            break
    else:
        raise RuntimeError(f"{open_users.height} users could not get enough distinct items")
    # Keep a random counts[u] of each user's distinct items (key is uniform random).
    return (pl.concat(done).join(target, on="user").sort("user", "key")
            .filter(pl.int_range(pl.len()).over("user") < pl.col("k")).select("user", "item"))


def _timestamps(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Per-user increasing timestamps: a start between 1995 and 2019, then a span (most users rate within
    days, some over years) filled with exponential gaps. Returned in the users' row order."""
    n_users = counts.size
    span = np.minimum(np.exp(rng.normal(np.log(3 * 86_400), 2.5, n_users)), (LAST_TS - FIRST_TS) * 0.9)
    start = FIRST_TS + rng.random(n_users) * (LAST_TS - FIRST_TS - span)
    gaps = rng.exponential(size=int(counts.sum()))
    ends = np.cumsum(counts)
    cum = np.cumsum(gaps)
    before = np.concatenate([[0.0], cum[ends[:-1] - 1]])  # cumsum at each user's first row, minus its gap
    user_total = cum[ends - 1] - before
    frac = (cum - np.repeat(before, counts)) / np.repeat(user_total, counts)
    return (np.repeat(start, counts) + frac * np.repeat(span, counts)).astype(np.int64)


def _movies(rng: np.random.Generator, n_movies: int) -> pl.DataFrame:
    """movieId (sparse, as in ML-25M), "Title (Year)" with some quoted commas and some without a year,
    pipe-separated genres or "(no genres listed)"."""
    ids = np.sort(rng.choice(np.arange(1, ML25M_MAX_MOVIE_ID + 1), size=n_movies, replace=False))
    year = np.clip(np.round(2019 - rng.exponential(22, n_movies)), 1874, 2019).astype(np.int64)
    flags = rng.random((n_movies, len(GENRES))) < np.array(GENRE_SHARE)
    genre_cols = {g: flags[:, i] for i, g in enumerate(GENRES)}
    kind = rng.random(n_movies)
    return pl.DataFrame({"movieId": ids, "year": year, "kind": kind, **genre_cols}).select(
        "movieId",
        pl.when(pl.col("kind") < 0.1).then(pl.format("Film {}, The ({})", "movieId", "year"))
        .when(pl.col("kind") < 0.105).then(pl.format("Film {}", "movieId"))  # no year, like "Babylon 5"
        .otherwise(pl.format("Film {} ({})", "movieId", "year")).alias("title"),
        pl.concat_list([pl.when(pl.col(g)).then(pl.lit(g)) for g in GENRES]).list.drop_nulls().list.join("|")
        .replace("", "(no genres listed)").alias("genres"),
    )


def generate(folder: Path, n_ratings: int, seed: int = 0) -> dict:
    """Write ratings/movies/links/tags/genome CSVs in ML-25M's format into `folder`; returns their shape."""
    rng = np.random.default_rng(seed)
    shape = _shape(n_ratings)
    counts = _user_counts(rng, n_ratings, shape["users"], min(MAX_RATINGS_PER_USER, shape["rated_movies"] * 6 // 10))
    pairs = _distinct_items(rng, counts, shape["rated_movies"])
    item = pairs["item"].to_numpy().copy()
    # Every rated film gets at least one rating: unrated ranks replace random ratings of the 100 most popular
    # films (no duplicate: nobody has rated a film that has no rating yet).
    missing = np.setdiff1d(np.arange(shape["rated_movies"]), np.unique(item))
    if missing.size:
        head = np.flatnonzero(item < 100)
        item[rng.choice(head, size=missing.size, replace=False)] = missing
    movies = _movies(rng, shape["movies"])
    movie_ids = movies["movieId"].to_numpy()
    rated_ids = rng.permutation(movie_ids)[: shape["rated_movies"]]  # popularity rank -> movieId
    p = RATING_COUNTS / RATING_COUNTS.sum()
    ratings = pl.DataFrame({
        "userId": pairs["user"].to_numpy().astype(np.int64) + 1,
        "movieId": rated_ids[item],
        "rating": RATING_VALUES[rng.choice(RATING_VALUES.size, size=item.size, p=p)],
        "timestamp": _timestamps(rng, counts),
    }).sort("userId", "movieId")  # ML-25M's ratings.csv order
    ratings.write_csv(folder / "ratings.csv")
    movies.write_csv(folder / "movies.csv")
    tmdb = pl.Series(rng.integers(1, 600_000, movie_ids.size)).scatter(rng.choice(movie_ids.size, 107), None)
    pl.DataFrame({"movieId": movie_ids, "imdbId": pl.Series(rng.integers(1, 11_000_000, movie_ids.size))
                  .cast(pl.String).str.zfill(7), "tmdbId": tmdb}).write_csv(folder / "links.csv")
    # Free-text tags: a Zipf vocabulary of 73,050 strings (some with commas), on popular films.
    n_tags = shape["tags"]
    tag_rank = np.minimum(rng.zipf(1.4, n_tags) - 1, 73_049)
    tag_items = rated_ids[np.minimum(rng.zipf(1.3, n_tags) - 1, shape["rated_movies"] - 1)]
    pl.DataFrame({"userId": rng.integers(1, shape["users"] + 1, n_tags), "movieId": tag_items,
                  "tag": pl.Series(tag_rank).cast(pl.String), "timestamp": rng.integers(FIRST_TS, LAST_TS, n_tags)}
                 ).with_columns(pl.when(pl.col("tag").str.ends_with("7")).then(pl.format("tag {}, with comma", "tag"))
                                .otherwise(pl.format("Tag{}", "tag")).alias("tag")
                                ).write_csv(folder / "tags.csv")
    # Tag genome: every tag scored for the most popular films, relevance mostly low (ML-25M: 15,584,448 rows).
    n_gt, n_gm = shape["genome_tags"], shape["genome_movies"]
    pl.DataFrame({"tagId": np.arange(1, n_gt + 1), "tag": [f"genome tag {i}" for i in range(1, n_gt + 1)]}
                 ).write_csv(folder / "genome-tags.csv")
    genome_movies = np.sort(rated_ids[:n_gm])
    pl.DataFrame({"movieId": np.repeat(genome_movies, n_gt), "tagId": np.tile(np.arange(1, n_gt + 1), n_gm),
                  "relevance": rng.beta(0.6, 4.0, n_gm * n_gt)}).write_csv(folder / "genome-scores.csv")
    shape["rated_movies_actual"] = int(np.unique(item).size)
    return shape


def peak_rss_gib() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status, which starts afresh at exec. (ru_maxrss does not:
    Linux carries the parent's high-water mark into a forked child, so a child of a 4 GB parent reports 4 GB.)"""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 2**20


class Stages:
    """Seconds of each stage and the process's peak RSS when it ended."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.peak_gib: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.last = now - self.last, now
        self.peak_gib[name] = peak_rss_gib()


# --- (a) our path: the project's own functions, exactly as the pipeline steps call them ---

def run_polars(raw: Path, out: Path, stages: Stages) -> None:
    from explainrec_core.config import Config, DataConfig
    from explainrec_core.data.ingest import ingest
    from explainrec_core.steps.data_steps import run_cold_start_sets, run_samples

    cfg = Config(data=DataConfig(format="ml-25m", raw_dir=str(raw), processed_dir=str(out)))
    ingest("ml-25m", raw, out)
    stages.mark("ingest")
    run_samples(cfg, Path("/"))
    stages.mark("samples+splits")
    run_cold_start_sets(cfg, Path("/"))
    stages.mark("cold_start_sets")


# --- (b) the same steps written plainly in pandas (same settings: params.yaml defaults) ---

HISTORY_LEN, MIN_HISTORY, LIKE_THRESHOLD, TRAIN, VALID, COLD_MAX = 10, 1, 3.0, 0.8, 0.1, 5
YEAR = r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$"


def run_pandas(raw: Path, out: Path, stages: Stages, python_lists: bool = False) -> None:
    """read_csv, checks, sort, groupby().shift for the histories, sort_values, merge, to_parquet.

    History lists: by default built from the shifted (n x 10) matrix through pyarrow, vectorised: the fastest
    plain pandas we could write, so the comparison is conservative. `python_lists=True` builds them per row
    as Python lists (what preprocessing scripts usually do: a loop or `.apply(list)`); at 25M ratings that
    is ~480M Python objects, more memory than this machine has, so it is run at smaller scales only.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    def to_parquet(df: pd.DataFrame, name: str) -> None:
        df.to_parquet(out / f"{name}.parquet", compression="zstd", index=False)

    movies = pd.read_csv(raw / "movies.csv")
    assert not movies["movieId"].duplicated().any(), "movies.csv: duplicated movieId"
    title = movies["title"].str.strip()
    items = pd.DataFrame({"item_id": movies["movieId"], "title": title.str.replace(YEAR, "", regex=True).str.strip(),
                          "year": title.str.extract(YEAR)[0].astype("Int32"),
                          "genres": movies["genres"].replace("(no genres listed)", "").str.split("|").map(
                              lambda g: [x for x in g if x])})
    links = pd.read_csv(raw / "links.csv", dtype={"imdbId": str, "tmdbId": "Int64"})
    items = items.merge(links.rename(columns={"movieId": "item_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"}),
                        on="item_id", how="left")
    tags = pd.read_csv(raw / "tags.csv")
    assert tags["movieId"].isin(items["item_id"]).all(), "tags.csv: unknown movieId"
    tags["tag"] = tags["tag"].astype(str).str.strip().str.lower()
    counts = tags[tags["tag"] != ""].groupby(["movieId", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    top = counts.groupby("movieId").head(20).groupby("movieId")["tag"].agg(list).rename("tags")
    items = items.merge(top, left_on="item_id", right_index=True, how="left")
    gtags = pd.read_csv(raw / "genome-tags.csv")
    scores = pd.read_csv(raw / "genome-scores.csv")
    assert scores["relevance"].between(0, 1).all(), "genome-scores.csv: relevance outside [0, 1]"
    assert not scores.duplicated(["movieId", "tagId"]).any(), "genome-scores.csv: repeated (movieId, tagId)"
    assert scores["movieId"].isin(items["item_id"]).all() and scores["tagId"].isin(gtags["tagId"]).all()
    kept = scores[scores["relevance"] >= 0.5].merge(gtags, on="tagId")
    kept = kept.sort_values(["movieId", "relevance", "tag"], ascending=[True, False, True])
    genome = kept.groupby("movieId").head(10).groupby("movieId")["tag"].agg(list).rename("genome_tags")
    items = items.merge(genome, left_on="item_id", right_index=True, how="left")
    for col in ("tags", "genome_tags"):
        items[col] = items[col].map(lambda v: v if isinstance(v, list) else [])
    ratings = pd.read_csv(raw / "ratings.csv")
    assert not ratings.isna().any().any(), "ratings.csv: empty values"
    assert ratings["rating"].between(0.5, 5.0).all(), "ratings.csv: rating outside [0.5, 5]"
    assert not ratings.duplicated(["userId", "movieId", "timestamp"]).any(), "ratings.csv: repeated rating"
    assert ratings["movieId"].isin(items["item_id"]).all(), "ratings.csv: unknown movieId"
    inter = (ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
             .sort_values(["user_id", "timestamp", "item_id"]).reset_index(drop=True))
    del ratings
    to_parquet(inter, "interactions")
    to_parquet(items.sort_values("item_id"), "items")
    to_parquet(pd.DataFrame({"user_id": np.sort(inter["user_id"].unique())}), "users")
    stages.mark("ingest")

    # Samples: histories = the previous 10 ratings of the user (groupby().shift), then a global time cut.
    df = pd.read_parquet(out / "interactions.parquet").sort_values(["user_id", "timestamp", "item_id"])
    df = df.reset_index(drop=True)
    by_user = df.groupby("user_id", sort=False)
    position = by_user.cumcount().to_numpy()
    keep = position >= MIN_HISTORY
    lengths = np.minimum(position, HISTORY_LEN)[keep]
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def history(groups, col: str, dtype) -> pa.Array | list[list]:
        shifted = np.column_stack([groups[col].shift(k).to_numpy()[keep] for k in range(HISTORY_LEN, 0, -1)])
        present = ~np.isnan(shifted)  # the first ratings of a user have fewer than 10 before them
        if python_lists:
            return [row[ok].astype(dtype).tolist() for row, ok in zip(shifted, present, strict=True)]
        return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(shifted[present].astype(dtype)))

    samples = df.loc[keep, ["user_id", "item_id", "rating", "timestamp"]].reset_index(drop=True)
    samples["history_end_timestamp"] = by_user["timestamp"].shift(1)[keep].astype("int64").to_numpy()
    # Sort the scalar columns, then put the history lists in the same order (sorting a frame that holds the
    # lists would copy 4 GB of them at 25M ratings).
    order = samples.sort_values(["timestamp", "user_id", "item_id"]).index.to_numpy()
    samples = samples.iloc[order].reset_index(drop=True)
    for name, col, dtype in (("history_item_ids", "item_id", np.int64), ("history_ratings", "rating", np.float64)):
        lists = history(by_user, col, dtype)
        samples[name] = ([lists[i] for i in order] if python_lists
                         else pd.arrays.ArrowExtensionArray(lists.take(pa.array(order))))
        del lists
    del df, by_user
    n = len(samples)
    sample_id = np.arange(n)
    samples.insert(0, "sample_id", sample_id)
    samples.insert(4, "label", (samples["rating"] > LIKE_THRESHOLD).astype("int8"))
    samples["split"] = np.where(sample_id < int(n * TRAIN), "train",
                                np.where(sample_id < int(n * (TRAIN + VALID)), "valid", "test"))
    to_parquet(samples[["sample_id", "user_id", "item_id", "rating", "label", "timestamp", "history_item_ids",
                        "history_ratings", "history_end_timestamp", "split"]], "samples")
    del samples
    stages.mark("samples+splits")

    # Cold-start sets: test samples whose user / item has < 5 interactions up to the last training target.
    key = ["timestamp", "user_id", "item_id"]
    # (pyarrow directly: pandas cannot parse the list dtypes it wrote into the file's pandas metadata)
    smp = pq.read_table(out / "samples.parquet", columns=["sample_id", *key, "label", "split"]).to_pandas(
        ignore_metadata=True)
    lt, lu, li = smp.loc[smp["split"] == "train", key].sort_values(key).iloc[-1]
    inter = pd.read_parquet(out / "interactions.parquet", columns=["user_id", "item_id", "timestamp"])
    ts, u, i = inter["timestamp"], inter["user_id"], inter["item_id"]
    period = inter[(ts < lt) | ((ts == lt) & ((u < lu) | ((u == lu) & (i <= li))))]
    users = period.groupby("user_id").size().rename("user_train_interactions")
    items_n = period.groupby("item_id").size().rename("item_train_interactions")
    test = smp.loc[smp["split"] == "test", ["sample_id", "user_id", "item_id", "label"]]
    test = test.merge(users, left_on="user_id", right_index=True, how="left")
    test = test.merge(items_n, left_on="item_id", right_index=True, how="left")
    test[["user_train_interactions", "item_train_interactions"]] = (
        test[["user_train_interactions", "item_train_interactions"]].fillna(0).astype("int64"))
    cold = pd.concat([test[test["user_train_interactions"] < COLD_MAX].assign(set="new_user"),
                      test[test["item_train_interactions"] < COLD_MAX].assign(set="new_item")])
    cold = cold[["set", "sample_id", "user_id", "item_id", "label", "user_train_interactions",
                 "item_train_interactions"]].sort_values(["set", "sample_id"])
    to_parquet(cold, "cold_start_sets")
    stages.mark("cold_start_sets")


def child(kind: str, raw: Path, out: Path) -> None:
    """Run one path and print its figures as one JSON line (the parent reads the last line)."""
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages()
    start = time.perf_counter()
    if kind == "polars":
        run_polars(raw, out, stages)
    else:
        run_pandas(raw, out, stages, python_lists=kind == "pandas-lists")
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The paths start no processes of their own, so the child's peak is the path's peak.
    print(json.dumps({"wall_s": wall, "stages_s": stages.seconds, "peak_rss_gib_after_stage": stages.peak_gib,
                      "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_gib": peak_rss_gib()}))


# --- the harness ---

def _available_gib() -> float:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:")) / 2**20


def run_child(kind: str, raw: Path, out: Path, min_free_gib: float) -> dict:
    """Run one path in a fresh process; stop it if the machine runs out of memory (it is shared)."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, "--raw", str(raw), "--child-out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lowest = _available_gib()
    while proc.poll() is None:
        time.sleep(0.2)
        lowest = min(lowest, _available_gib())
        if lowest < min_free_gib:
            proc.kill()
            proc.wait()
            return {"aborted": f"stopped: the machine had {lowest:.1f} GiB left (< --min-free-gib {min_free_gib})",
                    "process_wall_s": time.perf_counter() - start}
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{kind} run failed ({proc.returncode}):\n{stderr[-3000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = time.perf_counter() - start  # + interpreter start and imports
    figures["load_avg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    figures["machine_available_gib_lowest"] = round(lowest, 2)
    figures["output_bytes"] = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return figures


def compare(a: Path, b: Path) -> None:
    """The two paths' tables hold the same values (run with --compare, at small scales)."""
    from polars.testing import assert_frame_equal

    for name in ("interactions", "samples", "cold_start_sets"):
        assert_frame_equal(pl.read_parquet(a / f"{name}.parquet"), pl.read_parquet(b / f"{name}.parquet"),
                           check_dtypes=False)
    cols = ["item_id", "tags", "genome_tags"]
    assert_frame_equal(pl.read_parquet(a / "items.parquet", columns=cols),
                       pl.read_parquet(b / "items.parquet", columns=cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=ML25M_RATINGS, help="ratings to generate (ML-25M: default)")
    parser.add_argument("--skip-pandas", action="store_true", help="time only our polars path")
    parser.add_argument("--compare", action="store_true", help="check both paths wrote the same tables")
    parser.add_argument("--data-dir", type=Path, help="keep the generated CSVs here and reuse them next time")
    parser.add_argument("--out", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-free-gib", type=float, default=1.0,
                        help="stop a run when the machine's available memory drops below this")
    parser.add_argument("--pandas-lists", action="store_true",
                        help="also time pandas building the histories as per-row Python lists (small scales)")
    parser.add_argument("--child", choices=["generate", "polars", "pandas", "pandas-lists"], help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        return print(json.dumps(generate(args.raw, args.ratings, args.seed)))
    if args.child:
        return child(args.child, args.raw, args.child_out)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        raw = args.data_dir or Path(tmp) / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        marker = raw / "shape.json"
        wanted = {"ratings": args.ratings, "seed": args.seed}
        if marker.exists() and {k: json.loads(marker.read_text()).get(k) for k in wanted} == wanted:
            shape = json.loads(marker.read_text())
            console.print(f"reusing the data generated earlier in {raw} (in {shape.get('generation_s', 0):.1f} s)")
        else:
            # In its own process, so this one stays small: children forked from it inherit nothing big.
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", "generate", "--raw", str(raw), "--ratings",
                                   str(args.ratings), "--seed", str(args.seed)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"generation failed:\n{proc.stderr[-3000:]}")
            shape = {**json.loads(proc.stdout.strip().splitlines()[-1]), "seed": args.seed,
                     "generation_s": time.perf_counter() - start}
            marker.write_text(json.dumps(shape))
            console.print(f"generated {args.ratings:,} ratings in {shape['generation_s']:.1f} s (not timed below)")
        results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "python": platform.python_version(), "polars": pl.__version__},
                   "dataset": {**shape, "csv_bytes": sum(p.stat().st_size for p in raw.glob("*.csv"))},
                   "runs": {}}
        for kind in ("polars", "pandas", "pandas-lists"):
            if kind != "polars" and args.skip_pandas or kind == "pandas-lists" and not args.pandas_lists:
                continue
            console.print(f"running the {kind} path ...")
            results["runs"][kind] = run_child(kind, raw, Path(tmp) / kind, args.min_free_gib)
            if "aborted" in results["runs"][kind]:
                console.print(f"{kind}: {results['runs'][kind]['aborted']}")
        done = {kind: r for kind, r in results["runs"].items() if "aborted" not in r}
        if args.compare and "polars" in done:
            for kind in done:
                if kind != "polars":
                    compare(Path(tmp) / "polars", Path(tmp) / kind)
                    results.setdefault("outputs_equal", []).append(kind)
                    console.print(f"{kind} wrote the same interactions, samples, cold-start sets and item tags")

    table = Table(title=f"Data path, {args.ratings:,} ratings, {os.cpu_count()} CPUs")
    for col in ("path", "wall (s)", "ingest", "samples+splits", "cold start", "CPU (s)", "peak RSS (GiB)",
                "load 1m before/after"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for kind, r in done.items():
        st = r["stages_s"]
        table.add_row(kind, f"{r['wall_s']:.1f}", f"{st['ingest']:.1f}", f"{st['samples+splits']:.1f}",
                      f"{st['cold_start_sets']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_rss_gib']:.2f}",
                      " / ".join(map(str, r["load_avg_1m_before_after"])))
    console.print(table)
    for kind, theirs in done.items():
        if kind != "polars" and "polars" in done:
            ours = done["polars"]
            theirs["wall_ratio_vs_polars"] = theirs["wall_s"] / ours["wall_s"]
            theirs["peak_rss_ratio_vs_polars"] = theirs["peak_rss_gib"] / ours["peak_rss_gib"]
            console.print(f"{kind} / polars: {theirs['wall_ratio_vs_polars']:.1f}x the wall time, "
                          f"{theirs['peak_rss_ratio_vs_polars']:.1f}x the peak RSS")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
