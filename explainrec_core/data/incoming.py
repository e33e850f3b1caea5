"""New interactions arriving after the initial ingest: accepted exactly once, or quarantined whole.

Files dropped into `incoming.uri` (default `data/incoming/`) in the dataset's own ratings format (ml-100k: u.data
lines `user<TAB>item<TAB>rating<TAB>timestamp`; ml-25m: ratings.csv files with their header; amazon-*: review JSON
lines of the format, see incoming_amazon.py) are handled by `process_incoming`, file by file in name order. With
`incoming.remote_uri` set, files dropped under an s3:// prefix are pulled into the inbox first (incoming_s3.py).

- a file whose content hash is in the ledger (`.ledger.json`) was handled before: skipped;
- the file is checked with the same raw checks as ingest (columns, numbers, rating range, no repeated key, known
  items: an item without metadata cannot be described, so it is rejected; new users are accepted, without
  demographics), then with the data gate's Great Expectations suite for interactions (e.g. timestamps in range).
  A bad file is moved whole to `quarantine/` with `<name>.reason.txt` naming the file, column, lines (or the failed
  expectation) and values; nothing of it is kept;
- rows already known (same user, item and timestamp in the current interactions or in an earlier accepted file)
  are skipped and counted; the rest is written to `accepted/<sha12>.parquet` (atomically), then the ledger entry,
  then the file moves to `processed/`.

The interactions table is never edited in place: `ingest` rebuilds it from the raw files plus every accepted file
(`with_accepted`), so a rerun of ingest (DVC, Dagster) reproduces it, and DVC versions the accepted files as
ingest inputs. A crash at any point loses nothing and counts nothing twice: before the ledger entry is written a
rerun redoes the file (its accepted file is rewritten with the same rows); after it, the file is skipped.

`data.stream_holdout` simulates the stream: ingest keeps the newest share of the raw ratings out (written to
`stream_holdout.parquet`) and `replay_batches` writes them back as incoming files in time order.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.data import incoming_amazon
from explainrec_core.data import rawcheck as rc
from explainrec_core.data.movielens import ML100K_RATING_RANGE, finish_interactions, read_ratings_csv
from explainrec_core.errors import ConfigError, DataError
from explainrec_core.io import atomic_path, sha256_file, write_json, write_parquet

KEY = ("user_id", "item_id", "timestamp")
COLUMNS = ("user_id", "item_id", "rating", "timestamp")
LEDGER, ACCEPTED, QUARANTINE, PROCESSED = ".ledger.json", "accepted", "quarantine", "processed"
FORMATS = ("ml-100k", "ml-25m", *incoming_amazon.FORMATS)  # u.data lines; ratings.csv; review JSON lines


@dataclass(frozen=True)
class FileResult:
    name: str
    status: str  # appended | seen before | quarantined
    appended: int = 0
    duplicates: int = 0
    new_users: int = 0
    reason: str = ""

    def line(self) -> str:
        if self.status == "quarantined":
            return f"{self.name}: quarantined: {self.reason}"
        if self.status == "seen before":
            return f"{self.name}: already processed (same content), skipped"
        return (f"{self.name}: appended {self.appended} rating(s), skipped {self.duplicates} duplicate(s), "
                f"{self.new_users} new user(s)")


def read_ledger(folder: Path) -> dict:
    path = folder / LEDGER
    return json.loads(path.read_text()) if path.is_file() else {}


def read_incoming_file(path: Path, fmt: str, items: pl.DataFrame, items_file: Path,
                       known_users: pl.DataFrame | None = None) -> pl.DataFrame:
    """The file's ratings (COLUMNS; Amazon files also their review columns and reviewer_id), after ingest's raw
    checks; DataError names file, column, lines and values. known_users: (user_id, reviewer_id) of the reviewers
    with an id already (Amazon formats only)."""
    if fmt not in FORMATS:
        raise ConfigError(f"incoming files in format {fmt!r} are not read yet; formats: {list(FORMATS)}")
    if fmt in incoming_amazon.FORMATS:
        if known_users is None:
            raise ConfigError("incoming Amazon reviews need the known reviewers (users table) to map their ids")
        return incoming_amazon.read_incoming_reviews(path, fmt, items, items_file, known_users)
    if fmt == "ml-25m":  # ratings.csv: userId,movieId,rating,timestamp with a header (ingest's own reader)
        return read_ratings_csv(path, items, items_file).select(COLUMNS)
    raw = rc.read_delimited(path, list(COLUMNS), separator="\t", has_header=False, quote_char=None)
    if raw.width - 1 != len(COLUMNS):  # -1: the row index read_delimited adds
        raise DataError(str(path), f"expected {len(COLUMNS)} tab-separated fields per line "
                        "(user, item, rating, timestamp)", values=[raw.columns])
    return finish_interactions(raw, path, ML100K_RATING_RANGE, items, items_file, has_header=False)


def accepted_ratings(folder: Path) -> pl.DataFrame:
    """Every accepted file's rows (COLUMNS, and an Amazon file's review columns and reviewer_id), in file-name
    order; empty when none."""
    files = sorted((folder / ACCEPTED).glob("*.parquet"))
    empty = pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                 "timestamp": pl.Int64})
    return pl.concat([empty, *(pl.read_parquet(f) for f in files)], how="diagonal_relaxed")


def known_reviewers(users: pl.DataFrame, accepted: list[Path]) -> pl.DataFrame | None:
    """(user_id, reviewer_id) of every reviewer with an id (users table + accepted files); None without
    reviewer ids (MovieLens)."""
    if "reviewer_id" not in users.columns:
        return None
    parts = [users.select("user_id", "reviewer_id")]
    for f in accepted:
        frame = pl.read_parquet(f)
        if "reviewer_id" in frame.columns:
            parts.append(frame.select("user_id", "reviewer_id"))
    return pl.concat(parts).unique("reviewer_id", keep="first", maintain_order=True)


def pending(folder: Path) -> list[Path]:
    """The inbox's files waiting to be processed, in name order: not hidden (the ledger, partial downloads, DVC's
    .gitignore) and not DVC pointer files (`dvc add` of accepted/ writes accepted.dvc beside it, in the inbox)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix != ".dvc")


