"""MovieLens readers: raw files -> the normalised tables (interactions, items, users).

Formats:
- `ml-100k`, either layout of the same data:
  * GroupLens' original files `u.data` (tab, no header), `u.item` and `u.user` (pipe, no header, Latin-1),
  * RecBole atomic files `ml-100k.inter/.item/.user` (tab, `name:type` header, UTF-8), which is what
    `explainrec data fetch ml-100k` downloads.
- `ml-25m` (also ml-20m/ml-32m, same layout): `ratings.csv`, `movies.csv` and, when present, `tags.csv`,
  `links.csv` and the tag genome (`genome-tags.csv` + `genome-scores.csv`), with their real quirks: quoted
  titles containing commas, titles without a year, "(no genres listed)", empty tmdbId.

The two big ML-25M files (25M ratings, 15.6M genome scores) are read on a fast path: a typed `pl.scan_csv`
and whole-column checks. Only when that fails (a value that does not parse, or any check) is the file read
again as text by the strict row-level reader (rawcheck), which finds the offending lines for the error message
or, for harmless quirks such as padded numbers, gives the result itself. Both paths accept the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from explainrec_core.data import rawcheck as rc
from explainrec_core.errors import DataError

GROUPLENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
ML100K_RATING_RANGE = (1.0, 5.0)
ML25M_RATING_RANGE = (0.5, 5.0)
MAX_TAGS_PER_ITEM = 20
# Tag genome: each film's GENOME_TOP_N most relevant genome tags with relevance >= GENOME_MIN_RELEVANCE (ML-25M
# scores all 1,128 tags for 13,816 films; most scores are low, so the threshold keeps the tags that describe it).
GENOME_TOP_N = 10
GENOME_MIN_RELEVANCE = 0.5
# "Title (1995)", "Title (2007-2013)", "Title (1995) " -> year 1995; titles without a year keep year = null.
_YEAR_SUFFIX = r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$"


@dataclass(frozen=True)
class Tables:
    """The normalised tables every later step reads. Ids are integers; timestamps are Unix seconds."""

    interactions: pl.DataFrame  # user_id, item_id, rating, timestamp
    items: pl.DataFrame  # item_id, title, year, genres: list[str], + whatever the source has
    users: pl.DataFrame  # user_id, + age, gender, occupation, zip_code where the source has them


def finish_interactions(df: pl.DataFrame, path: Path, rating_range: tuple[float, float],
                        items: pl.DataFrame, items_file: Path, has_header: bool,
                        user: str = "user_id", item: str = "item_id") -> pl.DataFrame:
    """Cast, range-check, de-duplicate-check and reference-check raw ratings.

    `user` and `item` are the file's own column names, so errors name the column people see in the file.
    """
    for col, dtype in ((user, pl.Int64), (item, pl.Int64), ("rating", pl.Float64)):
        df = rc.cast_column(df, path, col, dtype, has_header=has_header)
    # Timestamps may be written as floats ("881250949" or "881250949.0"); whole seconds either way.
    df = rc.cast_column(df, path, "timestamp", pl.Float64, has_header=has_header)
    df = df.with_columns(pl.col("timestamp").cast(pl.Int64))
    rc.check_range(df, path, "rating", *rating_range, has_header=has_header)
    rc.check_unique(df, path, [user, item, "timestamp"], has_header=has_header)
    rc.check_references(df, path, item, items["item_id"], items_file, has_header=has_header)
    return (rc.drop_row_index(df).select(pl.col(user).alias("user_id"), pl.col(item).alias("item_id"),
                                         "rating", "timestamp")
            .sort("user_id", "timestamp", "item_id"))


def split_title_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    title = title.str.strip_chars()
    year = title.str.extract(_YEAR_SUFFIX, 1).cast(pl.Int32)
    return title.str.replace(_YEAR_SUFFIX, "").str.strip_chars().alias("title"), year.alias("year")


def _users_from_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    return interactions.select("user_id").unique().sort("user_id")


def _check_users(interactions: pl.DataFrame, users: pl.DataFrame, inter_file: Path, users_file: Path) -> None:
    missing = interactions.filter(~pl.col("user_id").is_in(users["user_id"].implode()))
    if missing.height:
        raise DataError(str(inter_file), f"{missing.height} rating(s) by users missing from {users_file}",
                        column="user_id", values=missing["user_id"].unique().sort().to_list())


def read_ml100k(raw_dir: Path) -> Tables:
    if (raw_dir / "u.data").exists():
        return _read_ml100k_grouplens(raw_dir)
    if (raw_dir / "ml-100k.inter").exists():
        return _read_ml100k_recbole(raw_dir)
    raise DataError(str(raw_dir), "no ML-100K files: expected GroupLens u.data/u.item/u.user or RecBole "
                    "ml-100k.inter/.item/.user (run `explainrec data fetch ml-100k`)")


def _read_recbole_table(path: Path, columns: list[str]) -> pl.DataFrame:
    df = rc.read_delimited(path, [], separator="\t", has_header=True, quote_char=None)
    df = df.rename({c: c.split(":", 1)[0] for c in df.columns})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(str(path), f"missing column(s) {missing}; found {df.columns[1:]}")
    return df


def _read_ml100k_recbole(raw_dir: Path) -> Tables:
    items_file, users_file, inter_file = (raw_dir / f"ml-100k.{ext}" for ext in ("item", "user", "inter"))
    items = _read_recbole_table(items_file, ["item_id", "movie_title", "release_year", "class"])
    items = rc.cast_column(items, items_file, "item_id", pl.Int64)
    items = rc.cast_column(items, items_file, "release_year", pl.Int32, nullable=True, lenient=True)
    rc.check_unique(items, items_file, ["item_id"])
    title, title_year = split_title_year(pl.col("movie_title"))
    items = rc.drop_row_index(items).select(
        "item_id", title, pl.coalesce("release_year", title_year).alias("year"),
        pl.col("class").fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        .alias("genres"),
    )
    users = _read_recbole_table(users_file, ["user_id", "age", "gender", "occupation", "zip_code"])
    users = rc.cast_column(users, users_file, "user_id", pl.Int64)
    users = rc.cast_column(users, users_file, "age", pl.Int32, nullable=True)
    rc.check_unique(users, users_file, ["user_id"])
    users = rc.drop_row_index(users).select("user_id", "age", "gender", "occupation", "zip_code")
    inter = _read_recbole_table(inter_file, ["user_id", "item_id", "rating", "timestamp"])
    interactions = finish_interactions(inter, inter_file, ML100K_RATING_RANGE, items, items_file, True)
    _check_users(interactions, users, inter_file, users_file)
    return Tables(interactions, items.sort("item_id"), users.sort("user_id"))


def _read_ml100k_grouplens(raw_dir: Path) -> Tables:
    items_file, users_file, inter_file = raw_dir / "u.item", raw_dir / "u.user", raw_dir / "u.data"
    item_cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *GROUPLENS_GENRES]
    # GroupLens ships u.item in Latin-1 (e.g. "Misérables"); titles contain no pipes, so no quoting.
    items = rc.read_delimited(items_file, item_cols, separator="|", has_header=False, encoding="latin-1",
                              quote_char=None)
    items = rc.cast_column(items, items_file, "item_id", pl.Int64, has_header=False)
    rc.check_unique(items, items_file, ["item_id"], has_header=False)
    title, year = split_title_year(pl.col("title"))
    date_year = pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False)
    items = rc.drop_row_index(items).select(
        "item_id", title, pl.coalesce(year, date_year).alias("year"),
        pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in GROUPLENS_GENRES])
        .list.drop_nulls().alias("genres"),
        pl.col("imdb_url").replace("", None),
    )
    users = rc.read_delimited(users_file, ["user_id", "age", "gender", "occupation", "zip_code"],
                              separator="|", has_header=False, quote_char=None)
    users = rc.cast_column(users, users_file, "user_id", pl.Int64, has_header=False)
    users = rc.cast_column(users, users_file, "age", pl.Int32, has_header=False, nullable=True)
    rc.check_unique(users, users_file, ["user_id"], has_header=False)
    users = rc.drop_row_index(users)
    inter = rc.read_delimited(inter_file, ["user_id", "item_id", "rating", "timestamp"], separator="\t",
                              has_header=False, quote_char=None)
    interactions = finish_interactions(inter, inter_file, ML100K_RATING_RANGE, items, items_file, False)
    _check_users(interactions, users, inter_file, users_file)
    return Tables(interactions, items.sort("item_id"), users.sort("user_id"))


def read_ml25m(raw_dir: Path) -> Tables:
    movies_file, ratings_file = raw_dir / "movies.csv", raw_dir / "ratings.csv"
    movies = rc.read_delimited(movies_file, ["movieId", "title", "genres"], separator=",", has_header=True)
    movies = rc.cast_column(movies, movies_file, "movieId", pl.Int64)
    rc.check_unique(movies, movies_file, ["movieId"])
    title, year = split_title_year(pl.col("title"))
    items = rc.drop_row_index(movies).select(
        pl.col("movieId").alias("item_id"), title, year,
        pl.when(pl.col("genres") == "(no genres listed)").then(pl.lit("")).otherwise(pl.col("genres"))
        .str.split("|").list.eval(pl.element().filter(pl.element() != "")).alias("genres"),
    )
    links_file = raw_dir / "links.csv"
    if links_file.exists():
        links = rc.read_delimited(links_file, ["movieId", "imdbId", "tmdbId"], separator=",", has_header=True)
        links = rc.cast_column(links, links_file, "movieId", pl.Int64)
        links = rc.cast_column(links, links_file, "tmdbId", pl.Int64, nullable=True)  # empty for some films
        links = rc.drop_row_index(links).select(pl.col("movieId").alias("item_id"), pl.col("imdbId").alias("imdb_id"),
                                                pl.col("tmdbId").alias("tmdb_id"))
        items = items.join(links, on="item_id", how="left")
    empty_list = pl.lit([], dtype=pl.List(pl.String))
    tags_file = raw_dir / "tags.csv"
    if tags_file.exists():
        items = items.join(_top_tags(tags_file, items, movies_file), on="item_id", how="left").with_columns(
            pl.col("tags").fill_null(empty_list))
    genome = _top_genome_tags(raw_dir, items, movies_file)
    if genome is not None:
        items = items.join(genome, on="item_id", how="left").with_columns(pl.col("genome_tags").fill_null(empty_list))
    interactions = read_ratings_csv(ratings_file, items, movies_file)
    # ML-25M has no user file: users are the ids that rated something.
    return Tables(interactions, items.sort("item_id"), _users_from_ids(interactions))


def _scan_typed(path: Path, schema: dict[str, pl.DataType]) -> pl.LazyFrame | None:
    """`path` as a typed LazyFrame of `schema`'s columns, or None when its header lacks one of them (or the
    file is missing): the strict reader then says what is wrong."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8", "replace").strip().split(",")
    if any(col not in header for col in schema):
        return None
    # Columns outside `schema` stay text and are never built (only `schema`'s columns are selected).
    return pl.scan_csv(path, schema_overrides=schema, infer_schema=False).select(list(schema))


