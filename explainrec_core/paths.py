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
BASELINE_RANKING = "data/scores/baseline_ranking.parquet"  # rank of the positive in each list, per method/seed
LLM_RANKING = "data/scores/llm_ranking.parquet"
EVALUATION_MD = "reports/evaluation.md"
EVALUATION_HTML = "reports/evaluation.html"
METRICS = "reports/metrics.json"
EXPLAIN_PROMPTS = "data/prompts/explain_prompts.parquet"
EXPLAIN_ADAPTER = "models/explain_adapter"
CHAMPION = "explain_item_token_adapter"
"""The model people are served (`explain`, `recommend`) and that is published: the attributed model (it explains)
with item tokens. One name, so the published adapter can never differ from the served one."""
EXPLAIN_ADAPTER_ABLATION = "models/explain_adapter_no_attribution"
EXPLAIN_SCORES = "data/scores/explain_scores.parquet"
EXPLANATIONS = "data/scores/explanations.parquet"
EXPLAIN_RANKING = "data/scores/explain_ranking.parquet"
ITEM_FEATURES = "${data.processed_dir}/item_features.parquet"
ITEM_TOKEN_ADAPTER = "models/item_token_adapter"  # the rec adapter's LoRA + the fusion (fusion.safetensors)
ITEM_TOKEN_SCORES = "data/scores/item_token_scores.parquet"
ITEM_TOKEN_RANKING = "data/scores/item_token_ranking.parquet"
EXPLAIN_ITEM_TOKEN_ADAPTER = "models/explain_item_token_adapter"  # explain_adapter's LoRA + its own fusion
CHAMPION_ADAPTER = EXPLAIN_ITEM_TOKEN_ADAPTER
CHAMPION_ABLATIONS = "models/champion_ablations"  # one folder per Table II modality row: <group>/ (LoRA + fusion)
CHAMPION_ABLATION_SCORES = "data/scores/champion_ablation_scores.parquet"  # their P(Yes) on the test samples
CHAMPION_ABLATION_RANKING = "data/scores/champion_ablation_ranking.parquet"  # their scores of the LLM's lists
ADAPTER_FEATURES = "item_features.parquet"
"""In an item-token adapter folder put there by the model registry: the item features its fusion was trained on
(the pipeline's own adapters use ITEM_FEATURES)."""
REGISTRY = "models/registry.json"  # every champion and challenger (explainrec_core/continuous/registry.py)
REGISTRY_STORE = "models/registry"  # one folder per registered model: adapter + its item features
RETRAIN_REPORT = "reports/retrain.json"  # the last retrain's champion/challenger decision
KNOWLEDGE_BASE = "${data.processed_dir}/knowledge_base"  # a folder: parquet tables + manifest.json
KNOWLEDGE_BASE_SCORES = "data/scores/knowledge_base_scores.parquet"  # eq. 5's P(i | u) of every evaluated sample
META_MODEL = "models/meta_recommender"  # eq. 6's meta-learned new-user model (safetensors + config.json)
META_SCORES = "data/scores/meta_scores.parquet"  # every variant's P(like) on the true cold-start curve sets
CROSS_DOMAIN_PROMPTS = "data/prompts/cross_domain_prompts.parquet"  # TALLRec prompts of the cross-domain sets
CROSS_DOMAIN_ADAPTER = "models/cross_domain_adapter"  # the TALLRec recipe trained on the source domain only
CROSS_DOMAIN_SCORES = "data/scores/cross_domain_scores.parquet"  # every method's scores of the held-out domain
MULTITASK_ADAPTER = "models/multitask_adapter"  # the TALLRec recipe trained on preference + rating prediction
MULTITASK_SCORES = "data/scores/multitask_scores.parquet"  # its P(Yes) on the test and cold-start samples
MULTITASK_RATINGS = "data/scores/multitask_ratings.parquet"  # its expected star rating of the test samples
RATING_SCORES = "data/scores/rating_scores.parquet"  # every rating model's predicted stars (rating_evaluation)
CHATREC_SCORES = "data/scores/chatrec_scores.parquet"  # Chat-REC's P(Yes) on the LLM's test and cold-start samples
P5_ADAPTER = "models/p5_adapter"  # the P5 baseline: P5's prompt families (ID words) on the base LLM
P5_SCORES = "data/scores/p5_scores.parquet"  # its P(Yes) on the LLM's test and cold-start samples
P5_RANKING = "data/scores/p5_ranking.parquet"  # its scores of the LLM's candidate lists
INCOMING_ACCEPTED = "${incoming.uri}/accepted"  # accepted new interactions (data/incoming.py), read by ingest
CHECKPOINTS = "models/checkpoints"
# Finished parts of long evaluation steps (steps/partial_results.py), kept so a rerun redoes only what changed
EVALUATION_PARTS = "data/scores/parts"
FIGURES = "reports/figures"
# The statistics files of the steps whose numbers the report reads. pipeline.py declares each as that step's metrics
# file (tests/test_report.py checks that they agree); listed here so the report step need not import the pipeline.
# `explainrec run all`'s record of the invocation (steps run, reused, skipped): the report reads which were skipped.
RUN_SUMMARY = "reports/run_summary.json"

STEP_METRICS = {
    "base_model": "reports/models/base_model.json",
    "alpaca_adapter": "reports/models/alpaca_adapter.json",
    "rec_adapter": "reports/models/rec_adapter.json",
    "rec_evaluation": "reports/rec_evaluation.json",
    "ranking_candidates": "reports/ranking_candidates.json",
    "llm_ranking": "reports/llm_ranking.json",
    "explain_adapter": "reports/models/explain_adapter.json",
    "explain_adapter_ablation": "reports/models/explain_adapter_ablation.json",
    "explain_evaluation": "reports/explain_evaluation.json",
    "item_features": "reports/data/item_features.json",
    "item_token_adapter": "reports/models/item_token_adapter.json",
    "item_token_evaluation": "reports/item_token_evaluation.json",
    "explain_item_token_adapter": "reports/models/explain_item_token_adapter.json",
    "champion_ablations": "reports/champion_ablations.json",
    "preference_knowledge_base": "reports/data/preference_knowledge_base.json",
    "baselines": "reports/baselines.json",
    "meta_adaptation": "reports/models/meta_adaptation.json",
    "cross_domain_adapter": "reports/models/cross_domain_adapter.json",
    "cross_domain_evaluation": "reports/cross_domain_evaluation.json",
    "chatrec_evaluation": "reports/chatrec_evaluation.json",
    "p5_adapter": "reports/models/p5_adapter.json",
    "p5_evaluation": "reports/p5_evaluation.json",
    "rating_evaluation": "reports/rating_evaluation.json",
    "multitask_adapter": "reports/models/multitask_adapter.json",
    "multitask_evaluation": "reports/multitask_evaluation.json",
}


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
