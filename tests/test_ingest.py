"""Readers: real ML-100K, GroupLens' original ML-100K layout, and ML-25M's real quirks."""

from __future__ import annotations

import polars as pl

from explainrec_core.data.ingest import ingest, read_tables
from tests.conftest import read_table


def test_real_ml100k_has_the_published_shape(ml100k_raw, tmp_path):
    stats = ingest("ml-100k", ml100k_raw, tmp_path)
    assert (stats["n_interactions"], stats["n_users"], stats["n_items"]) == (100_000, 943, 1_682)
    inter, items, users = (read_table(tmp_path, n) for n in ("interactions", "items", "users"))
    assert inter.schema == pl.Schema({"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "timestamp": pl.Int64})
    assert set(inter["rating"].unique().to_list()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    toy_story = items.filter(pl.col("item_id") == 1).row(0, named=True)
    assert toy_story["title"] == "Toy Story" and toy_story["year"] == 1995
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"]
    # Real quirk: item 1412's release year is "V" in the RecBole file; the year comes from its title instead.
    item_1412 = items.filter(pl.col("item_id") == 1412).row(0, named=True)
    assert item_1412["year"] == 1995 and not item_1412["title"].endswith("(1995)")
    assert users.columns == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert users.filter(pl.col("user_id") == 1).row(0) == (1, 24, "M", "technician", "85711")


def test_grouplens_layout_is_read_too(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    flags = ["0"] * 19
    drama = flags.copy()
    drama[8] = "1"  # Drama
    comedy_romance = flags.copy()
    comedy_romance[5] = comedy_romance[14] = "1"
    # u.item is Latin-1 in the GroupLens zip (e.g. "Misérables").
    (raw / "u.item").write_bytes(
        ("1|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Mis%E9rables|"
         + "|".join(drama) + "\n"
         + "2|Sabrina (1954)|01-Jan-1954||http://us.imdb.com/|" + "|".join(comedy_romance) + "\n").encode("latin-1"))
    (raw / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (raw / "u.data").write_text("1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n")
    tables = read_tables("ml-100k", raw)
    assert tables.items.rows() == [
        (1, "Misérables, Les", 1995, ["Drama"], "http://us.imdb.com/M/title-exact?Mis%E9rables"),
        (2, "Sabrina", 1954, ["Comedy", "Romance"], "http://us.imdb.com/"),
    ]
    assert tables.interactions.rows() == [(1, 1, 5.0, 874965758), (1, 2, 3.0, 876893171), (2, 1, 4.0, 888550871)]
    assert tables.users["gender"].to_list() == ["M", "F"]


def test_ml25m_quirks(ml25m_raw):
    tables = read_tables("ml-25m", ml25m_raw)
    items = {row["item_id"]: row for row in tables.items.iter_rows(named=True)}
    assert items[2]["title"] == "American President, The" and items[2]["year"] == 1995
    assert items[3]["title"] == "Babylon 5" and items[3]["year"] is None
    assert items[4]["title"] == "Shoah" and items[4]["year"] == 1985  # trailing space inside the quotes
    assert items[5]["genres"] == []  # "(no genres listed)"
    assert items[6]["title"] == "Stranger Things" and items[6]["year"] == 2016  # "(2016-)"
    assert items[3]["tmdb_id"] is None and items[1]["tmdb_id"] == 862
    assert items[1]["imdb_id"] == "0114709"  # leading zeros kept
    assert items[1]["tags"] == ["pixar", "funny, clever"]  # lower-cased, most used first
    assert items[4]["tags"] == []
    assert tables.interactions.height == 8
    assert tables.interactions.filter(pl.col("user_id") == 1)["rating"].to_list() == [3.5, 0.5, 4.0]
    assert tables.users["user_id"].to_list() == [1, 2, 3]


def test_ingest_without_optional_files(ml25m_raw, tmp_path):
    (ml25m_raw / "tags.csv").unlink()
    (ml25m_raw / "links.csv").unlink()
    ingest("ml-25m", ml25m_raw, tmp_path)
    assert read_table(tmp_path, "items").columns == ["item_id", "title", "year", "genres"]
