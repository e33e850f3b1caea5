"""Run a whole settings profile (e.g. params/paper.yaml) step by step, resumably, in a folder of its own.

`explainrec run all --params params/paper.yaml --root runs/paper` is what `make paper` calls. Why not DVC: a profile
needs its own settings file and output folder beside the demo's, and DVC stages read the one params.yaml of the
project. This runner keeps DVC's two promises that matter for a two-hour run:
- resumable: a step whose fingerprint (its params sections and its inputs' fingerprints) is unchanged since it
  last finished is skipped; a training step interrupted mid-way resumes from its own checkpoint. The digest of its
  code files is recorded too: with `strict_code` a code change reruns the step (DVC's rule); by default it is only
  reported (`code_changed_since_run` in the summary), so a two-hour profile survives edits that do not change what
  a finished step computed (say so when reporting its numbers);
- one step per process: each step starts a fresh interpreter (`explainrec run STEP`), so memory is returned between
  steps and a crash stops the run at that step with its log kept in ROOT/logs/STEP.log.
`ROOT/reports/run_summary.json` records, per step, when it ran, for how long and whether it was reused, with the
git commit, the machine and the settings file's digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from explainrec_core import paths, pipeline
from explainrec_core.config import Config
from explainrec_core.io import write_json

STATE_DIR = ".run_state"


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _code_digest(project: Path, code: Iterable[str]) -> str:
    files = []
    for entry in code:
        path = project / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return _digest(f"{f.relative_to(project)}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files
                   if f.is_file())


def _files_digest(folder: Path) -> str:
    """The names and contents of every file under `folder` (none: the digest of nothing), e.g. new accepted
    interactions, so a step that reads them reruns when one arrives."""
    files = sorted(f for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []
    return _digest(f"{f.relative_to(folder)}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)


def _params_digest(cfg: Config, keys: Iterable[str]) -> str:
    values = {}
    for key in keys:
        value: object = cfg
        for part in key.split("."):
            value = getattr(value, part)
        values[key] = asdict(value) if hasattr(value, "__dataclass_fields__") else value
    return _digest([json.dumps(values, sort_keys=True, default=str)])


@dataclass(frozen=True)
class Node:
    inputs: tuple[str, ...]  # steps whose outputs (or metrics files) this node reads: they decide its fingerprint
    gates: tuple[str, ...]  # quality gates that must have passed first: order only (a gate makes no data)
    params: tuple[str, ...]
    code: tuple[str, ...]
    watch: tuple[str, ...] = ()  # path templates whose files' content enters the fingerprint (Step.watch)


def _nodes() -> dict[str, Node]:
    """Every runnable step and gate, in the pipeline's listed order."""
    producer = {out: s.name for s in pipeline.STEPS for out in s.outs}
    nodes: dict[str, Node] = {}
    for s in pipeline.STEPS:
        inputs = [producer[d] for d in s.deps if d in producer] + list(s.reads_metrics)
        gates = [g.name for g in pipeline.gates_of(s)] if s.gated else []
        nodes[s.name] = Node(tuple(dict.fromkeys(inputs)), tuple(gates), s.params, s.code, s.watch)
    for g in pipeline.GATES:
        nodes[g.name] = Node(tuple(dict.fromkeys(producer[c] for c in g.checks if c in producer)), (), g.params,
                             g.code)
    return nodes


def order() -> list[str]:
    """A topological order of the steps and gates that keeps the pipeline's listed order where it can."""
    nodes, done, result = _nodes(), set(), []
    while len(result) < len(nodes):
        ready = [n for n, node in nodes.items()
                 if n not in done and all(b in done for b in (*node.inputs, *node.gates))]
        if not ready:
            raise RuntimeError(f"the pipeline has a cycle among {sorted(set(nodes) - done)}")
        result.append(ready[0])
        done.add(ready[0])
    return result