def process_incoming(folder: Path, fmt: str, interactions: pl.DataFrame, items: pl.DataFrame, items_file: Path,
                     check: Callable[[pl.DataFrame, Path], str | None] | None = None,
                     users: pl.DataFrame | None = None) -> list[FileResult]:
    """Handle every file directly in `folder` (module docstring); `interactions` is the current table. `check`
    (the CLI passes ingest's GX interactions suite) returns why the parsed rows fail, or None: such a file is
    quarantined like one that fails the raw checks. `users` (the users table) is needed for Amazon formats: new
    reviewers get ids after the known ones."""
    results = []
    for path in pending(folder):
        digest, ledger = sha256_file(path), read_ledger(folder)
        if digest in ledger:
            _move(path, folder / PROCESSED)
            results.append(FileResult(path.name, "seen before"))
            continue
        accepted_file = folder / ACCEPTED / f"{digest[:12]}.parquet"
        others = [f for f in sorted((folder / ACCEPTED).glob("*.parquet")) if f != accepted_file]
        try:
            reviewers = known_reviewers(users, others) if users is not None else None
            rows = read_incoming_file(path, fmt, items, items_file, reviewers)
        except DataError as exc:
            _quarantine(path, folder, str(exc))
            results.append(FileResult(path.name, "quarantined", reason=str(exc)))
            continue
        failed = check(rows, path) if check is not None else None
        if failed:
            _quarantine(path, folder, failed)
            results.append(FileResult(path.name, "quarantined", reason=failed))
            continue
        known = pl.concat([interactions.select(KEY), *(pl.read_parquet(f).select(KEY) for f in others)])
        new = rows.join(known, on=list(KEY), how="anti").sort("user_id", "timestamp", "item_id")
        users_known = pl.concat([interactions["user_id"], *(pl.read_parquet(f)["user_id"] for f in others)])
        result = FileResult(path.name, "appended", appended=new.height, duplicates=rows.height - new.height,
                            new_users=new.filter(~pl.col("user_id").is_in(users_known.implode()))["user_id"]
                            .n_unique())
        write_parquet(new, accepted_file)  # 1: the rows (a crash here: the rerun rewrites the same rows)
        write_json({**ledger, digest: {"file": path.name, "accepted": accepted_file.name,
                                       "appended": result.appended, "duplicates": result.duplicates}},
                   folder / LEDGER)  # 2: the ledger entry (after it, the file is never read again)
        _move(path, folder / PROCESSED)  # 3: out of the inbox
        results.append(result)
    return results


