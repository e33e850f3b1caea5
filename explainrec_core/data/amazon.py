"""Amazon review readers: raw review + metadata files -> the normalised tables (interactions, items, users).

Formats (`raw_dir` holds one category's two files, plain or gzipped):
- `amazon-2014` (McAuley et al., SNAP): reviews `reviews_<Category>_5.json(.gz)` (or the full
  `reviews_<Category>.json(.gz)`), strict JSON lines: reviewerID, asin, reviewerName, helpful [helpful votes,
  total votes], reviewText, overall, summary, unixReviewTime (seconds), reviewTime. Metadata
  `meta_<Category>.json(.gz)`: one Python dict literal per line (single quotes; not JSON), parsed with
  `ast.literal_eval`: asin, title, price (float), imUrl, related, salesRank, categories [[path], ...], brand,
  description. Many items, especially in Movies & TV, have no title.
- `amazon-2018` (Ni et al.): reviews `<Category>_5.json(.gz)` (or the full `<Category>.json(.gz)`), JSON lines:
  overall, verified, reviewTime, reviewerID, asin, style, reviewerName, reviewText, summary, unixReviewTime,
  vote (a string with thousands separators, "1,234"; absent when nobody voted), image. Metadata
  `meta_<Category>.json(.gz)`, JSON lines with duplicated asins, HTML in titles and categories
  (`<span class="a-size-medium">`, `&amp;`), category and description lists, brand, price ("$12.99", "",
  "$3.50 - $10.00" or page junk), date.
- `amazon-2023` (Hou et al., McAuley lab): reviews `<Category>.jsonl(.gz)`: rating, title, text, images, asin,
  parent_asin, user_id, timestamp (MILLISECONDS), helpful_vote, verified_purchase. Metadata
  `meta_<Category>.jsonl(.gz)`: main_category, title, average_rating, rating_number, features, description,
  price (float or null), images, videos, store, categories, details (dict), parent_asin, bought_together.

Decisions:
- One category per folder: a folder with several categories' review files, or two review files for one category
  (5-core and full, .json and .json.gz), is an error listing them. The metadata file is required (titles are
  what the LLM reads).
- Ids: Amazon ids are strings. user_id and item_id are dense int64 ids from 1, assigned in sorted order of the
  original id over the reviews kept, so the same files always give the same ids. The original ids stay as
  columns: users.reviewer_id, items.asin (2014, 2018) or items.parent_asin (2023).
- 2023 items are products (parent_asin): reviews of a colour/size variant (asin) count for their parent.
- Interactions: user_id, item_id, rating (1..5), timestamp (Unix seconds; 2023's milliseconds floor-divided by
  1000), review_text, summary (2023: the review title), helpful_votes (2014: helpful[0]; 2018: vote, absent = 0;
  2023: helpful_vote), verified (2018, 2023).
- Duplicate reviews (same reviewer, item, timestamp), which the real dumps contain: an exact copy (same rating,
  text, summary, votes) is dropped and counted (`duplicate_reviews_dropped`); one that differs keeps the first in
  file order and is counted separately (`conflicting_reviews_dropped`). MovieLens' readers fail instead, but
  there a duplicate means a broken file, here it is a known property of the scraped data.
- Items are the reviewed items. Metadata of items nobody reviewed is dropped (`metadata_items_unreviewed`; the
  metadata files cover far more items than the 5-core reviews). A reviewed item missing from the metadata is
  kept with a null title, empty genres and null extras, and counted (`items_without_metadata`;
  `items_without_title` also counts items whose metadata has no title). A duplicated metadata key keeps its
  first line (`metadata_duplicates_dropped`).
- Item columns: item_id, title (tags stripped, HTML entities unescaped, whitespace collapsed), year (only from
  an explicit release date: 2018 `date`, 2023 details["Release date"]; else null), genres (the category lists
  flattened, cleaned, deduplicated in order), asin | parent_asin, brand (2023: store), description (joined,
  capped at DESCRIPTION_MAX_CHARS), price (float; a range gives its lower bound; unparseable text -> null),
  main_category (2018 main_cat, 2023 main_category). 2023's average_rating and rating_number are dropped: they
  summarise reviews from the whole period, test period included.
- Users: user_id, reviewer_id, and reviewer_name (2014, 2018: the name on the user's latest named review).
- Bad lines: see `jsonlines`; `bad_lines="skip"` counts skipped lines in `bad_lines_skipped_{reviews,metadata}`.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from explainrec_core.data import jsonlines as jl
from explainrec_core.data.jsonlines import LINE, TEXT, TEXT_LIST, BadLines
from explainrec_core.data.movielens import Tables
from explainrec_core.errors import DataError

RATING_RANGE = (1.0, 5.0)
DESCRIPTION_MAX_CHARS = 1000
_KEY = ("reviewer_id", "item_key", "timestamp")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
# "June 23, 2009", "Jun. 23, 2009", "23 June 2009", "June 2009", "2009", "2009-06-23"
_DATE_YEAR = re.compile(r"^(?:\d{1,2}\s+)?(?:[A-Za-z]+\.?,?\s+)?(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?(\d{4})"
                        r"(?:-\d{2}-\d{2})?$")
_PRICE = re.compile(r"^\s*(?:from\s+)?\$?\s*(\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class AmazonTables(Tables):
    """The normalised tables plus what reading dropped or filled in (see the module docstring)."""

    read_stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Layout:
    reviews: re.Pattern  # matches a review file name; group "cat" is the category
    meta: str  # metadata file name for a category, without the .gz
    shown: str  # the review file names, as people know them


_LAYOUTS = {
    "amazon-2014": _Layout(re.compile(r"^reviews_(?P<cat>.+?)(?:_5)?\.json(?:\.gz)?$"), "meta_{}.json",
                           "reviews_<Category>_5.json(.gz)"),
    # The 2018 and 2023 review files have no prefix: skip metadata and 2014 files so a wrong format says so.
    "amazon-2018": _Layout(re.compile(r"^(?!meta_|reviews_)(?P<cat>.+?)(?:_5)?\.json(?:\.gz)?$"), "meta_{}.json",
                           "<Category>_5.json(.gz)"),
    "amazon-2023": _Layout(re.compile(r"^(?!meta_)(?P<cat>.+?)\.jsonl(?:\.gz)?$"), "meta_{}.jsonl",
                           "<Category>.jsonl(.gz)"),
}


def find_files(raw_dir: Path, fmt: str) -> tuple[Path, Path]:
    """(reviews file, metadata file) of the one category in `raw_dir`."""
    layout = _LAYOUTS[fmt]
    names = sorted(p.name for p in raw_dir.iterdir() if p.is_file())
    by_cat: dict[str, list[str]] = {}
    for name in names:
        if m := layout.reviews.match(name):
            by_cat.setdefault(m["cat"], []).append(name)
    if not by_cat:
        raise DataError(str(raw_dir), f"no {fmt} review file ({layout.shown}); files here: {names[:20]}")
    if len(by_cat) > 1:
        raise DataError(str(raw_dir), f"review files of several categories {sorted(by_cat)}: keep one category's "
                        "reviews and metadata per folder (data.raw_dir)")
    (cat, reviews), = by_cat.items()
    if len(reviews) > 1:
        raise DataError(str(raw_dir), f"several review files for category {cat!r} {reviews}: keep one "
                        "(e.g. only the 5-core file)")
    meta = [n for n in (layout.meta.format(cat), layout.meta.format(cat) + ".gz") if n in names]
    if len(meta) != 1:
        problem = "no metadata file" if not meta else f"two metadata files {meta}: keep one,"
        raise DataError(str(raw_dir), f"{problem} for category {cat!r} (expected {layout.meta.format(cat)}"
                        "(.gz) beside the reviews)")
    return raw_dir / reviews[0], raw_dir / meta[0]


def read_amazon_2014(raw_dir: Path, *, bad_lines: BadLines = "fail") -> AmazonTables:
    reviews_file, meta_file = find_files(raw_dir, "amazon-2014")
    reviews, skipped = _reviews_2014(reviews_file, bad_lines)
    meta_fields = {"asin": TEXT, "title": TEXT, "price": TEXT, "categories": TEXT_LIST, "brand": TEXT,
                   "description": TEXT_LIST}
    meta, meta_skipped = jl.read_json_lines(meta_file, meta_fields, bad_lines=bad_lines, python_literals=True)
    jl.require(meta, meta_file, ["asin"])
    meta = meta.select(pl.col("asin").alias("item_key"), "title", pl.col("categories").alias("genres"), "brand",
                       "description", "price", pl.lit(None, pl.String).alias("date"), LINE)
    return _assemble(reviews, meta, meta_file, "asin", {"bad_lines_skipped_reviews": skipped,
                                                        "bad_lines_skipped_metadata": meta_skipped})


def read_amazon_2018(raw_dir: Path, *, bad_lines: BadLines = "fail") -> AmazonTables:
    reviews_file, meta_file = find_files(raw_dir, "amazon-2018")
    reviews, skipped = _reviews_2018(reviews_file, bad_lines)
    meta_fields = {"asin": TEXT, "title": TEXT, "category": TEXT_LIST, "brand": TEXT, "description": TEXT_LIST,
                   "price": TEXT, "date": TEXT, "main_cat": TEXT}
    meta, meta_skipped = jl.read_json_lines(meta_file, meta_fields, bad_lines=bad_lines)
    jl.require(meta, meta_file, ["asin"])
    meta = meta.select(pl.col("asin").alias("item_key"), "title", pl.col("category").alias("genres"), "brand",
                       "description", "price", "date", pl.col("main_cat").alias("main_category"), LINE)
    return _assemble(reviews, meta, meta_file, "asin", {"bad_lines_skipped_reviews": skipped,
                                                        "bad_lines_skipped_metadata": meta_skipped})


def read_amazon_2023(raw_dir: Path, *, bad_lines: BadLines = "fail") -> AmazonTables:
    reviews_file, meta_file = find_files(raw_dir, "amazon-2023")
    reviews, skipped = _reviews_2023(reviews_file, bad_lines)
    meta_fields = {"parent_asin": TEXT, "title": TEXT, "categories": TEXT_LIST, "store": TEXT,
                   "description": TEXT_LIST, "price": TEXT, "details": TEXT, "main_category": TEXT}
    meta, meta_skipped = jl.read_json_lines(meta_file, meta_fields, bad_lines=bad_lines)
    jl.require(meta, meta_file, ["parent_asin"])
    meta = meta.select(pl.col("parent_asin").alias("item_key"), "title", pl.col("categories").alias("genres"),
                       pl.col("store").alias("brand"), "description", "price",
                       pl.col("details").str.json_path_match("$['Release date']").alias("date"), "main_category",
                       LINE)
    return _assemble(reviews, meta, meta_file, "parent_asin", {"bad_lines_skipped_reviews": skipped,
                                                               "bad_lines_skipped_metadata": meta_skipped})


def read_reviews(path: Path, fmt: str, *, bad_lines: BadLines = "fail") -> tuple[pl.DataFrame, int]:
    """One review file of format `fmt` alone (no metadata; e.g. new reviews arriving in the inbox): the standard
    review columns (reviewer_id, item_key = the asin / parent_asin, rating, timestamp in seconds, review_text,
    summary, helpful_votes, verified where the format has it, reviewer_name where it has it) and the line number;
    and how many bad lines were skipped. Checked like ingest's reviews (DataError names file, field, lines)."""
    readers = {"amazon-2014": _reviews_2014, "amazon-2018": _reviews_2018, "amazon-2023": _reviews_2023}
    if fmt not in readers:
        raise ValueError(f"not an Amazon format: {fmt!r}")
    return readers[fmt](path, bad_lines)


