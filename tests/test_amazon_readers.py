"""Amazon review readers (2014, 2018, 2023): small files in the real formats, with each format's real quirks."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from explainrec_core.cli import app
from explainrec_core.config import load_config
from explainrec_core.data.ingest import ingest, read_tables
from explainrec_core.errors import ConfigError, DataError
from tests.conftest import read_table, write_params


def write_lines(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


# --- amazon-2014: strict-JSON reviews, Python-literal metadata ------------------------------------------------

REVIEWS_2014 = [
    {"reviewerID": "A2", "asin": "B00005JNBQ", "reviewerName": "Abby", "helpful": [2, 3],
     "reviewText": "A masterpiece, caf\u00e9 scene included.", "overall": 5.0, "summary": "Essential",
     "unixReviewTime": 1203984000, "reviewTime": "02 26, 2008"},
    {"reviewerID": "A1", "asin": "0005019281", "helpful": [0, 0], "reviewText": "Kids loved it.",  # no name
     "overall": 4.0, "summary": "Fun", "unixReviewTime": 1203984000, "reviewTime": "02 26, 2008"},
    {"reviewerID": "A1", "asin": "B00005JNBQ", "reviewerName": "Al", "helpful": [1, 1], "reviewText": "Heavy.",
     "overall": 3.0, "summary": "Long", "unixReviewTime": 1300000000, "reviewTime": "03 13, 2011"},
    {"reviewerID": "A2", "asin": "0005019281", "reviewerName": "Abigail", "helpful": [0, 4], "reviewText": "No.",
     "overall": 1.0, "summary": "Dull", "unixReviewTime": 1100000000, "reviewTime": "11 9, 2004"},
    {"reviewerID": "A3", "asin": "B000MISSING", "reviewerName": "Carl", "helpful": [0, 0], "reviewText": "Ok.",
     "overall": 2.0, "summary": "Meh", "unixReviewTime": 1250000000, "reviewTime": "08 11, 2009"},
]
META_2014 = [
    {"asin": "0005019281", "title": "Adventures in Odyssey: The Great Escape", "price": 8.99,
     "imUrl": "http://ecx.images-amazon.com/images/I/51QY79CDEML.jpg",
     "related": {"also_bought": ["B000002ERU"], "bought_together": ["B00005JNBQ"]},
     "salesRank": {"Movies & TV": 376041},
     "categories": [["Movies & TV", "Movies"], ["Movies & TV", "Kids & Family"]], "brand": "Focus on the Family"},
    {"asin": "B00005JNBQ", "title": "Schindler's List", "salesRank": {"Movies & TV": 1200},
     "categories": [["Movies & TV", "Movies"], ["Movies & TV", "Drama"]],
     "description": "Steven Spielberg's <i>Oscar</i> winner."},
    {"asin": "B0UNREVIEWED", "categories": [["Movies & TV"]]},
]


@pytest.fixture
def raw2014(tmp_path) -> Path:
    raw = tmp_path / "raw2014"
    raw.mkdir()
    # The exact copy of the first review is a real quirk of the scraped dumps.
    write_lines(raw / "reviews_Movies_and_TV_5.json.gz", [json.dumps(r) for r in [*REVIEWS_2014, REVIEWS_2014[0]]])
    # The 2014 metadata was written with Python's str(dict): single quotes, double quotes around "Schindler's".
    write_lines(raw / "meta_Movies_and_TV.json.gz", [repr(m) for m in META_2014])
    return raw


def test_amazon_2014(raw2014, tmp_path):
    assert "'asin': '0005019281'" in gzip.decompress((raw2014 / "meta_Movies_and_TV.json.gz").read_bytes()).decode()
    stats = ingest("amazon-2014", raw2014, tmp_path / "out")
    inter, items, users = (read_table(tmp_path / "out", n) for n in ("interactions", "items", "users"))
    # Dense ids in sorted order of the original ids: "0005019281" < "B00005JNBQ" < "B000MISSING"; A1 < A2 < A3.
    assert items.select("item_id", "asin").rows() == [(1, "0005019281"), (2, "B00005JNBQ"), (3, "B000MISSING")]
    assert users.rows() == [(1, "A1", "Al"), (2, "A2", "Abby"), (3, "A3", "Carl")]  # latest named review
    assert inter.columns == ["user_id", "item_id", "rating", "timestamp", "review_text", "summary", "helpful_votes"]
    assert inter.select("user_id", "item_id", "rating", "timestamp", "helpful_votes").rows() == [
        (1, 1, 4.0, 1203984000, 0), (1, 2, 3.0, 1300000000, 1),
        (2, 1, 1.0, 1100000000, 0), (2, 2, 5.0, 1203984000, 2),  # helpful [2, 3] -> 2 helpful votes
        (3, 3, 2.0, 1250000000, 0),
    ]
    texts = inter.filter(pl.col("user_id") == 2)["review_text"].to_list()
    assert texts == ["No.", "A masterpiece, caf\u00e9 scene included."]
    odyssey, schindler, missing = items.iter_rows(named=True)
    assert odyssey["title"] == "Adventures in Odyssey: The Great Escape" and odyssey["price"] == 8.99
    assert odyssey["genres"] == ["Movies & TV", "Movies", "Kids & Family"]  # paths flattened, deduplicated
    assert odyssey["brand"] == "Focus on the Family" and odyssey["year"] is None
    assert schindler["title"] == "Schindler's List" and schindler["genres"] == ["Movies & TV", "Movies", "Drama"]
    assert schindler["description"] == "Steven Spielberg's Oscar winner." and schindler["price"] is None
    assert missing["title"] is None and missing["genres"] == [] and missing["brand"] is None
    assert stats["n_interactions"] == 5 and stats["n_items"] == 3
    assert {k: stats[k] for k in ("duplicate_reviews_dropped", "conflicting_reviews_dropped",
                                  "items_without_metadata", "items_without_title", "metadata_items_unreviewed",
                                  "metadata_duplicates_dropped", "bad_lines_skipped_reviews")} == {
        "duplicate_reviews_dropped": 1, "conflicting_reviews_dropped": 0, "items_without_metadata": 1,
        "items_without_title": 1, "metadata_items_unreviewed": 1, "metadata_duplicates_dropped": 0,
        "bad_lines_skipped_reviews": 0}


def test_amazon_2014_same_review_key_different_content_keeps_the_first(raw2014):
    changed = {**REVIEWS_2014[0], "overall": 2.0, "reviewText": "Changed my mind."}
    write_lines(raw2014 / "reviews_Movies_and_TV_5.json.gz", [json.dumps(r) for r in [*REVIEWS_2014, changed]])
    tables = read_tables("amazon-2014", raw2014)
    assert tables.read_stats["conflicting_reviews_dropped"] == 1
    assert tables.read_stats["duplicate_reviews_dropped"] == 0
    kept = tables.interactions.filter((pl.col("user_id") == 2) & (pl.col("item_id") == 2)).row(0, named=True)
    assert kept["rating"] == 5.0 and kept["review_text"].startswith("A masterpiece")


# --- amazon-2018: strict JSON, string votes, HTML titles, duplicated metadata --------------------------------

REVIEWS_2018 = [
    {"overall": 5.0, "verified": True, "reviewTime": "11 9, 2012", "reviewerID": "A2M1CU2IRZG0K9",
     "asin": "0005089549", "style": {"Format:": " VHS Tape"}, "reviewerName": "Terri",
     "reviewText": "So sorry I didn't purchase this years ago.", "summary": "Amazing!", "unixReviewTime": 1352419200},
    {"overall": 4.0, "vote": "1,234", "verified": False, "reviewTime": "12 30, 2015", "reviewerID": "AFTUJYISOFHY6",
     "asin": "0005089549", "style": {"Format:": " DVD"}, "reviewerName": "Jeff", "reviewText": "Still good.",
     "summary": "Four Stars", "unixReviewTime": 1451433600,
     "image": ["https://images-na.ssl-images-amazon.com/images/I/71eG75FTJJL._SY88.jpg"]},
    {"overall": 2.0, "vote": "3", "verified": True, "reviewTime": "05 13, 2014", "reviewerID": "A2M1CU2IRZG0K9",
     "asin": "6302967538", "reviewerName": "Terri", "summary": "Too long", "unixReviewTime": 1399939200},
]
META_2018 = [
    {"category": ["Movies & TV", "Movies"], "tech1": "",
     "description": ["<b>Teaching</b> the seven sacraments &amp; prayers,", "with Rich Warren."], "fit": "",
     "title": '<span class="a-size-medium">Everyday Education: Sacraments &amp; Prayers</span>', "also_buy": [],
     "tech2": "", "brand": "Rich Warren", "feature": [], "rank": "816,278 in Movies & TV (", "also_view": [],
     "main_cat": "Movies & TV", "similar_item": "", "date": "", "price": "$12.99", "asin": "0005089549",
     "imageURL": [], "imageURLHighRes": [], "details": {"Format:": "VHS"}},
    {"title": "A second record for the same asin", "asin": "0005089549", "price": "$1.00"},
    {"category": ["Movies & TV", "Movies", "Movies &amp; TV", "Documentary"], "title": "Planet Earth",
     "rank": ["#1 in Movies & TV", "#2 in Documentary"], "main_cat": "Movies & TV", "date": "June 23, 2009",
     "price": "$3.50 - $10.00", "asin": "6302967538", "description": []},
    {"title": "Nobody reviewed this", "asin": "B0UNREVIEWED", "price": ""},
]


@pytest.fixture
def raw2018(tmp_path) -> Path:
    raw = tmp_path / "raw2018"
    raw.mkdir()
    write_lines(raw / "Movies_and_TV_5.json", [json.dumps(r) for r in REVIEWS_2018])
    write_lines(raw / "meta_Movies_and_TV.json", [json.dumps(m) for m in META_2018])
    return raw


def test_amazon_2018(raw2018):
    tables = read_tables("amazon-2018", raw2018)
    inter, items = tables.interactions, tables.items
    assert inter.columns == ["user_id", "item_id", "rating", "timestamp", "review_text", "summary",
                             "helpful_votes", "verified"]
    # Users: "A2M1CU2IRZG0K9" < "AFTUJYISOFHY6"; items: "0005089549" < "6302967538".
    assert inter.select("user_id", "item_id", "rating", "timestamp", "helpful_votes", "verified").rows() == [
        (1, 1, 5.0, 1352419200, 0, True),  # no "vote" key: nobody voted
        (1, 2, 2.0, 1399939200, 3, True),
        (2, 1, 4.0, 1451433600, 1234, False),  # "1,234"
    ]
    assert inter["review_text"].to_list() == ["So sorry I didn't purchase this years ago.", None, "Still good."]
    first, planet = items.iter_rows(named=True)
    assert first["title"] == "Everyday Education: Sacraments & Prayers"  # tags stripped, &amp; unescaped
    assert first["description"] == "Teaching the seven sacraments & prayers, with Rich Warren."
    assert first["price"] == 12.99 and first["year"] is None and first["main_category"] == "Movies & TV"
    assert first["genres"] == ["Movies & TV", "Movies"]
    assert planet["genres"] == ["Movies & TV", "Movies", "Documentary"]  # "Movies &amp; TV" is a duplicate
    assert planet["price"] == 3.5 and planet["year"] == 2009 and planet["description"] is None
    assert items.columns == ["item_id", "title", "year", "genres", "asin", "brand", "description", "price",
                             "main_category"]
    assert tables.users.rows() == [(1, "A2M1CU2IRZG0K9", "Terri"), (2, "AFTUJYISOFHY6", "Jeff")]
    assert tables.read_stats["metadata_duplicates_dropped"] == 1
    assert tables.read_stats["metadata_items_unreviewed"] == 1
    assert tables.read_stats["items_without_metadata"] == 0


def test_amazon_2018_line_by_line_path_gives_the_same_tables(raw2018):
    """Blank lines and a description given as a plain string send the reader down its per-line path."""
    fast = read_tables("amazon-2018", raw2018)
    meta = [json.dumps(m) for m in META_2018]
    meta[2] = json.dumps({**META_2018[2], "description": "<p>BBC</p> series"})
    write_lines(raw2018 / "meta_Movies_and_TV.json", ["", *meta[:2], "   ", *meta[2:]])
    write_lines(raw2018 / "Movies_and_TV_5.json", [json.dumps(r) for r in REVIEWS_2018] + [""])
    slow = read_tables("amazon-2018", raw2018)
    assert slow.interactions.equals(fast.interactions) and slow.users.equals(fast.users)
    assert slow.items.drop("description").equals(fast.items.drop("description"))
    assert slow.items["description"].to_list() == [fast.items["description"][0], "BBC series"]


def test_prices_and_release_dates():
    from explainrec_core.data.amazon import _price, _year

    assert [_price(p) for p in ("$12.99", "$1,299.00", "$3.50 - $10.00", "", "None", ".a-box{color:#fff}",
                                "19.99", None)] == [12.99, 1299.0, 3.5, None, None, None, 19.99, None]
    assert [_year(d) for d in ("June 23, 2009", "23 June 2009", "Jun. 2009", "2009", "2009-06-23",
                               "</div>2009", "1750", "", None)] == [2009, 2009, 2009, 2009, 2009, None, None,
                                                                      None, None]


# --- amazon-2023: millisecond timestamps, items keyed by parent_asin -------------------------------------------

REVIEWS_2023 = [
    {"rating": 5.0, "title": "Five Stars", "text": "Amazon Prime Video rocks", "images": [], "asin": "B013488XFS",
     "parent_asin": "B013488XFS", "user_id": "AGGZ357AO26RQZVRLGU4D4N52DZQ", "timestamp": 1440385637000,
     "helpful_vote": 0, "verified_purchase": True},
    {"rating": 4.0, "title": "Good value", "text": "Blu-ray variant.", "asin": "B00AAAVARIANT",
     "parent_asin": "B00PARENT01", "user_id": "AGGZ357AO26RQZVRLGU4D4N52DZQ", "timestamp": 1588687728923,
     "helpful_vote": 7, "verified_purchase": False,
     "images": [{"small_image_url": "https://m.media-amazon.com/images/I/71x._SL256_.jpg"}]},
    {"rating": 3.0, "title": "Fine", "text": "DVD variant.", "images": [], "asin": "B00AAAOTHER",
     "parent_asin": "B00PARENT01", "user_id": "AF2BLE54TEMGZ546U763ZHZRXC4A", "timestamp": 1588687728923,
     "helpful_vote": 1, "verified_purchase": True},
]
META_2023 = [
    {"main_category": "Prime Video", "title": "Glee", "subtitle": "Season 1", "average_rating": 4.7,
     "rating_number": 2004, "features": ["IMDb 6.8"], "description": ["High school choir.", "Season one."],
     "price": 19.99, "images": [{"hi_res": None, "large": "https://m.media-amazon.com/images/I/91.jpg"}],
     "videos": [], "store": "Fox", "categories": [],
     "details": {"Content advisory": ["Violence"], "Release date": "2009", "Studio": "20th Century Fox"},
     "parent_asin": "B013488XFS", "bought_together": None},
    {"main_category": "Movies & TV", "title": "Planet Earth II", "average_rating": 4.8, "rating_number": 10,
     "features": [], "description": [], "price": None, "images": [], "videos": [], "store": None,
     "categories": ["Movies & TV", "Featured Categories", "Movies & TV"],
     "details": {"Date First Available": "March 10, 2006"}, "parent_asin": "B00PARENT01", "bought_together": None},
]


@pytest.fixture
def raw2023(tmp_path) -> Path:
    raw = tmp_path / "raw2023"
    raw.mkdir()
    write_lines(raw / "Movies_and_TV.jsonl.gz", [json.dumps(r) for r in REVIEWS_2023])
    write_lines(raw / "meta_Movies_and_TV.jsonl.gz", [json.dumps(m) for m in META_2023])
    return raw


def test_amazon_2023(raw2023):
    tables = read_tables("amazon-2023", raw2023)
    # Items are parent products: both variants of B00PARENT01 are item 1 ("B00PARENT01" < "B013488XFS").
    assert tables.items.select("item_id", "parent_asin", "title").rows() == [
        (1, "B00PARENT01", "Planet Earth II"), (2, "B013488XFS", "Glee")]
    assert tables.interactions.select("user_id", "item_id", "rating", "timestamp", "helpful_votes",
                                      "verified", "summary").rows() == [
        (1, 1, 3.0, 1588687728, 1, True, "Fine"),  # milliseconds -> seconds
        (2, 2, 5.0, 1440385637, 0, True, "Five Stars"),
        (2, 1, 4.0, 1588687728, 7, False, "Good value"),
    ]
    planet, glee = tables.items.iter_rows(named=True)
    assert glee["year"] == 2009 and glee["price"] == 19.99 and glee["brand"] == "Fox"  # details' Release date
    assert glee["description"] == "High school choir. Season one." and glee["genres"] == []
    assert glee["main_category"] == "Prime Video" and "average_rating" not in tables.items.columns
    assert planet["year"] is None and planet["price"] is None and planet["brand"] is None  # not a release date
    assert planet["genres"] == ["Movies & TV", "Featured Categories"]
    assert tables.users.columns == ["user_id", "reviewer_id"]


# --- folders -----------------------------------------------------------------------------------------------------

def test_folder_problems(raw2018, raw2014, raw2023):
    with pytest.raises(DataError, match=r"no amazon-2018 review file .*reviews_Movies_and_TV_5\.json\.gz"):
        read_tables("amazon-2018", raw2014)  # a 2014 folder read as 2018
    write_lines(raw2018 / "Books_5.json", [json.dumps(REVIEWS_2018[0])])
    with pytest.raises(DataError, match=r"several categories \['Books', 'Movies_and_TV'\]"):
        read_tables("amazon-2018", raw2018)
    (raw2018 / "Books_5.json").unlink()
    write_lines(raw2018 / "Movies_and_TV.json", [json.dumps(REVIEWS_2018[0])])  # the full file beside the 5-core
    with pytest.raises(DataError, match=r"several review files for category 'Movies_and_TV'"):
        read_tables("amazon-2018", raw2018)
    (raw2023 / "meta_Movies_and_TV.jsonl.gz").unlink()
    with pytest.raises(DataError, match=r"no metadata file for category 'Movies_and_TV' \(expected "
                                        r"meta_Movies_and_TV\.jsonl\(\.gz\)"):
        read_tables("amazon-2023", raw2023)


# --- bad input: a clear error naming file, field and lines; nothing written -------------------------------------

def _set_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    write_lines(path, lines)


def bad_json_line(raw: Path) -> None:
    _set_line(raw / "Movies_and_TV_5.json", 2, '{"overall": 4.0, "reviewerID": "AFTUJYISOFHY6", "asin": "00050')


def not_utf8(raw: Path) -> None:
    data = (raw / "Movies_and_TV_5.json").read_bytes().replace(b"Too long", b"Trop \xe9tendu")
    (raw / "Movies_and_TV_5.json").write_bytes(data)


def missing_reviewer(raw: Path) -> None:
    _set_line(raw / "Movies_and_TV_5.json", 3, json.dumps({k: v for k, v in REVIEWS_2018[2].items()
                                                          if k != "reviewerID"}))


def rating_out_of_range(raw: Path) -> None:
    _set_line(raw / "Movies_and_TV_5.json", 2, json.dumps({**REVIEWS_2018[1], "overall": 6.0}))


def non_numeric_timestamp(raw: Path) -> None:
    _set_line(raw / "Movies_and_TV_5.json", 3, json.dumps({**REVIEWS_2018[2], "unixReviewTime": "yesterday"}))


def non_numeric_vote(raw: Path) -> None:
    _set_line(raw / "Movies_and_TV_5.json", 3, json.dumps({**REVIEWS_2018[2], "vote": "many"}))


def metadata_without_asin(raw: Path) -> None:
    _set_line(raw / "meta_Movies_and_TV.json", 4, json.dumps({"title": "No asin"}))


def truncated_gzip(raw: Path) -> None:
    data = (raw / "Movies_and_TV_5.json").read_bytes()
    (raw / "Movies_and_TV_5.json").unlink()
    (raw / "Movies_and_TV_5.json.gz").write_bytes(gzip.compress(data * 50, mtime=0)[:-20])


def not_gzip(raw: Path) -> None:
    (raw / "meta_Movies_and_TV.json").rename(raw / "meta_Movies_and_TV.json.gz")


# (corruption, file named, field named or None, fragments the message must contain)
CASES = [
    (bad_json_line, "Movies_and_TV_5.json", None,
     ["1 line(s) that do not parse as JSON objects", "first: line 2: JSONDecodeError: Unterminated string",
      "line 2: '{\"overall\": 4.0", "bad_lines: skip"]),
    (not_utf8, "Movies_and_TV_5.json", None, ["not valid UTF-8 (byte 0xe9 at column", "line 3: ", "Trop"]),
    (missing_reviewer, "Movies_and_TV_5.json", "reviewerID", ["1 line(s) without the required field", "line 3"]),
    (rating_out_of_range, "Movies_and_TV_5.json", "overall", ["outside [1.0, 5.0]", "line 2: 6.0"]),
    (non_numeric_timestamp, "Movies_and_TV_5.json", "unixReviewTime", ["non-numeric", "line 3: 'yesterday'"]),
    (non_numeric_vote, "Movies_and_TV_5.json", "vote", ["non-numeric", "line 3: 'many'"]),
    (metadata_without_asin, "meta_Movies_and_TV.json", "asin", ["without the required field", "line 4"]),
    (truncated_gzip, "Movies_and_TV_5.json.gz", None, ["truncated gzip file"]),
    (not_gzip, "meta_Movies_and_TV.json.gz", None, ["corrupt gzip file", "Not a gzipped file"]),
]


@pytest.mark.parametrize("corrupt, file, field, fragments", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_is_named_and_loses_nothing(raw2018, tmp_path, corrupt, file, field, fragments):
    out = tmp_path / "processed"
    ingest("amazon-2018", raw2018, out)
    before = _digests(out)
    assert set(before) == {"interactions.parquet", "items.parquet", "users.parquet"}

    corrupt(raw2018)
    with pytest.raises(DataError) as info:
        ingest("amazon-2018", raw2018, out)

    message = str(info.value)
    assert info.value.file == str(raw2018 / file) and file in message
    if field:
        assert info.value.column == field and f"column '{field}'" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert _digests(out) == before, "a failed ingest changed previously written tables"
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


def test_bad_lines_skip_counts_them(raw2018, tmp_path):
    bad_json_line(raw2018)
    not_utf8(raw2018)  # line 3 of the same file
    _set_line(raw2018 / "meta_Movies_and_TV.json", 2, "<html>Service Unavailable</html>")
    stats = ingest("amazon-2018", raw2018, tmp_path / "out", bad_lines="skip")
    assert stats["bad_lines_skipped_reviews"] == 2 and stats["bad_lines_skipped_metadata"] == 1
    assert stats["n_interactions"] == 1 and stats["metadata_duplicates_dropped"] == 0
    assert read_table(tmp_path / "out", "interactions")["timestamp"].to_list() == [1352419200]
    with pytest.raises(ConfigError, match="bad_lines must be one of"):
        ingest("amazon-2018", raw2018, tmp_path / "out", bad_lines="ignore")


def test_2014_metadata_bad_literal_and_truncated_review_gzip(raw2014):
    meta = raw2014 / "meta_Movies_and_TV.json.gz"
    lines = gzip.decompress(meta.read_bytes()).decode().splitlines()
    write_lines(meta, [lines[0], lines[1][:40], lines[2]])  # torn in the middle of line 2
    with pytest.raises(DataError, match=r"meta_Movies_and_TV\.json\.gz: 1 line\(s\) that do not parse as Python "
                                        r"dict literals; first: line 2: SyntaxError"):
        read_tables("amazon-2014", raw2014)
    assert read_tables("amazon-2014", raw2014, bad_lines="skip").read_stats["bad_lines_skipped_metadata"] == 1
    reviews = raw2014 / "reviews_Movies_and_TV_5.json.gz"
    reviews.write_bytes(reviews.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"reviews_Movies_and_TV_5\.json\.gz: truncated gzip file"):
        read_tables("amazon-2014", raw2014)


def test_2023_timestamps_in_seconds_are_refused(raw2023):
    reviews = [{**r, "timestamp": r["timestamp"] // 1000} for r in REVIEWS_2023]
    write_lines(raw2023 / "Movies_and_TV.jsonl.gz", [json.dumps(r) for r in reviews])
    with pytest.raises(DataError, match=r"Movies_and_TV\.jsonl\.gz, column 'timestamp': 3 value\(s\) outside "
                                        r".*Unix milliseconds.*line 1: 1440385637"):
        read_tables("amazon-2023", raw2023)


def test_bad_lines_through_params_and_cli(raw2018, tmp_path):
    assert load_config(write_params(tmp_path, data={"bad_lines": "skip"})).data.bad_lines == "skip"
    with pytest.raises(ConfigError, match="bad_lines"):
        load_config(write_params(tmp_path, data={"bad_lines": "ignore"}))
    bad_json_line(raw2018)
    args = ["data", "ingest", "--format", "amazon-2018", "--input", str(raw2018), "--output", str(tmp_path / "o")]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code != 0 and "line 2" in failed.output
    result = CliRunner().invoke(app, [*args, "--bad-lines", "skip"])
    assert result.exit_code == 0, result.output
    assert "bad_lines_skipped_reviews" in result.output