def _collect_or_none(query: pl.LazyFrame) -> pl.DataFrame | None:
    """The query's result, or None when the file does not parse as typed (empty, a non-numeric value, ...)."""
    try:
        return query.collect()
    except pl.exceptions.PolarsError:
        return None


_RATINGS_SCHEMA = {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64, "timestamp": pl.Float64}


def read_ratings_csv(path: Path, items: pl.DataFrame, items_file: Path) -> pl.DataFrame:
    """ratings.csv -> interactions sorted by (user_id, timestamp, item_id), with finish_interactions' checks.

    Fast path for ML-25M's 25M rows: typed scan, sort, then one pass of whole-column checks (no nulls, rating
    range, no repeated (user, item, timestamp) -- adjacent after the sort --, known films).
    """
    lf = _scan_typed(path, _RATINGS_SCHEMA)
    fast = None if lf is None else _collect_or_none(
        lf.select(pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id"), "rating",
                  pl.col("timestamp").cast(pl.Int64))  # timestamps may be written as floats; whole seconds
        .sort("user_id", "timestamp", "item_id"))
    if fast is not None and fast.height:
        low, high = ML25M_RATING_RANGE
        key = ("user_id", "timestamp", "item_id")
        ok = fast.select(
            pl.all_horizontal(pl.all().null_count() == 0)
            & pl.col("rating").is_between(low, high).all()
            & ~_repeated(key).any()
            & pl.col("item_id").is_in(items["item_id"].implode()).all()
        ).item()
        if ok:
            return fast
    # Slow path: reads the file as text; raises the DataError that names the lines (or returns the same result
    # for files only the lenient text reader accepts, e.g. numbers padded with spaces).
    ratings = rc.read_delimited(path, ["userId", "movieId", "rating", "timestamp"], separator=",", has_header=True)
    return finish_interactions(ratings, path, ML25M_RATING_RANGE, items, items_file, True,
                               user="userId", item="movieId")