def run_all(cfg: Config, params: Path, root: Path, project: Path, force: Iterable[str] = (),
            until: str | None = None, echo: Callable[[str], None] = print, strict_code: bool = False,
            skip: Iterable[str] = ()) -> dict:
    """Run every step of the profile under `root`, skipping the ones already done with the same fingerprint.

    `skip` names steps not to run at all this time (recorded as skipped; steps that read their outputs run on what
    exists, which only the report step tolerates: it reports the methods whose scores are there)."""
    root.mkdir(parents=True, exist_ok=True)
    _link_raw_data(cfg, root, project)
    nodes, state, force, skip = _nodes(), root / STATE_DIR, set(force), set(skip)
    state.mkdir(exist_ok=True)
    versions: dict[str, str] = {}  # node -> fingerprint + when it last ran: a rerun upstream reruns what reads it
    summary = {"params": str(params), "params_sha256": hashlib.sha256(params.read_bytes()).hexdigest(),
               "git_commit": _git_commit(project), "machine": _machine(), "started": _now(), "steps": []}
    for name in order():
        node = nodes[name]
        code_digest = _code_digest(project, node.code)
        fp = _digest([name, _params_digest(cfg, node.params), *(versions[b] for b in node.inputs),
                      *([code_digest] if strict_code else []),
                      *(_files_digest(paths.resolve(t, cfg, root)) for t in node.watch)])
        stamp = state / f"{name}.json"
        previous = json.loads(stamp.read_text()) if stamp.is_file() else {}
        if name in skip:
            echo(f"- {name}: skipped")
            summary["steps"].append({"step": name, "skipped": True, "reused": False, "seconds": 0.0})
            versions[name] = _digest(["skipped", name])
            if name == until:  # --until names the last step considered, run or skipped
                break
            continue
        if previous.get("fingerprint") == fp and name not in force:
            changed = previous.get("code_digest") != code_digest
            echo(f"= {name}: up to date (ran {previous['finished']}, {previous['seconds']:.0f} s)"
                 + ("; its code changed since" if changed else ""))
            summary["steps"].append({**previous, "reused": True, "code_changed_since_run": changed})
        else:
            echo(f"> {name}: running (log: {root / 'logs' / (name + '.log')})")
            record = _run_step(name, params, root)
            record.update(fingerprint=fp, code_digest=code_digest, git_commit=_git_commit(project))
            write_json(record, stamp)
            summary["steps"].append({**record, "reused": False})
            echo(f"  {name}: done in {record['seconds']:.0f} s")
            previous = record
        versions[name] = _digest([fp, previous["finished"]])
        write_json({**summary, "updated": _now()}, root / paths.RUN_SUMMARY)
        if name == until:
            break
    summary["finished"] = _now()
    summary["wall_seconds_run_now"] = round(sum(s["seconds"] for s in summary["steps"] if not s["reused"]), 1)
    write_json(summary, root / paths.RUN_SUMMARY)
    return summary


def _run_step(name: str, params: Path, root: Path) -> dict:
    log = root / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    started, start = _now(), time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "explainrec_core.runner", name, str(params.resolve())],
                              cwd=root, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise StepFailed(name, proc.returncode, log, "\n".join(tail))
    return {"step": name, "started": started, "finished": _now(), "seconds": seconds}


class StepFailed(RuntimeError):
    def __init__(self, name: str, code: int, log: Path, tail: str):
        super().__init__(f"step {name} failed (exit {code}); log {log}; rerun to resume from it:\n{tail}")


def _link_raw_data(cfg: Config, root: Path, project: Path) -> None:
    """The profile reads the project's raw data (fetched once by `make data`) through a link, never a copy."""
    raw = Path(cfg.data.raw_dir)
    if raw.is_absolute() or cfg.data.raw_dir.startswith("s3://"):
        return
    target, link = project / raw, root / raw
    if not link.exists() and target.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=True)


def _git_commit(project: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(project), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":  # one step in a fresh process: `python -m explainrec_core.runner STEP PARAMS`
    from explainrec_core.config import load_config

    step_name, params_file = sys.argv[1], Path(sys.argv[2])
    stats = pipeline.run_step(step_name, load_config(params_file), Path("."))
    print(json.dumps(stats, indent=1, default=str)[:4000])
