"""Reading JSON-lines files (plain or gzipped) strictly: every problem is a DataError naming file, field and lines.

The same conventions as `rawcheck` (which reads delimited files), for line-oriented JSON:

- `read_bytes`: a file's decompressed bytes. A truncated gzip (an interrupted download) or a corrupt one is an
  error naming the file, never a silently shorter table.
- `read_json_lines`: the requested fields of every line, read loosely (scalars as text, lists as lists of text)
  plus `LINE`, the 1-based line number, so the later casts and checks can cite lines as an editor shows them.
  * Fast path: polars' NDJSON reader over the whole buffer (no Python object per row). Taken for strict JSON
    when polars accepts the buffer and returns one row per line.
  * Slow path: one Python parse per line. Taken when polars rejects the buffer (a line that does not parse,
    bytes that are not UTF-8, a field of unusual shape such as a plain string where a list is usual), when
    blank lines would shift polars' row numbers, and always for Python-literal files (Amazon 2014 metadata,
    parsed with `ast.literal_eval`). Lines that do not parse are reported (`bad_lines="fail"`) or skipped and
    counted (`bad_lines="skip"`).
  `bad_lines` covers only lines that cannot be parsed at all (a torn write, a stray log line). A parsed line
  with a missing or malformed field always fails: that means a wrong format or mapping, not a damaged line.
- `require`, `cast_field`, `check_range`: field checks whose errors cite lines and values.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import polars as pl

from explainrec_core.errors import DataError

BadLines = Literal["fail", "skip"]
BAD_LINES: tuple[BadLines, ...] = ("fail", "skip")
LINE = "__line"  # 1-based line number of each row in its file
TEXT, TEXT_LIST = pl.String(), pl.List(pl.String)  # the two loose types fields are read as

log = logging.getLogger(__name__)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz; a missing, empty or damaged file is an error."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except EOFError:
            raise DataError(str(path), "truncated gzip file: it ends before the gzip end-of-stream marker "
                            "(an interrupted download or copy?); fetch it again") from None
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError: not gzip, CRC or length mismatch
            raise DataError(str(path), f"corrupt gzip file ({exc})") from None
    else:
        data = path.read_bytes()
    if not data or data.isspace():  # isspace() stops at the first other byte: no copy of a big buffer
        raise DataError(str(path), "file is empty")
    return data


def read_json_lines(path: Path, fields: dict[str, pl.DataType], *, bad_lines: BadLines = "fail",
                    python_literals: bool = False) -> tuple[pl.DataFrame, int]:
    """Read `fields` (each TEXT or TEXT_LIST) of every line of `path`; returns (frame with LINE, lines skipped).

    Absent keys become null. `python_literals` parses each line with `ast.literal_eval` (falling back to JSON).
    """
    if bad_lines not in BAD_LINES:
        raise ValueError(f"bad_lines must be one of {BAD_LINES}, got {bad_lines!r}")
    data = read_bytes(path)
    if not python_literals:
        n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
        try:
            df = pl.read_ndjson(io.BytesIO(data), schema=fields)
        except pl.exceptions.PolarsError:
            df = None  # the slow path finds and names the offending line(s)
        # polars drops blank lines; its row numbers are line numbers only when it returned one row per line.
        if df is not None and df.height == n_lines:
            return df.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64)), 0
    return _read_line_by_line(path, data, fields, bad_lines, python_literals)


def _read_line_by_line(path: Path, data: bytes, fields: dict[str, pl.DataType], bad_lines: BadLines,
                       python_literals: bool) -> tuple[pl.DataFrame, int]:
    parse = _parse_literal if python_literals else json.loads
    kind = "Python dict literals" if python_literals else "JSON objects"
    columns: dict[str, list] = {name: [] for name in fields}
    lines: list[int] = []
    bad: list[tuple[int, str, bytes]] = []  # (line number, why, the line)
    for number, raw in enumerate(io.BytesIO(data), start=1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            record = parse(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:  # show the bytes around the bad one, not the line's start
            bad.append((number, f"bytes that are not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                        f"{exc.start + 1})", raw[max(0, exc.start - 60):]))
            continue
        except (ValueError, SyntaxError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            column = getattr(exc, "colno", None) or getattr(exc, "offset", None)
            where = f" (column {column})" if column else ""
            bad.append((number, f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}", raw))
            continue
        if not isinstance(record, dict):
            bad.append((number, f"a {type(record).__name__}, not an object", raw))
            continue
        lines.append(number)
        for name, dtype in fields.items():
            columns[name].append(_loose(record.get(name), dtype))
    if bad and bad_lines == "fail":
        raise DataError(str(path), f"{len(bad)} line(s) that do not parse as {kind}; first: line {bad[0][0]}: "
                        f"{bad[0][1]} (data.bad_lines: skip, or --bad-lines skip, skips and counts such lines)",
                        rows=[b[0] for b in bad], values=[b[2][:120].decode("utf-8", "replace") for b in bad])
    if bad:
        log.warning("%s: skipped %d line(s) that do not parse as %s (lines %s%s)", path, len(bad), kind,
                    ", ".join(str(b[0]) for b in bad[:20]), ", ..." if len(bad) > 20 else "")
    if not lines:
        raise DataError(str(path), f"no line is readable as {kind}")
    df = pl.DataFrame({**columns, LINE: lines}, schema={**fields, LINE: pl.Int64})
    return df, len(bad)


def _parse_literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        # Some mirrors re-export the 2014 metadata as strict JSON (true/false/null are not Python literals).
        try:
            return json.loads(text)
        except ValueError:
            pass
        raise


def _loose(value: object, dtype: pl.DataType) -> object:
    """A parsed JSON/literal value in the loose types polars' reader gives for the same field."""
    if value is None:
        return None
    if dtype == TEXT:
        return _text(value)
    items = _flatten(value) if isinstance(value, list | tuple) else [value]  # a lone string -> one-item list
    return [_text(v) for v in items if v is not None]


