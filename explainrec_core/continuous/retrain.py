"""Retraining on new interactions: a challenger warm-started from the champion, promoted only if not worse.

`retrain(cfg, root)` is what the Dagster `retrain` job (sensor, nightly schedule) and `explainrec retrain` run:

1. the registry gets the served champion if it has none yet (a snapshot of its adapter and item features);
2. the inbox is processed (data/incoming.process_inbox: raw checks + the GX interactions suite; bad files are
   quarantined whole); with no file accepted since the last retrain, it stops there ("nothing new");
3. the tables the model reads are rebuilt from the raw files plus every accepted file (ingest, samples, cold-start
   sets, item attributes, preference attributions, the knowledge base, item features), and the data gate and the
   item-features gate run: a failing suite stops the retrain before any training (QualityGateError);
4. the **newest window** is the samples whose rating came in the files accepted since the last retrain, in time
   order: the older part trains, the newest `retrain.eval_share` evaluates (never trained on);
5. the challenger starts from the champion: the same (frozen) attributed LoRA and the champion's fusion weights,
   trained on the window's training part with the champion's own loss and learning rate (CoLLM step 2, as
   explain_item_token_adapter) on the rebuilt item features;
6. champion (on the features it was trained with) and challenger score the same evaluation samples (AUC, paired
   95% interval) and explain the same `retrain.explain_samples` of them (faithfulness);
7. the challenger is promoted when its AUC is at least the champion's minus `retrain.auc_tolerance` and its
   faithfulness is not lower; otherwise the champion stays and the reason is recorded. Both go in the registry;
   `reports/retrain.json` holds the decision.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from explainrec_core import paths, pipeline
from explainrec_core.config import Config
from explainrec_core.continuous.registry import Registry, RegistryError
from explainrec_core.data import incoming
from explainrec_core.errors import QualityGateError, RetrainError
from explainrec_core.io import atomic_path, sha256_file, write_json

REBUILD = ("ingest", "samples", "cold_start_sets", "item_attributes", "preference_attributions",
           "preference_knowledge_base", "item_features")
"""The steps whose tables change with new interactions and that the champion's prompts and features read."""
GATES_AFTER = {"cold_start_sets": "validate", "item_features": "validate_item_features"}
KEY = ["user_id", "item_id", "timestamp"]



def accepted_files(cfg: Config, root: Path) -> list[str]:
    folder = root / cfg.incoming.uri / incoming.ACCEPTED
    return sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []


def _git_commit(root: Path) -> str | None:
    from explainrec_core.runner import _git_commit as commit  # the runner's helper: `git rev-parse HEAD` or None

    return commit(root)


def champion_record(cfg: Config, root: Path, registry: Registry, params_sha: str):
    """The registry's champion; the served adapter is registered as the first one when the registry is empty."""
    if registry.champion:
        return registry.current()
    served = root / paths.CHAMPION_ADAPTER
    if not served.is_dir():
        raise RetrainError(f"{served}: no champion to retrain from: run the pipeline first (`make demo`)")
    features = served / paths.ADAPTER_FEATURES
    if not features.is_file():
        features = paths.resolve(paths.ITEM_FEATURES, cfg, root)
    return registry.register(served, features, role="champion",
                             data_sha256=sha256_file(paths.resolve(paths.processed("interactions"), cfg, root)),
                             accepted_files=accepted_files(cfg, root), git_commit=_git_commit(root),
                             params_sha256=params_sha, decision="initial",
                             reason="the pipeline's champion (explain_item_token_adapter)")


def rebuild_tables(cfg: Config, root: Path, log=print) -> dict:
    """Rerun the data steps on raw + accepted files, each followed by its quality gate; QualityGateError if one
    fails."""
    stats = {}
    for name in REBUILD:
        start = time.perf_counter()
        stats[name] = pipeline.run_step(name, cfg, root)
        log(f"rebuilt {name} in {time.perf_counter() - start:.0f} s")
        if name in GATES_AFTER:
            results = pipeline.run_gate(cfg, root, pipeline.find_gate(GATES_AFTER[name]))
            failed = [r for r in results if not r.success]
            if failed:
                raise QualityGateError(f"quality gate {GATES_AFTER[name]} failed after rebuilding with the new "
                                       f"interactions: " + "; ".join(r.summary()[:500] for r in failed))
    return stats


