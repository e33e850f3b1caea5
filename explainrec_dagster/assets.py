"""One Dagster asset per pipeline artefact, generated from explainrec_core.pipeline (no logic of their own).

No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.
"""


import base64
from collections.abc import Iterator

import dagster as dg
import polars as pl

from explainrec_core import pipeline
from explainrec_dagster.resources import ExplainRecSettings


def _metadata_value(value: object):
    if isinstance(value, dict):
        return dg.MetadataValue.json(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def artefact_metadata(path, stats: dict) -> dict:
    """What people want to see on an asset: its path, row count, a preview, and the step's statistics."""
    meta: dict = {"path": dg.MetadataValue.path(str(path))}
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
        meta["rows"] = df.height
        meta["columns"] = ", ".join(f"{n}: {t}" for n, t in df.schema.items())
        with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                       fmt_str_lengths=60, tbl_cols=-1, tbl_width_chars=2000, fmt_table_cell_list_len=4):
            meta["preview"] = dg.MetadataValue.md(str(df.head(5)))
        if "label" in df.columns and df["label"].dtype.is_numeric():  # item_attributes' label is text
            meta["positive_rate"] = round(float(df["label"].mean()), 4)
    meta.update({k: _metadata_value(v) for k, v in stats.items()})
    return meta


def plot_metadata(root, step: pipeline.Step) -> dict:
    """Each figure of the step, inlined so the Dagster UI shows it."""
    meta = {}
    for plot in step.plots:
        path = root / plot
        if path.is_file():
            encoded = base64.b64encode(path.read_bytes()).decode()
            meta[path.stem] = dg.MetadataValue.md(f"![{path.stem}](data:image/png;base64,{encoded})")
    return meta


def source_asset(source: pipeline.Source) -> dg.AssetsDefinition:
    @dg.asset(name=source.name, group_name=source.group,
              description=f"Raw input files at {source.path} (fetched when they can be; DVC-tracked).")
    def _source(settings: ExplainRecSettings) -> dg.MaterializeResult:
        cfg = settings.config()
        stats = source.fetch(cfg, settings.root_path)
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(pipeline.resolve(source.path, cfg, settings.root_path))),
            **{k: _metadata_value(v) for k, v in stats.items()}})

    return _source


def upstream(step: pipeline.Step) -> list[str]:
    """A step's inputs, the outputs of the steps whose metrics it reads, and, for a training step, every asset
    its quality gates check, so a failing blocking check in the same run stops it."""
    names = list(step.deps)
    names += [out for name in step.reads_metrics for out in pipeline.step(name).outs]
    names += list(pipeline.gate_checks(step))
    return list(dict.fromkeys(names))


HEAVY_TAG = "explainrec/cpu"
"""Op tag of the steps that use every core (training, LLM scoring, baselines); the executor runs one at a time."""


def cpu_tags(step: pipeline.Step) -> dict:
    """Training and evaluation steps each use all torch threads; two at once on a small machine oversubscribe the
    cores (measured on 2 cores: load above 4, 27 instead of 190 training tokens/s) and double the memory. Two at once
    with ONE thread each was no faster either (2026-12-07 demo: Dagster run 20 min 54 s vs 21 min 29 s, with the
    cold-start sets halved in the same run): a lone runnable heavy step then used one core, and on this CPU a step's
    second thread nearly halves its time (explain_adapter_ablation: 123 s on one thread beside another step, 57 s on
    two threads alone; not a clean single-step measurement)."""
    # item_features encodes every item's text and fits the collaborative model: as heavy as a training step (beside
    # stage 1 in the 2026-12-07 demo it took 66 s instead of 32 s, and stage 1 35 s instead of 17 s)
    return {HEAVY_TAG: "heavy"} if step.gated or step.group in ("train", "evaluate", "multimodal") else {}


def step_assets(step: pipeline.Step) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(name, deps=upstream(step), group_name=step.group, description=step.doc,
                          metadata={"path_template": template})
             for name, template in step.outs.items()]

    @dg.multi_asset(name=step.name, specs=specs, op_tags=cpu_tags(step))
    def _step(context: dg.AssetExecutionContext, settings: ExplainRecSettings) -> Iterator[dg.MaterializeResult]:
        cfg = settings.config()
        context.log.info(f"running step {step.name} with {settings.params}")
        stats = pipeline.run_step(step.name, cfg, settings.root_path)
        for name, template in step.outs.items():
            path = pipeline.resolve(template, cfg, settings.root_path)
            yield dg.MaterializeResult(asset_key=name, metadata={**artefact_metadata(path, stats),
                                                                 **plot_metadata(settings.root_path, step)})

    return _step


ASSETS = [*(source_asset(s) for s in pipeline.SOURCES), *(step_assets(s) for s in pipeline.STEPS)]
