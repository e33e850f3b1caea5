"""Reading raw delimited files strictly: every problem becomes a DataError naming file, column and lines.

Raw files are read with every column as text first, then cast; a value that does not cast is reported with
its line number instead of silently becoming null. Line numbers count the header line, as an editor shows them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from explainrec_core.errors import DataError

_ROW = "__row"  # 0-based data-row index carried through checks so errors can cite line numbers
_OTHER_DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "::": "double colon"}


def read_text_bytes(path: Path, encoding: str = "utf-8") -> bytes:
    """The file's bytes, after checking it is non-empty and decodes (naming the first bad line if not)."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(str(path), "file is empty")
    if encoding == "utf-8":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line_no = data.count(b"\n", 0, exc.start) + 1
            line_start = data.rfind(b"\n", 0, exc.start) + 1
            line_end = data.find(b"\n", exc.start)
            line = data[line_start: line_end if line_end >= 0 else None]
            raise DataError(str(path), f"bytes that are not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                            rows=[line_no], values=[line[:120]]) from None
    return data


def read_delimited(path: Path, columns: Sequence[str], *, separator: str, has_header: bool,
                   encoding: str = "utf-8", quote_char: str | None = '"') -> pl.DataFrame:
    """Read a delimited file with all columns as strings, checking the expected columns are there.

    With `has_header=False`, `columns` names the file's columns in order; otherwise the header must contain
    them (extra columns are kept). A wrong delimiter shows up as a missing-column error that says which
    delimiter the header seems to use.
    """
    data = read_text_bytes(path, encoding)
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    header_line = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    try:
        df = pl.read_csv(io.BytesIO(data), separator=separator, has_header=has_header, infer_schema=False,
                         quote_char=quote_char, new_columns=None if has_header else list(columns))
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.SchemaError) as exc:
        raise DataError(str(path), f"cannot be parsed as {_OTHER_DELIMITERS.get(separator, separator)}-separated "
                        f"text: {str(exc).splitlines()[0]}", values=[header_line[:120]]) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        hint = ""
        found = [name for sep, name in _OTHER_DELIMITERS.items() if sep != separator and sep in header_line]
        if found:
            hint = f"; the header looks {found[0]}-separated, expected {_OTHER_DELIMITERS[separator]}-separated"
        raise DataError(str(path), f"missing column(s) {missing}; found {df.columns}{hint}",
                        values=[header_line[:120]])
    if df.height == 0:
        raise DataError(str(path), "file has a header but no data rows")
    return df.with_row_index(_ROW)


def line_number(row: int, has_header: bool) -> int:
    return row + (2 if has_header else 1)


def cast_column(df: pl.DataFrame, path: Path, column: str, dtype: pl.DataType, *, has_header: bool = True,
                nullable: bool = False, lenient: bool = False) -> pl.DataFrame:
    """Cast a text column, reporting values that do not parse (and empty values unless `nullable`).

    `lenient` is for optional descriptive fields with known junk in real data (ML-100K's RecBole item file
    has release years "unkonwn" and "V"): values that do not parse become null instead of an error.
    """
    text = pl.col(column).str.strip_chars()
    casted = text.cast(dtype, strict=False)
    bad = df.filter((text.is_not_null() & (text != "") & casted.is_null() & ~pl.lit(lenient))
                    | (~pl.lit(nullable) & (text.is_null() | (text == ""))))
    if bad.height:
        kind = "non-numeric" if dtype.is_numeric() else f"non-{dtype}"
        raise DataError(str(path), f"{bad.height} {kind} or empty value(s)", column=column,
                        rows=[line_number(r, has_header) for r in bad[_ROW].to_list()],
                        values=bad[column].to_list())
    return df.with_columns(pl.when(text == "").then(None).otherwise(casted).alias(column))


def check_range(df: pl.DataFrame, path: Path, column: str, low: float, high: float, *,
                has_header: bool = True) -> None:
    bad = df.filter(~pl.col(column).is_between(low, high) & pl.col(column).is_not_null())
    if bad.height:
        raise DataError(str(path), f"{bad.height} value(s) outside [{low}, {high}]", column=column,
                        rows=[line_number(r, has_header) for r in bad[_ROW].to_list()],
                        values=bad[column].to_list())


def check_unique(df: pl.DataFrame, path: Path, keys: Sequence[str], *, has_header: bool = True) -> None:
    dup = df.filter(pl.struct(keys).is_duplicated()).sort(_ROW)
    if dup.height:
        raise DataError(str(path), f"{dup.height} rows share a ({', '.join(keys)}) key with another row",
                        column=", ".join(keys), rows=[line_number(r, has_header) for r in dup[_ROW].to_list()],
                        values=[tuple(r) for r in dup.select(keys).rows()])


def check_references(df: pl.DataFrame, path: Path, column: str, known: pl.Series, known_file: Path, *,
                     has_header: bool = True) -> None:
    bad = df.filter(~pl.col(column).is_in(known.implode()))
    if bad.height:
        raise DataError(str(path), f"{bad.height} row(s) refer to ids missing from {known_file}", column=column,
                        rows=[line_number(r, has_header) for r in bad[_ROW].to_list()],
                        values=bad[column].to_list())


def drop_row_index(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop(_ROW)