def _repeated(keys: Sequence[str]) -> pl.Expr:
    """Rows whose key equals the previous row's: in a frame sorted by `keys`, exactly the repeats."""
    return pl.all_horizontal(pl.col(c) == pl.col(c).shift(1) for c in keys)


def _has_repeats(df: pl.DataFrame, keys: Sequence[str]) -> bool:
    """Whether two rows share a key. Files sorted by the key (ML-25M's genome scores are) need no sort:
    strictly increasing keys are unique; a hash of 15M (movieId, tagId) structs costs seconds and GBs."""
    increasing = pl.lit(False)
    for i in reversed(range(len(keys))):
        equal_before = pl.all_horizontal([pl.lit(True), *(pl.col(c) == pl.col(c).shift(1) for c in keys[:i])])
        increasing = (equal_before & (pl.col(keys[i]) > pl.col(keys[i]).shift(1))) | increasing
    if df.select(increasing.fill_null(True).all()).item():
        return False
    return df.select(keys).sort(keys).select(_repeated(keys).any()).item()


_GENOME_SCHEMA = {"movieId": pl.Int64, "tagId": pl.Int64, "relevance": pl.Float64}


def _top_genome_tags(raw_dir: Path, items: pl.DataFrame, movies_file: Path) -> pl.DataFrame | None:
    """Each film's GENOME_TOP_N most relevant genome tags (relevance >= GENOME_MIN_RELEVANCE), by relevance
    then tag name; None when the folder has no tag genome."""
    tags_file, scores_file = raw_dir / "genome-tags.csv", raw_dir / "genome-scores.csv"
    if not tags_file.exists() and not scores_file.exists():
        return None
    for present, absent in ((tags_file, scores_file), (scores_file, tags_file)):
        if not absent.exists():
            raise DataError(str(absent), f"file not found; the tag genome needs both {absent.name} and {present.name}")
    tags = rc.read_delimited(tags_file, ["tagId", "tag"], separator=",", has_header=True)
    tags = rc.cast_column(tags, tags_file, "tagId", pl.Int64)
    tags = rc.cast_column(tags, tags_file, "tag", pl.String)  # an empty tag name is an error
    rc.check_unique(tags, tags_file, ["tagId"])
    tags = rc.drop_row_index(tags).select("tagId", "tag")
    scores = _read_genome_scores(scores_file, items, movies_file, tags, tags_file)
    return (scores.filter(pl.col("relevance") >= GENOME_MIN_RELEVANCE)
            .join(tags, on="tagId")
            .sort(["movieId", "relevance", "tag"], descending=[False, True, False])
            .group_by("movieId", maintain_order=True)
            .agg(pl.col("tag").head(GENOME_TOP_N).alias("genome_tags"))
            .rename({"movieId": "item_id"}))


