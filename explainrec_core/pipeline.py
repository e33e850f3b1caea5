"""The pipeline, described once: sources, steps and the quality gate.

Dagster (explainrec_dagster) and DVC (dvc.yaml) are projections of this description; tests/test_pipeline_graph.py
fails when either disagrees with it. Paths are templates over params.yaml keys (see paths.py).

A step function takes the settings and the project root, writes its outputs atomically, and returns the
statistics that become Dagster metadata and the DVC metrics file. Steps marked `gated` train models: in DVC
they depend on the quality gate's report, in Dagster on the assets whose blocking checks form the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from explainrec_core import paths
from explainrec_core.config import Config
from explainrec_core.errors import DataError, QualityGateError
from explainrec_core.io import is_main_process, write_json
from explainrec_core.quality.gate import CHECKS, SuiteResult
from explainrec_core.steps import data_steps, eval_steps, explain_steps, llm_steps

StepFn = Callable[[Config, Path], dict]
resolve = paths.resolve


@dataclass(frozen=True)
class Source:
    """Raw input that no step produces. DVC tracks it with `dvc add`; Dagster materialises it by fetching."""

    name: str
    path: str
    group: str
    fetch: StepFn


@dataclass(frozen=True)
class Step:
    name: str
    group: str
    fn: StepFn
    deps: tuple[str, ...]  # names of sources or other steps' outputs
    outs: dict[str, str]  # output name (= Dagster asset key) -> path template
    params: tuple[str, ...]  # params.yaml sections (or dotted keys) the step reads
    metrics: str  # JSON statistics file; a DVC metrics file and Dagster metadata
    code: tuple[str, ...]  # source files whose change must re-run the step (DVC deps)
    plots: tuple[str, ...] = ()  # figures the step draws (DVC plots, Dagster metadata)
    reads_metrics: tuple[str, ...] = ()  # steps whose metrics files this step reads (DVC deps too)
    gated: bool = False  # trains a model: must sit downstream of the quality gate
    doc: str = ""


@dataclass(frozen=True)
class Gate:
    """The quality gate: one GX suite per checked output. A DVC stage; Dagster asset checks (blocking)."""

    name: str
    checks: tuple[str, ...]
    params: tuple[str, ...]
    report: str
    code: tuple[str, ...]


DATA_CODE = ("explainrec_core/data/ingest.py", "explainrec_core/data/movielens.py", "explainrec_core/data/rawcheck.py",
             "explainrec_core/data/amazon.py", "explainrec_core/data/jsonlines.py")
LLM_CODE = ("explainrec_core/steps/llm_steps.py", "explainrec_core/models/base_model.py",
            "explainrec_core/models/adapters.py", "explainrec_core/prompts.py")
TRAIN_CODE = (*LLM_CODE, "explainrec_core/training/engine.py", "explainrec_core/training/examples.py")

ATTRIBUTION_CODE = ("explainrec_core/steps/explain_steps.py", "explainrec_core/attribution",
                    "explainrec_core/prompts.py")
EXPLAIN_TRAIN_CODE = (*ATTRIBUTION_CODE, *TRAIN_CODE, "explainrec_core/training/joint_loss.py")

SOURCES = (
    Source("raw_data", paths.RAW, "ingest", data_steps.fetch_raw),
)

STEPS = (
    Step("ingest", "ingest", data_steps.run_ingest, deps=("raw_data",),
         outs={name: paths.processed(name) for name in ("interactions", "items", "users")}, params=("data",),
         metrics="reports/data/ingest.json", code=DATA_CODE,
         doc="Normalise the raw files into interactions, items and users tables."),
    Step("samples", "prepare", data_steps.run_samples, deps=("interactions",),
         outs={"samples": paths.processed("samples")}, params=("samples", "split"),
         metrics="reports/data/samples.json", code=("explainrec_core/data/samples.py",),
         doc="History/target samples with labels, split 80/10/10 by global time order."),
    Step("cold_start_sets", "prepare", data_steps.run_cold_start_sets, deps=("samples", "interactions"),
         outs={"cold_start_sets": paths.processed("cold_start_sets")}, params=("cold_start",),
         metrics="reports/data/cold_start.json", code=("explainrec_core/data/samples.py",),
         doc="Test samples of new users and new items (few training-period interactions)."),
    Step("cross_domain_sets", "prepare", data_steps.run_cross_domain_sets, deps=("samples", "interactions", "items"),
         outs={"cross_domain_sets": paths.processed("cross_domain_sets")},
         params=("cross_domain", "samples.history_len"), metrics="reports/data/cross_domain.json",
         code=("explainrec_core/data/cross_domain.py",),
         doc="Zero-shot cross-domain sets: source-genre training samples, held-out-genre evaluation samples."),
    Step("base_model", "model", llm_steps.run_base_model, deps=(),
         outs={"base_model": paths.BASE_MODEL}, params=("model",),
         metrics="reports/models/base_model.json", code=("explainrec_core/models/base_model.py",),
         doc="The base LLM (local folder, hub name or embedded SmolLM2-135M-Instruct) and its answer tokens."),
    Step("alpaca_data", "prepare", llm_steps.run_alpaca_data, deps=(),
         outs={"alpaca_data": paths.ALPACA_DATA}, params=("alpaca",),
         metrics="reports/data/alpaca.json", code=("explainrec_core/data/alpaca.py",),
         doc="Alpaca-format instruction data for stage 1 (user JSON, or the Self-Instruct seed tasks)."),
    Step("alpaca_adapter", "train", llm_steps.run_alpaca_adapter, deps=("base_model", "alpaca_data"),
         outs={"alpaca_adapter": paths.ALPACA_ADAPTER}, params=("lora", "alpaca_training"),
         metrics="reports/models/alpaca_adapter.json", code=TRAIN_CODE,
         plots=(f"{paths.FIGURES}/alpaca_adapter_training.png",), gated=True,
         doc="Stage 1: LoRA instruction tuning on the Alpaca data."),
    Step("rec_prompts", "prepare", llm_steps.run_rec_prompts,
         deps=("samples", "items", "cold_start_sets", "base_model"),
         outs={"rec_prompts": paths.REC_PROMPTS}, params=("rec_prompts", "rec_training.cutoff"),
         metrics="reports/data/rec_prompts.json", code=LLM_CODE,
         doc="TALLRec prompts for the few-shot train, valid, test and cold-start sample sets."),
    Step("rec_adapter", "train", llm_steps.run_rec_adapter, deps=("base_model", "alpaca_adapter", "rec_prompts"),
         outs={"rec_adapter": paths.REC_ADAPTER}, params=("rec_training", "evaluation"),
         metrics="reports/models/rec_adapter.json",
         code=(*TRAIN_CODE, "explainrec_core/evaluation/scoring.py"),
         plots=(f"{paths.FIGURES}/rec_adapter_training.png",), gated=True,
         doc="Stage 2: recommendation tuning from the stage-1 adapter, early-stopped on validation AUC."),
    Step("rec_evaluation", "evaluate", llm_steps.run_rec_evaluation, deps=("base_model", "rec_adapter", "rec_prompts"),
         outs={"rec_scores": paths.REC_SCORES}, params=("evaluation",),
         metrics="reports/rec_evaluation.json", code=(*LLM_CODE, "explainrec_core/evaluation/scoring.py"),
         doc="P(Yes) of the test and cold-start samples; AUC per set."),
    Step("ranking_candidates", "prepare", eval_steps.run_ranking_candidates, deps=("samples", "interactions"),
         outs={"ranking_candidates": paths.RANKING_CANDIDATES}, params=("ranking",),
         metrics="reports/ranking_candidates.json", code=("explainrec_core/evaluation/ranking.py",),
         doc="Each liked test target with 99 seeded unrated items: the same candidates for every method."),
    Step("baselines", "evaluate", eval_steps.run_baselines,
         deps=("samples", "interactions", "items", "cold_start_sets", "rec_prompts", "ranking_candidates"),
         outs={"baseline_results": paths.BASELINE_RESULTS, "baseline_scores": paths.BASELINE_SCORES},
         params=("baselines", "ranking"), metrics="reports/baselines.json",
         code=("explainrec_core/steps/eval_steps.py", "explainrec_core/baselines"), gated=True,
         doc="Popularity, BPR-MF, LightGCN, SASRec and content-based, per seed, under the LLM's protocol."),
    Step("llm_ranking", "evaluate", eval_steps.run_llm_ranking,
         deps=("base_model", "rec_adapter", "ranking_candidates", "items"),
         outs={"llm_ranking": paths.LLM_RANKING}, params=("ranking",), metrics="reports/llm_ranking.json",
         code=("explainrec_core/steps/eval_steps.py", "explainrec_core/evaluation/prefix_scoring.py"),
         doc="The rec adapter ranks candidate lists, computing each user's prompt prefix once (KV cache)."),
    Step("item_attributes", "attribution", explain_steps.run_item_attributes, deps=("items", "raw_data"),
         outs={"item_attributes": paths.processed("item_attributes")},
         params=("attribution.imdb_attributes", "attribution.kg_roles", "attribution.min_actor_films"),
         metrics="reports/data/item_attributes.json", code=("explainrec_core/attribution/attributes.py",),
         doc="Item attributes from every source: genres, era, IMDb runtime/MPAA/rating, people shared via Freebase."),
    Step("preference_attributions", "attribution", explain_steps.run_preference_attributions,
         deps=("samples", "interactions", "items", "item_attributes"),
         outs={"preference_attributions": paths.processed("preference_attributions")},
         params=("attribution.prior_strength", "samples.like_threshold"),
         metrics="reports/data/preference_attributions.json", code=ATTRIBUTION_CODE,
         doc="Per user: smoothed log-odds of each attribute in liked vs disliked training-period ratings."),
    Step("explain_prompts", "attribution", explain_steps.run_explain_prompts,
         deps=("rec_prompts", "samples", "items", "item_attributes", "base_model"),
         outs={"explain_prompts": paths.EXPLAIN_PROMPTS},
         params=("attribution.prior_strength", "attribution.reasons_per_item", "attribution.max_cited",
                 "explain_training.cutoff"),
         metrics="reports/data/explain_prompts.json", code=ATTRIBUTION_CODE,
         doc="Attribution-enhanced prompts (and plain ones for the ablation) with reference explanations."),
    Step("explain_adapter", "train", explain_steps.run_explain_adapter,
         deps=("base_model", "alpaca_adapter", "explain_prompts"),
         outs={"explain_adapter": paths.EXPLAIN_ADAPTER}, params=("explain_training", "attribution.loss", "evaluation"),
         metrics="reports/models/explain_adapter.json", code=EXPLAIN_TRAIN_CODE,
         plots=(f"{paths.FIGURES}/explain_adapter_training.png",), gated=True,
         doc="The attributed model: answer + explanation, joint loss with the consistency term; the champion."),
    Step("explain_adapter_ablation", "train", explain_steps.run_explain_adapter_ablation,
         deps=("base_model", "alpaca_adapter", "explain_prompts"),
         outs={"explain_adapter_ablation": paths.EXPLAIN_ADAPTER_ABLATION},
         params=("explain_training", "attribution.loss", "evaluation"),
         metrics="reports/models/explain_adapter_ablation.json", code=EXPLAIN_TRAIN_CODE,
         plots=(f"{paths.FIGURES}/explain_adapter_ablation_training.png",), gated=True,
         doc="Ablation: the same model and loss without preference attribution in the prompt."),
    Step("explain_evaluation", "evaluate", explain_steps.run_explain_evaluation,
         deps=("base_model", "explain_adapter", "explain_adapter_ablation", "explain_prompts", "ranking_candidates",
               "samples", "items", "item_attributes"),
         outs={"explain_scores": paths.EXPLAIN_SCORES, "explanations": paths.EXPLANATIONS,
               "explain_ranking": paths.EXPLAIN_RANKING},
         params=("attribution.explain_samples", "attribution.max_new_tokens", "ranking", "evaluation"),
         metrics="reports/explain_evaluation.json",
         code=(*ATTRIBUTION_CODE, "explainrec_core/evaluation/text_metrics.py",
               "explainrec_core/evaluation/generation.py"),
         doc="Both variants: AUC, NDCG@K on the LLM's candidate lists, BLEU-4, ROUGE-L and faithfulness."),
    Step("evaluation_report", "evaluate", eval_steps.run_evaluation_report,
         deps=("rec_scores", "baseline_results", "baseline_scores", "llm_ranking", "explain_scores",
               "explanations", "explain_ranking"),
         outs={"evaluation_report": paths.EVALUATION_MD, "evaluation_html": paths.EVALUATION_HTML},
         params=("baselines", "ranking"), metrics=paths.METRICS, code=("explainrec_core/evaluation/report.py",),
         plots=(f"{paths.FIGURES}/roc_test.png", f"{paths.FIGURES}/auc_by_method.png"),
         reads_metrics=("base_model", "alpaca_adapter", "rec_adapter", "rec_evaluation", "ranking_candidates",
                        "llm_ranking", "item_attributes", "explain_prompts", "explain_adapter",
                        "explain_adapter_ablation", "explain_evaluation"),
         doc="Tables shaped like the paper's, plots, and reports/metrics.json."),
)

GATE = Gate("validate", checks=tuple(CHECKS), params=("quality", "samples.like_threshold",
                                                      "samples.history_len", "samples.min_history"),
            report="reports/data_quality.json",
            code=("explainrec_core/quality/suites.py", "explainrec_core/quality/gate.py"))


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"unknown step {name!r}; steps: {[s.name for s in STEPS] + [GATE.name]}")


def outputs(cfg: Config, root: Path | str = ".") -> dict[str, Path]:
    """Every named artefact (sources and step outputs) -> its resolved path."""
    found = {s.name: resolve(s.path, cfg, root) for s in SOURCES}
    for s in STEPS:
        found.update({name: resolve(t, cfg, root) for name, t in s.outs.items()})
    return found


def run_step(name: str, cfg: Config, root: Path | str = ".") -> dict:
    """Run one step and write its metrics file; what `explainrec run STEP` and the Dagster assets call."""
    root = Path(root)
    if name == GATE.name:
        results = run_gate(cfg, root)
        return {r.name: r.success for r in results}
    s = step(name)
    stats = s.fn(cfg, root)
    if is_main_process():
        write_json(stats, root / s.metrics)
    return stats


def run_check(name: str, cfg: Config, root: Path | str = ".") -> SuiteResult:
    files = outputs(cfg, root)
    if not files[name].exists():
        raise DataError(str(files[name]), f"missing: run the step that makes `{name}` before checking it")
    return CHECKS[name](cfg, files)


def run_gate(cfg: Config, root: Path | str = ".") -> list[SuiteResult]:
    """Run every check and write the report (also on failure, so people can read it); raise on failure."""
    root = Path(root)
    results = [run_check(name, cfg, root) for name in GATE.checks]
    write_json({"success": all(r.success for r in results), "suites": [r.to_dict() for r in results]},
               root / GATE.report)
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateError("data quality gate failed:\n" + "\n".join(r.summary() for r in failed))
    return results
