"""Property test of the inbox (hypothesis): random sequences of good, duplicate, overlapping and bad files, with
crashes injected between the steps of processing a file; the result must be the same as without crashes.

Real ML-100K rows: the current interactions are the first 2,000 ratings in time order, the files draw from the next
300, bad files add one bad line (unknown item, rating out of range, a line that does not parse)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explainrec_core.data import incoming
from tests.conftest import read_table

BAD_LINES = ("1\t99999\t4\t880000000",  # an item nobody knows
             "1\t1\t9\t880000000",  # a rating out of range
             "this is not a rating")
CRASH_POINTS = ("write_parquet", "write_json", "_move")  # before the rows / before the ledger / before the move


class Crash(RuntimeError):
    pass


def _tables(processed: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    folder = processed / "data/processed"
    ordered = read_table(folder, "interactions").sort("timestamp", "user_id", "item_id").select(incoming.COLUMNS)
    return ordered.head(2000), ordered.slice(2000, 300), read_table(folder, "items")


files = st.lists(st.tuples(st.lists(st.integers(0, 299), min_size=1, max_size=40),  # rows of the pool
                           st.integers(0, 5),  # rows repeated from the current interactions
                           st.sampled_from((None, *BAD_LINES)),  # a bad line, or none
                           st.booleans(),  # sent again later under another name
                           st.sampled_from((None, *CRASH_POINTS))),  # a crash while processing it
                 min_size=1, max_size=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=files)
def test_inbox_equals_the_union_of_good_rows_whatever_crashes(processed_ml100k, plan):
    current, pool, items = _tables(processed_ml100k)
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp)
        expected, bad_names = set(), []
        for n, (picks, repeats, bad, resend, crash) in enumerate(plan):
            rows = pl.concat([pool[sorted(set(picks))], current.head(repeats)])
            lines = [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in rows.iter_rows()] + ([bad] if bad else [])
            names = [f"batch-{n:02d}.data"] + ([f"batch-{n:02d}-again.data"] if resend else [])
            for name in names:
                (inbox / name).write_text("\n".join(lines) + "\n")
            if bad:
                bad_names += names
            else:
                expected |= set(rows.select("user_id", "item_id", "timestamp").iter_rows())
            if crash:  # the crash hits the first file of this run that reaches that point; then a clean rerun
                with mock.patch.object(incoming, crash, side_effect=Crash(crash)):
                    try:
                        incoming.process_incoming(inbox, "ml-100k", current, items, inbox / "items")
                    except Crash:
                        pass
            incoming.process_incoming(inbox, "ml-100k", current, items, inbox / "items")

        accepted = incoming.accepted_ratings(inbox)
        keys = list(accepted.select("user_id", "item_id", "timestamp").iter_rows())
        known = set(current.select("user_id", "item_id", "timestamp").iter_rows())
        assert len(keys) == len(set(keys))  # no row twice
        assert set(keys) == expected - known  # every good row once, nothing from a bad file or already known
        quarantined = {p.name for p in (inbox / incoming.QUARANTINE).glob("*.data")} \
            if (inbox / incoming.QUARANTINE).is_dir() else set()
        assert quarantined == set(bad_names)
        for name in bad_names:
            assert (inbox / incoming.QUARANTINE / f"{name}.reason.txt").read_text().strip()
        assert not [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]  # inbox empty