def _read_genome_scores(path: Path, items: pl.DataFrame, movies_file: Path, tags: pl.DataFrame,
                        tags_file: Path) -> pl.DataFrame:
    """genome-scores.csv checked: numbers, relevance in [0, 1], one score per (movieId, tagId), known ids."""
    lf = _scan_typed(path, _GENOME_SCHEMA)
    fast = None if lf is None else _collect_or_none(lf)
    if fast is not None and fast.height:
        ok = fast.select(
            pl.all_horizontal(pl.all().null_count() == 0)
            & pl.col("relevance").is_between(0.0, 1.0).all()
            & pl.col("movieId").is_in(items["item_id"].implode()).all()
            & pl.col("tagId").is_in(tags["tagId"].implode()).all()
        ).item()
        if ok and not _has_repeats(fast, ["movieId", "tagId"]):
            return fast
    # Slow path: the row-level checks name the lines (see read_ratings_csv).
    scores = rc.read_delimited(path, list(_GENOME_SCHEMA), separator=",", has_header=True)
    for col, dtype in _GENOME_SCHEMA.items():
        scores = rc.cast_column(scores, path, col, dtype)
    rc.check_range(scores, path, "relevance", 0.0, 1.0)
    rc.check_unique(scores, path, ["movieId", "tagId"])
    rc.check_references(scores, path, "movieId", items["item_id"], movies_file)
    rc.check_references(scores, path, "tagId", tags["tagId"], tags_file)
    return rc.drop_row_index(scores).select(list(_GENOME_SCHEMA))


def _top_tags(tags_file: Path, items: pl.DataFrame, movies_file: Path) -> pl.DataFrame:
    """Each film's most used tags (lower-cased, by count then name), at most MAX_TAGS_PER_ITEM."""
    tags = rc.read_delimited(tags_file, ["userId", "movieId", "tag", "timestamp"], separator=",", has_header=True)
    tags = rc.cast_column(tags, tags_file, "movieId", pl.Int64)
    rc.check_references(tags, tags_file, "movieId", items["item_id"], movies_file)
    counts = (rc.drop_row_index(tags).rename({"movieId": "item_id"})
              .with_columns(pl.col("tag").str.strip_chars().str.to_lowercase())
              .filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
              .group_by("item_id", "tag").len()
              .sort(["item_id", "len", "tag"], descending=[False, True, False]))
    return counts.group_by("item_id", maintain_order=True).agg(pl.col("tag").head(MAX_TAGS_PER_ITEM).alias("tags"))