def _flatten(values: Iterable) -> Iterable:
    # Amazon 2014 `categories` is a list of category paths (lists); every list field is flattened alike.
    for v in values:
        if isinstance(v, list | tuple):
            yield from _flatten(v)
        else:
            yield v


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)  # an object in a text field: its JSON, as polars


def _examples(df: pl.DataFrame, column: str) -> dict:
    return {"rows": df[LINE].to_list(), "values": df[column].to_list()}


def require(df: pl.DataFrame, path: Path, fields: Sequence[str]) -> None:
    """Each of `fields` must be present and non-empty on every line."""
    for field in fields:
        bad = df.filter(pl.col(field).is_null() | (pl.col(field).str.strip_chars() == ""))
        if bad.height:
            hint = " (no line has it: is this the right format for this file?)" if bad.height == df.height else ""
            raise DataError(str(path), f"{bad.height} line(s) without the required field{hint}", column=field,
                            **_examples(bad, field))


def cast_field(df: pl.DataFrame, path: Path, field: str, dtype: pl.DataType, *, required: bool,
               clean: Callable[[pl.Expr], pl.Expr] | None = None) -> pl.DataFrame:
    """Cast the loosely read text `field` to Int64, Float64 or Boolean, naming lines whose value does not cast.

    `clean` rewrites the text first (e.g. drops thousands separators); errors still show the original value.
    """
    raw = pl.col(field)
    text = (clean(raw) if clean else raw).str.strip_chars()
    if dtype == pl.Boolean:
        lower = text.str.to_lowercase()
        casted = pl.when(lower == "true").then(True).when(lower == "false").then(False).otherwise(None)
    elif dtype == pl.Int64:
        # "1352419200" exactly; "1352419200.0" through a float (exact below 2**53, which covers ms timestamps).
        casted = pl.coalesce(text.cast(pl.Int64, strict=False),
                             text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))
    else:
        casted = text.cast(dtype, strict=False)
    bad = df.filter(text.is_not_null() & (text != "") & casted.is_null())
    if bad.height:
        kind = "non-numeric" if dtype.is_numeric() else f"non-{str(dtype).lower()}"
        raise DataError(str(path), f"{bad.height} {kind} value(s)", column=field, **_examples(bad, field))
    if required:
        require(df, path, [field])
    return df.with_columns(casted.alias(field))


def check_range(df: pl.DataFrame, path: Path, field: str, low: float, high: float, why: str = "") -> None:
    bad = df.filter(~pl.col(field).is_between(low, high) & pl.col(field).is_not_null())
    if bad.height:
        raise DataError(str(path), f"{bad.height} value(s) outside [{low}, {high}]{why}", column=field,
                        **_examples(bad, field))
