"""Where every artefact lives: path templates over params.yaml keys, shared by steps, Dagster and DVC.

`${data.processed_dir}` is the same interpolation syntax dvc.yaml uses, so one string serves both.
"""

from __future__ import annotations

import re
from pathlib import Path

from explainrec_core.config import Config

RAW = "${data.raw_dir}"
PROCESSED = "${data.processed_dir}"
BASE_MODEL = "models/base_model.json"
ALPACA_DATA = "data/alpaca/alpaca.parquet"
ALPACA_ADAPTER = "models/alpaca_adapter"
REC_PROMPTS = "data/prompts/rec_prompts.parquet"
REC_ADAPTER = "models/rec_adapter"
REC_SCORES = "data/scores/rec_scores.parquet"
RANKING_CANDIDATES = "data/eval/ranking_candidates.parquet"
BASELINE_RESULTS = "data/scores/baseline_results.parquet"
BASELINE_SCORES = "data/scores/baseline_scores.parquet"
LLM_RANKING = "data/scores/llm_ranking.parquet"
EVALUATION_MD = "reports/evaluation.md"
EVALUATION_HTML = "reports/evaluation.html"
METRICS = "reports/metrics.json"
EXPLAIN_PROMPTS = "data/prompts/explain_prompts.parquet"
EXPLAIN_ADAPTER = "models/explain_adapter"
EXPLAIN_ADAPTER_ABLATION = "models/explain_adapter_no_attribution"
EXPLAIN_SCORES = "data/scores/explain_scores.parquet"
EXPLANATIONS = "data/scores/explanations.parquet"
EXPLAIN_RANKING = "data/scores/explain_ranking.parquet"
CHECKPOINTS = "models/checkpoints"
FIGURES = "reports/figures"


def processed(name: str) -> str:
    return f"{PROCESSED}/{name}.parquet"


def resolve(template: str, cfg: Config, root: Path | str = ".") -> Path:
    """`${data.processed_dir}/x.parquet` -> root/data/processed/x.parquet, from the settings."""

    def lookup(match: re.Match) -> str:
        value: object = cfg
        for part in match.group(1).split("."):
            value = getattr(value, part)
        return str(value)

    return Path(root) / re.sub(r"\$\{([^}]+)\}", lookup, template)
