"""The quality gates: run the suites on the tables and report, readably, what failed.

Used by the Dagster asset checks (blocking), the DVC `validate*` stages and `explainrec data validate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import great_expectations as gx
import pandas as pd
import polars as pl

from explainrec_core.baselines.base import TrainingData  # the one definition of the training period
from explainrec_core.config import STORED_MODALITIES, Config
from explainrec_core.errors import DataError
from explainrec_core.knowledge import store
from explainrec_core.quality import suites, training_suites

logging.getLogger("great_expectations").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    detail: str
    examples: list = field(default_factory=list)

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "table"
        examples = f"; e.g. {self.examples[:5]}" if self.examples else ""
        return f"{self.expectation} on {where}: {self.detail}{examples}"


@dataclass(frozen=True)
class SuiteResult:
    name: str
    file: str
    n_rows: int
    n_expectations: int
    failures: list[Failure]

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = (f"{'PASS' if self.success else 'FAIL'} {self.name} ({self.file}, {self.n_rows} rows): "
                f"{self.n_expectations - len(self.failures)}/{self.n_expectations} expectations met")
        return "\n".join([head, *(f"  - {f}" for f in self.failures)])

    def to_dict(self) -> dict:
        return {**asdict(self), "success": self.success}


def run_suite(name: str, file: Path, df: pd.DataFrame, expectations: list) -> SuiteResult:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe(name).get_batch(batch_parameters={"dataframe": df}))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10})
    failures = [_failure(r) for r in result.results if not r.success]
    return SuiteResult(name, str(file), len(df), len(result.results), failures)


def _failure(r) -> Failure:
    config, res = r.expectation_config, r.result or {}
    kwargs = {k: v for k, v in config.kwargs.items()
              if k not in ("batch_id", "column", "value_set", "row_condition", "condition_parser")}
    if config.description:
        kwargs["about"] = config.description
    if r.exception_info and r.exception_info.get("raised_exception"):
        detail = f"could not run: {r.exception_info.get('exception_message')}"
    elif "unexpected_count" in res:
        detail = f"{res['unexpected_count']} of {res.get('element_count')} values unexpected"
    else:
        detail = f"observed {res.get('observed_value')!r}"
    column = config.kwargs.get("column") or ", ".join(config.kwargs.get("column_list", []) or []) or None
    return Failure(f"{config.type}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})", column, detail,
                   [_plain(v) for v in res.get("partial_unexpected_list", []) or []])


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def table_file(folder: str | Path, name: str) -> Path:
    return Path(folder) / f"{name}.parquet"


Files = dict[str, Path]  # artefact name -> path (pipeline.outputs, or a folder's tables)


def check_interactions(cfg: Config, files: Files) -> SuiteResult:
    items, users = pl.read_parquet(files["items"]), pl.read_parquet(files["users"])
    return run_suite("interactions", files["interactions"], pl.read_parquet(files["interactions"]).to_pandas(),
                     suites.interactions_suite(cfg, items, users))


def check_items(cfg: Config, files: Files) -> SuiteResult:
    return run_suite("items", files["items"], pl.read_parquet(files["items"]).to_pandas(), suites.items_suite(cfg))


def check_users(cfg: Config, files: Files) -> SuiteResult:
    users = pl.read_parquet(files["users"])
    return run_suite("users", files["users"], users.to_pandas(), suites.users_suite(cfg, users))


def check_samples(cfg: Config, files: Files) -> SuiteResult:
    return run_suite("samples", files["samples"], suites.samples_frame(pl.read_parquet(files["samples"]), cfg),
                     suites.samples_suite(cfg))


def check_cold_start_sets(cfg: Config, files: Files) -> SuiteResult:
    test_ids = pl.read_parquet(files["samples"]).filter(pl.col("split") == "test")["sample_id"].to_list()
    return run_suite("cold_start_sets", files["cold_start_sets"],
                     pl.read_parquet(files["cold_start_sets"]).to_pandas(), suites.cold_start_suite(test_ids))


def check_alpaca_data(cfg: Config, files: Files) -> SuiteResult:
    return run_suite("alpaca_data", files["alpaca_data"], pl.read_parquet(files["alpaca_data"]).to_pandas(),
                     suites.alpaca_suite())


def check_rec_prompts(cfg: Config, files: Files) -> SuiteResult:
    text = ("prompt",)
    frame = training_suites.prompts_frame(pl.read_parquet(files["rec_prompts"]), _sample_splits(files), text)
    return run_suite("rec_prompts", files["rec_prompts"], frame, training_suites.prompts_suite(text))


def check_explain_prompts(cfg: Config, files: Files) -> SuiteResult:
    text = ("prompt", "prompt_plain")
    frame = training_suites.prompts_frame(pl.read_parquet(files["explain_prompts"]), _sample_splits(files), text)
    return run_suite("explain_prompts", files["explain_prompts"], frame, training_suites.prompts_suite(text))


def check_item_attributes(cfg: Config, files: Files) -> SuiteResult:
    item_ids = pl.read_parquet(files["items"], columns=["item_id"])["item_id"].to_list()
    return run_suite("item_attributes", files["item_attributes"],
                     pl.read_parquet(files["item_attributes"]).to_pandas(),
                     training_suites.item_attributes_suite(cfg, item_ids))


def check_cross_domain_sets(cfg: Config, files: Files) -> SuiteResult:
    frame = training_suites.cross_domain_frame(pl.read_parquet(files["cross_domain_sets"]), cfg)
    return run_suite("cross_domain_sets", files["cross_domain_sets"], frame, training_suites.cross_domain_suite(cfg))


def check_item_features(cfg: Config, files: Files) -> SuiteResult:
    item_ids = pl.read_parquet(files["items"], columns=["item_id"])["item_id"].to_list()
    features = pl.read_parquet(files["item_features"])
    dims = {m: int(features[m].drop_nulls().list.len()[0]) for m in STORED_MODALITIES
            if m in features.columns and features[m].drop_nulls().len()}
    return run_suite("item_features", files["item_features"],
                     training_suites.item_features_frame(features, STORED_MODALITIES),
                     training_suites.item_features_suite(item_ids, dims, cfg.quality.min_attribute_coverage))


def check_preference_knowledge_base(cfg: Config, files: Files) -> SuiteResult:
    folder = files["preference_knowledge_base"]
    kb = store.load(folder)
    items = pl.read_parquet(files["items"])
    data = TrainingData.from_tables(pl.read_parquet(files["samples"]), pl.read_parquet(files["interactions"]), items,
                                    cfg.samples.like_threshold)
    cut = int(data.train["timestamp"].max())
    frame = training_suites.knowledge_base_frame(kb.tables, kb.manifest, items.height, data.interactions.height, cut)
    return run_suite("preference_knowledge_base", folder / "items.parquet", frame,
                     training_suites.knowledge_base_suite(items.height))


def _sample_splits(files: Files) -> pl.DataFrame:
    return pl.read_parquet(files["samples"], columns=["sample_id", "split"])


# Artefact name -> its check. The names are the Dagster asset keys the checks attach to.
CHECKS: dict[str, Callable[[Config, Files], SuiteResult]] = {
    "interactions": check_interactions,
    "items": check_items,
    "users": check_users,
    "samples": check_samples,
    "cold_start_sets": check_cold_start_sets,
    "alpaca_data": check_alpaca_data,
    "rec_prompts": check_rec_prompts,
    "explain_prompts": check_explain_prompts,
    "item_attributes": check_item_attributes,
    "cross_domain_sets": check_cross_domain_sets,
    "item_features": check_item_features,
    "preference_knowledge_base": check_preference_knowledge_base,
}
TABLES = ("interactions", "items", "users", "samples", "cold_start_sets", "item_attributes",
          "cross_domain_sets", "item_features")  # what lives in the processed folder


def validate_folder(cfg: Config, folder: str | Path) -> list[SuiteResult]:
    """Run every table check whose table is present in `folder` (at least the three normalised tables)."""
    files = {name: table_file(folder, name) for name in TABLES}
    missing = [str(files[n]) for n in ("interactions", "items", "users") if not files[n].is_file()]
    if missing:
        raise DataError(str(folder), f"missing normalised tables {missing} (run `explainrec data ingest`)")
    return [CHECKS[name](cfg, files) for name in TABLES if files[name].is_file()]