def newest_window(cfg: Config, root: Path, new_files: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, eval) samples of the ratings in `new_files`, split by time: eval is the newest share."""
    folder = root / cfg.incoming.uri / incoming.ACCEPTED
    keys = pl.concat([pl.read_parquet(folder / name).select(KEY) for name in new_files]).unique()
    samples = pl.read_parquet(paths.resolve(paths.processed("samples"), cfg, root))
    window = samples.join(keys, on=KEY, how="semi").sort("timestamp", "sample_id")
    n_eval = round(window.height * cfg.retrain.eval_share)
    return window.head(window.height - n_eval), window.tail(n_eval)


def _pick(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    return frame.sample(n=n, seed=seed).sort("sample_id") if 0 < n < frame.height else frame.sort("sample_id")


def retrain(cfg: Config, root: Path, params_sha256: str = "", log=print) -> dict:
    root = Path(root)
    registry = Registry(root)
    champion = champion_record(cfg, root, registry, params_sha256)
    files = incoming.process_inbox(cfg, root)
    for f in files:
        log(f.line())
    # New = accepted since the last retrain looked (a rejected challenger's window is not retried forever).
    seen = {name for record in registry.models for name in record.accepted_files}
    new_files = sorted(set(accepted_files(cfg, root)) - seen)
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "champion": champion.id,
                    "inbox": [f.line() for f in files], "new_accepted_files": new_files}
    if not new_files:
        report.update(decision="nothing new", reason="no accepted interactions since the last retrain")
        write_report(report, root)
        return report
    start = time.perf_counter()
    report["rebuilt"] = {k: v for k, v in rebuild_tables(cfg, root, log).items() if k in ("ingest", "samples")}
    train_rows, eval_rows = newest_window(cfg, root, new_files)
    r = cfg.retrain
    train_rows, eval_rows = _pick(train_rows, r.train_samples, r.seed), _pick(eval_rows, r.eval_samples, r.seed)
    if eval_rows["label"].n_unique() < 2 or train_rows.is_empty():
        raise RetrainError(f"the newest window ({train_rows.height} training, {eval_rows.height} evaluation "
                           "samples) needs training samples and both labels among the evaluation ones: let more "
                           "interactions arrive or raise retrain.eval_samples")

    from explainrec_core.continuous.challenger import compare, train_challenger  # torch: only when training

    challenger_dir, training = train_challenger(cfg, root, champion, train_rows, log)
    metrics = compare(cfg, root, champion, challenger_dir, eval_rows, log)
    c, ch = metrics["champion"], metrics["challenger"]
    auc_ok = ch["auc"] >= c["auc"] - r.auc_tolerance
    faith_ok = (ch["faithfulness"] or 0.0) >= (c["faithfulness"] or 0.0)
    promote = auc_ok and faith_ok
    d = metrics["auc_difference"]
    reason = (f"challenger AUC {ch['auc']:.4f} vs champion {c['auc']:.4f} (tolerance {r.auc_tolerance}; paired "
              f"difference {d['delta']:+.4f} [{_num(d['ci95'][0])}, {_num(d['ci95'][1])}]), "
              f"faithfulness {ch['faithfulness']} vs {c['faithfulness']} on {eval_rows.height} newest samples")
    if not promote:
        reason = ("kept the champion: " + ("AUC below the tolerance" if not auc_ok else "lower faithfulness")
                  + "; " + reason)
    record = registry.register(
        challenger_dir, paths.resolve(paths.ITEM_FEATURES, cfg, root), role="challenger",
        data_sha256=sha256_file(paths.resolve(paths.processed("interactions"), cfg, root)),
        accepted_files=accepted_files(cfg, root), git_commit=_git_commit(root), params_sha256=params_sha256,
        parent=champion.id, metrics=metrics, decision="promoted" if promote else "not promoted", reason=reason)
    if promote:
        registry.promote(record.id, root / paths.CHAMPION_ADAPTER, reason)
    report.update(decision="promoted" if promote else "kept champion", reason=reason, challenger=record.id,
                  serving=registry.champion, window={"train": train_rows.height, "eval": eval_rows.height},
                  training=training, metrics=metrics, seconds=round(time.perf_counter() - start, 1))
    write_report(report, root)
    log(f"{report['decision']}: {reason}")
    return report


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.4f}"


def write_report(report: dict, root: Path) -> None:
    """reports/retrain.json and a readable reports/retrain.md (the decision, and both models on the window)."""
    write_json(report, root / paths.RETRAIN_REPORT)
    lines = ["# Retrain: champion vs challenger", "", f"Started {report['started']}. Champion before: "
             f"{report['champion']}. New accepted files: {len(report['new_accepted_files'])}.", "",
             f"**Decision: {report['decision']}** ({report['reason']})", ""]
    if "metrics" in report:
        m = report["metrics"]
        lines += [f"Newest window: {report['window']['train']} samples trained the challenger, "
                  f"{report['window']['eval']} newer ones evaluate both ({m['explained']} explained).", "",
                  "| model | AUC | faithfulness | citations | stance contradicts answer |", "|---|---|---|---|---|"]
        for name in ("champion", "challenger"):
            r = m[name]
            lines.append(f"| {name} | {r['auc']:.4f} | {r['faithfulness']} | {r['citations']} | "
                         f"{r.get('stance_contradicts_answer')} |")
        d = m["auc_difference"]
        lines += ["", f"Challenger - champion AUC: {d['delta']:+.4f}, 95% paired interval "
                      f"[{_num(d['ci95'][0])}, {_num(d['ci95'][1])}] ({d['verdict']})."]
    lines += ["", "The registry (`explainrec models`) lists every champion and challenger; "
                  "`explainrec models rollback` serves the previous champion."]
    with atomic_path(root / paths.RETRAIN_REPORT.replace(".json", ".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["QualityGateError", "RegistryError", "RetrainError", "retrain"]