def _reviews_2014(path: Path, bad_lines: BadLines) -> tuple[pl.DataFrame, int]:
    fields = {"reviewerID": TEXT, "asin": TEXT, "reviewerName": TEXT, "helpful": TEXT_LIST, "reviewText": TEXT,
              "overall": TEXT, "summary": TEXT, "unixReviewTime": TEXT}
    df, skipped = jl.read_json_lines(path, fields, bad_lines=bad_lines)
    df = df.with_columns(pl.col("helpful").list.first())  # [helpful votes, total votes]
    df = _common_review_checks(df, path, "reviewerID", "asin", "overall", "unixReviewTime", votes="helpful")
    return df.select(*_std_reviews("reviewerID", "asin", "overall", "unixReviewTime", "reviewText", "summary",
                                   "helpful"), pl.col("reviewerName").alias("reviewer_name"), LINE), skipped


def _reviews_2018(path: Path, bad_lines: BadLines) -> tuple[pl.DataFrame, int]:
    fields = {"reviewerID": TEXT, "asin": TEXT, "reviewerName": TEXT, "reviewText": TEXT, "overall": TEXT,
              "summary": TEXT, "unixReviewTime": TEXT, "vote": TEXT, "verified": TEXT}
    df, skipped = jl.read_json_lines(path, fields, bad_lines=bad_lines)
    df = _common_review_checks(df, path, "reviewerID", "asin", "overall", "unixReviewTime", votes="vote",
                               verified="verified")
    return df.select(*_std_reviews("reviewerID", "asin", "overall", "unixReviewTime", "reviewText", "summary",
                                   "vote"), pl.col("verified"), pl.col("reviewerName").alias("reviewer_name"),
                     LINE), skipped


