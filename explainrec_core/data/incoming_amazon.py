"""New Amazon reviews in the inbox: review files of the dataset's own format, mapped onto the project's ids.

An incoming Amazon file is a review file like the raw one (`amazon-2014` / `amazon-2018` / `amazon-2023` JSON
lines, plain or gzipped; no metadata file: only reviews of items already in the catalogue can be described, so a
review of an unknown asin rejects the whole file). It is read and checked by the same reader as ingest
(`amazon.read_reviews`; a line that does not parse fails the file, whatever `data.bad_lines` says, because a
quarantined file loses nothing and a skipped line would).

Ids: items by their asin (2023: parent_asin) in the items table. Reviewers by their original id: one known to the
users table or to an earlier accepted file keeps its id; new reviewers get the next free ids in sorted order of
their original id, so processing the same files in the same order always gives the same ids. The accepted rows
keep `reviewer_id` (and the review text columns), from which ingest adds the new users (`incoming.with_accepted`).
Repeated reviews inside a file follow ingest's rule: exact copies dropped, for one (reviewer, item, timestamp)
with different content the first line kept.

`replay_lines` writes held-out interactions back in the format (the simulated stream of `explainrec replay`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from explainrec_core.data import amazon
from explainrec_core.data.jsonlines import LINE
from explainrec_core.errors import DataError

FORMATS = ("amazon-2014", "amazon-2018", "amazon-2023")
ITEM_KEY = {"amazon-2014": "asin", "amazon-2018": "asin", "amazon-2023": "parent_asin"}  # items table = file field
USER_FIELD = {"amazon-2014": "reviewerID", "amazon-2018": "reviewerID", "amazon-2023": "user_id"}
EXTRAS = ("review_text", "summary", "helpful_votes", "verified")


def read_incoming_reviews(path: Path, fmt: str, items: pl.DataFrame, items_file: Path,
                          known_users: pl.DataFrame) -> pl.DataFrame:
    """The file's reviews as interaction rows (user_id, item_id, rating, timestamp, the review columns, reviewer_id).

    known_users: (user_id, reviewer_id) of every reviewer with an id already (users table and accepted files).
    DataError (naming the file, field, lines and values) on a bad line or a review of an item not in `items`.
    """
    key = ITEM_KEY[fmt]
    if key not in items.columns:
        raise DataError(str(items_file), f"the items table has no {key!r} column: is data.format ({fmt}) the "
                        "format the project was ingested with?")
    reviews, _ = amazon.read_reviews(path, fmt, bad_lines="fail")
    catalogue = items.select(pl.col(key).alias("item_key"), "item_id")
    unknown = reviews.join(catalogue, on="item_key", how="anti").sort(LINE)
    if unknown.height:
        raise DataError(str(path), f"{unknown.height} review(s) of items not in the catalogue ({items_file}): an "
                        "item without metadata cannot be described to the model; add it to the raw metadata and "
                        "re-ingest first", column=key, rows=unknown[LINE].to_list(),
                        values=unknown["item_key"].to_list())
    content = [c for c in reviews.columns if c not in (LINE, "reviewer_name")]
    reviews = (reviews.sort(LINE).unique(subset=content, keep="first", maintain_order=True)
               .unique(subset=["reviewer_id", "item_key", "timestamp"], keep="first", maintain_order=True))
    ids = user_ids(reviews["reviewer_id"], known_users)
    extras = [c for c in EXTRAS if c in reviews.columns]
    return (reviews.join(catalogue, on="item_key").join(ids, on="reviewer_id")
            .select("user_id", "item_id", "rating", "timestamp", *extras, "reviewer_id")
            .sort("user_id", "timestamp", "item_id"))


def user_ids(reviewers: pl.Series, known_users: pl.DataFrame) -> pl.DataFrame:
    """(reviewer_id, user_id) for `reviewers`: known ones keep theirs, new ones get the next free ids in sorted
    order of their original id."""
    known = known_users.select("reviewer_id", pl.col("user_id").cast(pl.Int64)).unique("reviewer_id", keep="first")
    wanted = pl.DataFrame({"reviewer_id": reviewers}).unique()
    new = wanted.join(known, on="reviewer_id", how="anti").sort("reviewer_id")
    start = int(known["user_id"].max() or 0) + 1
    new = new.with_row_index("user_id", offset=start).with_columns(pl.col("user_id").cast(pl.Int64))
    return pl.concat([wanted.join(known, on="reviewer_id"), new.select("reviewer_id", "user_id")])


def replay_lines(rows: pl.DataFrame, fmt: str, users: pl.DataFrame, items: pl.DataFrame) -> Iterator[str]:
    """Interaction rows (with their review columns) as review lines of `fmt`, the ids mapped back to the originals."""
    key = ITEM_KEY[fmt]
    named = (rows.join(users.select("user_id", "reviewer_id"), on="user_id", how="left")
             .join(items.select("item_id", pl.col(key).alias("item_key")), on="item_id", how="left"))
    missing = named.filter(pl.col("reviewer_id").is_null() | pl.col("item_key").is_null())
    if missing.height:
        raise DataError("stream_holdout", "held-out ratings whose user or item has no original Amazon id",
                        values=missing.select("user_id", "item_id").rows()[:5])
    for r in named.iter_rows(named=True):
        text, summary, votes = r.get("review_text"), r.get("summary"), int(r.get("helpful_votes") or 0)
        if fmt == "amazon-2023":
            line = {"user_id": r["reviewer_id"], "parent_asin": r["item_key"], "asin": r["item_key"],
                    "rating": r["rating"], "timestamp": int(r["timestamp"]) * 1000, "title": summary,
                    "text": text, "helpful_vote": votes, "verified_purchase": r.get("verified")}
        else:
            line = {"reviewerID": r["reviewer_id"], "asin": r["item_key"], "overall": r["rating"],
                    "unixReviewTime": int(r["timestamp"]), "reviewText": text, "summary": summary}
            if fmt == "amazon-2014":
                line["helpful"] = [votes, votes]
            else:
                line["vote"] = str(votes) if votes else None
                line["verified"] = r.get("verified")
        yield json.dumps({k: v for k, v in line.items() if v is not None}, ensure_ascii=False)
