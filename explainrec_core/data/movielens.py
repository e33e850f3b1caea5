"""MovieLens readers: raw files -> the normalised tables (interactions, items, users).

Formats:
- `ml-100k`, either layout of the same data:
  * GroupLens' original files `u.data` (tab, no header), `u.item` and `u.user` (pipe, no header, Latin-1),
  * RecBole atomic files `ml-100k.inter/.item/.user` (tab, `name:type` header, UTF-8), which is what
    `explainrec data fetch ml-100k` downloads.
- `ml-25m` (also ml-20m/ml-32m, same layout): `ratings.csv`, `movies.csv` and, when present, `tags.csv`
  and `links.csv`, with their real quirks: quoted titles containing commas, titles without a year,
  "(no genres listed)", empty tmdbId.
"""

from __future__ import annotations

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
    tags_file = raw_dir / "tags.csv"
    if tags_file.exists():
        items = items.join(_top_tags(tags_file, items, movies_file), on="item_id", how="left").with_columns(
            pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    ratings = rc.read_delimited(ratings_file, ["userId", "movieId", "rating", "timestamp"], separator=",",
                                has_header=True)
    interactions = finish_interactions(ratings, ratings_file, ML25M_RATING_RANGE, items, movies_file, True,
                                       user="userId", item="movieId")
    # ML-25M has no user file: users are the ids that rated something.
    return Tables(interactions, items.sort("item_id"), _users_from_ids(interactions))


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