def _reviews_2023(path: Path, bad_lines: BadLines) -> tuple[pl.DataFrame, int]:
    fields = {"user_id": TEXT, "parent_asin": TEXT, "rating": TEXT, "timestamp": TEXT, "title": TEXT, "text": TEXT,
              "helpful_vote": TEXT, "verified_purchase": TEXT}
    df, skipped = jl.read_json_lines(path, fields, bad_lines=bad_lines)
    df = _common_review_checks(df, path, "user_id", "parent_asin", "rating", "timestamp", votes="helpful_vote",
                               verified="verified_purchase")
    # Milliseconds: 1e11 ms is 1973, before any Amazon review; smaller values are seconds given by mistake.
    jl.check_range(df, path, "timestamp", 10**11, 10**14, " (amazon-2023 timestamps are Unix milliseconds)")
    df = df.with_columns(pl.col("timestamp") // 1000)
    return df.select(*_std_reviews("user_id", "parent_asin", "rating", "timestamp", "text", "title",
                                   "helpful_vote"), pl.col("verified_purchase").alias("verified"), LINE), skipped


def _common_review_checks(df: pl.DataFrame, path: Path, user: str, item: str, rating: str, timestamp: str, *,
                          votes: str, verified: str | None = None) -> pl.DataFrame:
    jl.require(df, path, [user, item])
    df = jl.cast_field(df, path, rating, pl.Float64, required=True)
    jl.check_range(df, path, rating, *RATING_RANGE)
    df = jl.cast_field(df, path, timestamp, pl.Int64, required=True)
    df = jl.cast_field(df, path, votes, pl.Int64, required=False, clean=lambda e: e.str.replace_all(",", ""))
    if verified:
        df = jl.cast_field(df, path, verified, pl.Boolean, required=False)
    return df


def _std_reviews(user: str, item: str, rating: str, timestamp: str, text: str, summary: str,
                 votes: str) -> list[pl.Expr]:
    return [pl.col(user).alias("reviewer_id"), pl.col(item).alias("item_key"), pl.col(rating).alias("rating"),
            pl.col(timestamp).alias("timestamp"), pl.col(text).alias("review_text"),
            pl.col(summary).alias("summary"), pl.col(votes).fill_null(0).alias("helpful_votes")]


def _assemble(reviews: pl.DataFrame, meta: pl.DataFrame, meta_file: Path, key_name: str,
              stats: dict[str, int]) -> AmazonTables:
    content = [c for c in reviews.columns if c not in (LINE, "reviewer_name")]
    n = reviews.height
    reviews = reviews.unique(subset=content, keep="first", maintain_order=True)
    stats["duplicate_reviews_dropped"] = n - reviews.height
    n = reviews.height
    reviews = reviews.unique(subset=list(_KEY), keep="first", maintain_order=True)
    stats["conflicting_reviews_dropped"] = n - reviews.height

    user_ids = _dense_ids(reviews, "reviewer_id", "user_id")
    item_ids = _dense_ids(reviews, "item_key", "item_id")
    extras = [c for c in ("review_text", "summary", "helpful_votes", "verified") if c in reviews.columns]
    interactions = (reviews.join(user_ids, on="reviewer_id").join(item_ids, on="item_key")
                    .select("user_id", "item_id", "rating", "timestamp", *extras)
                    .sort("user_id", "timestamp", "item_id"))
    users = user_ids.select("user_id", "reviewer_id")
    if "reviewer_name" in reviews.columns:
        names = (reviews.sort("timestamp", LINE).group_by("reviewer_id")
                 .agg(pl.col("reviewer_name").drop_nulls().last()))
        users = users.join(names, on="reviewer_id", how="left")

    n = meta.height
    meta = meta.unique(subset="item_key", keep="first", maintain_order=True)
    stats["metadata_duplicates_dropped"] = n - meta.height
    reviewed = meta.filter(pl.col("item_key").is_in(item_ids["item_key"].implode()))
    stats["metadata_items_unreviewed"] = meta.height - reviewed.height
    items = item_ids.join(_clean_meta(reviewed), on="item_key", how="left").sort("item_id")
    stats["items_without_metadata"] = item_ids.height - reviewed.height
    stats["items_without_title"] = items["title"].null_count()
    items = items.with_columns(pl.col("genres").fill_null(pl.lit([], dtype=TEXT_LIST)))
    extra_items = [c for c in ("main_category",) if c in items.columns]
    items = items.select("item_id", "title", "year", "genres", pl.col("item_key").alias(key_name), "brand",
                         "description", "price", *extra_items)
    return AmazonTables(interactions, items, users.sort("user_id"), read_stats=stats)


def _dense_ids(reviews: pl.DataFrame, original: str, name: str) -> pl.DataFrame:
    """Ids 1..n in sorted order of the original string ids: the same files always give the same ids."""
    return (reviews.select(pl.col(original).unique().sort())
            .with_row_index(name, offset=1).with_columns(pl.col(name).cast(pl.Int64)))


def _clean_meta(meta: pl.DataFrame) -> pl.DataFrame:
    """Titles, genres, descriptions, prices and years, cleaned in Python: only reviewed items reach here."""
    genres = [_dedup(_clean(g) for g in gs) if gs is not None else [] for gs in meta["genres"].to_list()]
    descriptions = []
    for parts in meta["description"].to_list():
        text = _clean(" ".join(parts)) if parts else None
        descriptions.append(text[:DESCRIPTION_MAX_CHARS].rstrip() if text else None)
    return meta.select(
        "item_key",
        pl.Series("title", [_clean(t) for t in meta["title"].to_list()], dtype=pl.String),
        pl.Series("year", [_year(d) for d in meta["date"].to_list()], dtype=pl.Int32),
        pl.Series("genres", genres, dtype=TEXT_LIST),
        pl.Series("brand", [_clean(b) for b in meta["brand"].to_list()], dtype=pl.String),
        pl.Series("description", descriptions, dtype=pl.String),
        pl.Series("price", [_price(p) for p in meta["price"].to_list()], dtype=pl.Float64),
        *([pl.col("main_category")] if "main_category" in meta.columns else []),
    )


def _clean(text: str | None) -> str | None:
    """Strip HTML tags, unescape entities (`&amp;` -> `&`), collapse whitespace; empty -> None."""
    if text is None:
        return None
    if "<" in text:
        text = _TAG.sub(" ", text)  # tags first: an escaped "&lt;b&gt;" in the source is meant as literal text
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split()) or None


def _dedup(values) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _year(date: str | None) -> int | None:
    """The year of an explicit date ("June 23, 2009", "23 June 2009", "2009"); anything else -> None."""
    m = _DATE_YEAR.match(date.strip()) if date else None
    year = int(m[1]) if m else None
    return year if year and 1870 <= year <= dt.date.today().year + 1 else None


def _price(text: str | None) -> float | None:
    """"$12.99" -> 12.99, "$3.50 - $10.00" -> 3.5 (lower bound), "" / "None" / page junk -> None."""
    m = _PRICE.match(text) if text else None
    return float(m[1].replace(",", "")) if m else None
