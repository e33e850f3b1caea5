"""Continuous training in Dagster: the `model_registry` asset, the `retrain` job, a sensor and a nightly schedule.

Thin: the work is explainrec_core.continuous.retrain (the same function as `explainrec retrain`).

- `model_registry` (asset): one retrain, recorded in models/registry.json; its metadata shows the decision, the
  champion and challenger metrics on the newest window and the registry's table, so the UI shows why a model was
  (not) promoted. Transient failures (I/O, the artifact store) are retried by its RetryPolicy; bad data or settings
  fail at once (`Failure(allow_retries=False)`): retrying would not change them, and nothing was promoted.
- `retrain` (job): materialises `model_registry`.
- `new_interactions_sensor`: launches `retrain` when the inbox holds files it has not launched for. Its cursor
  (kept by the Dagster instance, so it survives restarts) and the run key are the digest of the pending files' names
  and sizes: a file is launched for once, and a file that changes is launched for again.
- `nightly_retrain` (schedule, `retrain.cron` in params.yaml): the same job every night, so files that arrive while
  the sensor is off are still picked up (a retrain with nothing new records "nothing new" and trains nothing).

A sensor rather than a declarative automation condition: the trigger is a file in a folder that no asset
materialises (the inbox), and automation conditions react to asset events; the schedule could be
`AutomationCondition.on_cron` on the asset, but a named schedule is what people look for on the Automation page.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from explainrec_core import paths
from explainrec_core.config import Config, load_config
from explainrec_core.data import incoming
from explainrec_core.errors import ExplainRecError, StorageError
from explainrec_dagster.assets import HEAVY_TAG
from explainrec_dagster.resources import ExplainRecSettings

RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(name="model_registry", deps=[paths.CHAMPION], group_name="continuous", retry_policy=RETRY,
          op_tags={HEAVY_TAG: "heavy"},
          description="Every champion and challenger (models/registry.json): new interactions -> quality gate -> "
                      "rebuilt tables -> challenger warm-started from the champion -> both on the newest window -> "
                      "promoted only if not worse.")
def model_registry(context: dg.AssetExecutionContext, settings: ExplainRecSettings) -> dg.MaterializeResult:
    from explainrec_core.continuous.registry import Registry
    from explainrec_core.continuous.retrain import retrain

    root = settings.root_path
    try:
        params_sha = hashlib.sha256((root / settings.params).read_bytes()).hexdigest()
        report = retrain(settings.config(), root, params_sha, log=context.log.info)
    except StorageError:
        raise  # transient: the RetryPolicy tries again
    except ExplainRecError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    registry = Registry(root)
    rows = ["| id | role | decision | parent | reason |", "|---|---|---|---|---|"]
    rows += [f"| {m.id} | {m.role} | {m.decision} | {m.parent or '-'} | {m.reason} |" for m in registry.models]
    return dg.MaterializeResult(metadata={
        "decision": report["decision"], "reason": report["reason"], "serving": registry.champion,
        "challenger": report.get("challenger", ""), "new_accepted_files": len(report["new_accepted_files"]),
        "metrics": dg.MetadataValue.json(report.get("metrics", {})),
        "registry": dg.MetadataValue.md("\n".join(rows)),
        "path": dg.MetadataValue.path(str(root / paths.REGISTRY))})


retrain_job = dg.define_asset_job("retrain", selection=[model_registry],
                                  description="Process new interactions and retrain: a challenger from the champion, "
                                              "promoted only if it is not worse on the newest window.")


def pending_files(cfg: Config, root: Path) -> list[tuple[str, int]]:
    """(name, size) of the inbox files not yet processed (its own folders and ledger excluded), and of the objects
    waiting in the s3:// drop box when `incoming.remote_uri` is set."""
    files = [(p.name, p.stat().st_size) for p in incoming.pending(root / cfg.incoming.uri)]
    if cfg.incoming.remote_uri:
        from explainrec_core.data import incoming_s3
        from explainrec_core.storage import effective_settings

        box = incoming_s3.open_drop_box(cfg.incoming.remote_uri, effective_settings(cfg.storage))
        files += [(box.uri(o.key), o.size) for o in incoming_s3.pending_objects(box)]
    return files


def inbox_digest(files: list[tuple[str, int]]) -> str:
    return hashlib.sha256(json.dumps([list(f) for f in files]).encode()).hexdigest()[:16]


def _settings_config() -> tuple[Config, int]:
    """params.yaml's retrain settings for the definitions (defaults if the file is absent)."""
    settings = ExplainRecSettings()
    path = Path(settings.root) / settings.params
    cfg = load_config(path) if path.is_file() else Config()
    return cfg, cfg.retrain.sensor_interval_s


_CFG, _INTERVAL = _settings_config()


@dg.sensor(job=retrain_job, minimum_interval_seconds=_INTERVAL,
           description="Launches `retrain` when new files are in the inbox (incoming.uri) or its s3:// "
                       "drop box (incoming.remote_uri).")
def new_interactions_sensor(context: dg.SensorEvaluationContext, settings: ExplainRecSettings):
    cfg, root = settings.config(), settings.root_path
    files = pending_files(cfg, root)
    if not files:
        where = root / cfg.incoming.uri
        return dg.SkipReason(f"no new files in {where}" + (f" or {cfg.incoming.remote_uri}"
                                                           if cfg.incoming.remote_uri else ""))
    digest = inbox_digest(files)
    if digest == context.cursor:
        return dg.SkipReason(f"already launched for these {len(files)} file(s)")
    context.update_cursor(digest)
    return dg.RunRequest(run_key=f"inbox-{digest}", tags={"explainrec/inbox_files": str(len(files))})


nightly_retrain = dg.ScheduleDefinition(name="nightly_retrain", job=retrain_job, cron_schedule=_CFG.retrain.cron,
                                        execution_timezone="UTC",
                                        description="Retrain every night on whatever arrived (retrain.cron).")