def with_accepted(interactions: pl.DataFrame, users: pl.DataFrame,
                  folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The ingested tables plus every accepted file's rows (a key seen twice is kept once) and their new users
    (no demographics); and the number of rows added."""
    extra = accepted_ratings(folder).join(interactions.select(KEY), on=list(KEY), how="anti").unique(
        list(KEY), keep="first", maintain_order=True)
    if extra.is_empty():
        return interactions, users, 0
    user_columns = [c for c in ("user_id", "reviewer_id") if c in extra.columns and c in users.columns]
    combined = pl.concat([interactions, extra.select(c for c in extra.columns if c in interactions.columns)],
                         how="diagonal_relaxed").sort("user_id", "timestamp", "item_id")
    new_users = (extra.select(user_columns).unique("user_id", keep="first", maintain_order=True)
                 .join(users.select("user_id"), on="user_id", how="anti"))
    users = pl.concat([users, new_users], how="diagonal_relaxed").sort("user_id")
    return combined, users, extra.height


def hold_out_newest(interactions: pl.DataFrame, share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, held out): the newest `share` of the ratings (by timestamp, then user and item) held out."""
    if not 0 <= share < 1:
        raise ConfigError(f"data.stream_holdout must be in [0, 1), got {share}")
    ordered = interactions.sort("timestamp", "user_id", "item_id")
    n_out = int(round(ordered.height * share))
    kept, out = ordered.head(ordered.height - n_out), ordered.tail(n_out)
    return kept.sort("user_id", "timestamp", "item_id"), out


def replay_batches(holdout: pl.DataFrame, folder: Path, batches: int, fmt: str = "ml-100k",
                   users: pl.DataFrame | None = None, items: pl.DataFrame | None = None) -> list[Path]:
    """The held-out ratings as `batches` incoming files in time order, in the dataset's format (u.data lines,
    replay-0001.data...; ml-25m: ratings.csv files, replay-0001.csv...; amazon-*: review JSON lines with the
    original ids, replay-0001.json(l), which need `users` and `items`); rewriting a batch gives the same bytes, so
    the ledger skips one processed before."""
    if fmt not in FORMATS:
        raise ConfigError(f"incoming files in format {fmt!r} are not read yet; formats: {list(FORMATS)}")
    if batches < 1:
        raise ConfigError(f"--batches must be >= 1, got {batches}")
    ordered = holdout.sort("timestamp", "user_id", "item_id")
    size = -(-ordered.height // batches) if ordered.height else 0
    written = []
    for b in range(batches):
        part = ordered.slice(b * size, size)
        if part.is_empty():
            break
        rows = part.select(COLUMNS).iter_rows()
        if fmt in incoming_amazon.FORMATS:
            if users is None or items is None:
                raise ConfigError("replaying Amazon reviews needs the users and items tables (original ids)")
            target = folder / f"replay-{b + 1:04d}.{'jsonl' if fmt == 'amazon-2023' else 'json'}"
            lines = "".join(line + "\n" for line in incoming_amazon.replay_lines(part, fmt, users, items))
        elif fmt == "ml-25m":
            target = folder / f"replay-{b + 1:04d}.csv"
            lines = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in rows)
        else:
            target = folder / f"replay-{b + 1:04d}.data"
            lines = "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows)
        with atomic_path(target) as tmp:
            tmp.write_text(lines, encoding="utf-8")
        written.append(target)
    return written


def _quarantine(path: Path, folder: Path, reason: str) -> None:
    target = folder / QUARANTINE
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / f"{path.name}.reason.txt") as tmp:
        tmp.write_text(reason + "\n", encoding="utf-8")
    _move(path, target)


def _move(path: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target_dir / path.name))


def gx_failures(cfg, rows: pl.DataFrame, path: Path, items: pl.DataFrame, users: pl.DataFrame) -> str | None:
    """The data gate's interactions suite on an incoming file's rows (its new users count as known): None when it
    passes, else the failed expectations."""
    from explainrec_core.quality import suites  # great_expectations: imported only when a file is checked
    from explainrec_core.quality.gate import run_suite

    known = pl.concat([users.select("user_id"), rows.select("user_id")]).unique()
    result = run_suite("incoming", path, rows.to_pandas(), suites.interactions_suite(cfg, items, known))
    return None if result.success else result.summary()


def process_inbox(cfg, root: Path) -> list[FileResult]:
    """`process_incoming` on the project's inbox (`incoming.uri` under `root`) against its current tables, with
    the raw checks and the data gate's GX suite: what `explainrec incoming process` and the retrain job run."""
    folder = Path(root) / cfg.incoming.uri
    folder.mkdir(parents=True, exist_ok=True)
    items_file = paths.resolve(paths.processed("items"), cfg, root)
    items = pl.read_parquet(items_file)
    users = pl.read_parquet(paths.resolve(paths.processed("users"), cfg, root))
    interactions = pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, root))
    drop_box, pulled = None, {}
    if cfg.incoming.remote_uri:  # an s3:// drop box in front of the inbox (incoming_s3.py)
        from explainrec_core.data import incoming_s3  # boto3: imported only when a drop box is configured
        from explainrec_core.storage import effective_settings

        drop_box = incoming_s3.open_drop_box(cfg.incoming.remote_uri, effective_settings(cfg.storage))
        pulled = incoming_s3.pull(drop_box, folder)
    results = process_incoming(folder, cfg.data.format, interactions, items, items_file,
                               check=lambda rows, path: gx_failures(cfg, rows, path, items, users), users=users)
    if drop_box is not None:
        incoming_s3.settle(drop_box, pulled, {r.name: (r.status, r.reason) for r in results})
    if any(r.appended for r in results) and (Path(root) / ".dvc").is_dir():
        track_with_dvc(Path(root), folder / ACCEPTED)
    return results


def track_with_dvc(root: Path, folder: Path) -> None:
    """`dvc add` the accepted files (in a DVC repo): every champion's data can be checked out again by its
    registry record's accepted file list and the accepted folder's .dvc file in git."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", str(folder.relative_to(root))], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode:
        raise DataError(str(folder), f"`dvc add` failed: {proc.stderr.strip()[-500:]}")
