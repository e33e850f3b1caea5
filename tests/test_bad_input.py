"""Bad raw input: a clear error naming file, column and offending rows; previously written tables untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from explainrec_core.data.ingest import ingest
from explainrec_core.errors import DataError


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture text changed: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new))


def missing_column(raw: Path) -> None:
    _replace(raw / "ratings.csv", "userId,movieId,rating,timestamp", "userId,movieId,stars,timestamp")


def wrong_delimiter(raw: Path) -> None:
    (raw / "ratings.csv").write_text((raw / "ratings.csv").read_text().replace(",", ";"))


def non_numeric_rating(raw: Path) -> None:
    _replace(raw / "ratings.csv", "1,2,3.5,1147868817", "1,2,three,1147868817")


def rating_out_of_range(raw: Path) -> None:
    _replace(raw / "ratings.csv", "2,4,2.0,1141415790", "2,4,7.5,1141415790")


def duplicated_key(raw: Path) -> None:
    with (raw / "ratings.csv").open("a") as f:
        f.write("1,2,4.0,1147868817\n")  # same (user, item, timestamp) as line 3


def unknown_item(raw: Path) -> None:
    with (raw / "ratings.csv").open("a") as f:
        f.write("3,99999,4.0,1439474500\n")


def empty_file(raw: Path) -> None:
    (raw / "ratings.csv").write_bytes(b"")


def non_utf8_title(raw: Path) -> None:
    data = (raw / "movies.csv").read_bytes().replace(b"Babylon 5", b"Caf\xe9 Babylon")
    (raw / "movies.csv").write_bytes(data)


# (corruption, file named, column named or None, fragments the message must contain)
CASES = [
    (missing_column, "ratings.csv", None, ["missing column", "'rating'", "stars"]),
    (wrong_delimiter, "ratings.csv", None, ["missing column", "semicolon-separated", "userId;movieId"]),
    (non_numeric_rating, "ratings.csv", "rating", ["non-numeric", "line 3: 'three'"]),
    (rating_out_of_range, "ratings.csv", "rating", ["outside [0.5, 5.0]", "line 6: 7.5"]),
    (duplicated_key, "ratings.csv", "userId, movieId, timestamp",
     ["share a", "line 3", "line 10", "(1, 2, 1147868817)"]),
    (unknown_item, "ratings.csv", "movieId", ["missing from", "movies.csv", "line 10: 99999"]),
    (empty_file, "ratings.csv", None, ["file is empty"]),
    (non_utf8_title, "movies.csv", None, ["not valid UTF-8", "0xe9", "line 4", "Caf\\xe9 Babylon"]),
]


@pytest.mark.parametrize("corrupt, file, column, fragments", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_is_named_and_loses_nothing(ml25m_raw, tmp_path, corrupt, file, column, fragments):
    out = tmp_path / "processed"
    ingest("ml-25m", ml25m_raw, out)
    before = _digests(out)
    assert set(before) == {"interactions.parquet", "items.parquet", "users.parquet"}

    corrupt(ml25m_raw)
    with pytest.raises(DataError) as info:
        ingest("ml-25m", ml25m_raw, out)

    message = str(info.value)
    assert info.value.file.endswith(file) and file in message
    if column:
        assert info.value.column == column and f"column '{column}'" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert _digests(out) == before, "a failed ingest changed previously written tables"
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


def test_unknown_format_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="unknown format 'netflix'"):
        ingest("netflix", tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="input folder not found"):
        ingest("ml-25m", tmp_path / "nope", tmp_path / "out")
