"""The pipeline, described once: sources, steps and the quality gates.

Dagster (explainrec_dagster) and DVC (dvc.yaml) are projections of this description; tests/test_pipeline_graph.py
fails when either disagrees with it. Paths are templates over params.yaml keys (see paths.py).

A step function takes the settings and the project root, writes its outputs atomically, and returns the
statistics that become Dagster metadata and the DVC metrics file. A step's code dependencies are computed from
the import graph (code_graph.py), never listed by hand. Steps marked `gated` train models: in DVC they depend on
the reports of the quality gates that check their inputs, in Dagster on the assets whose blocking checks form
those gates (`gates_of`). The data gate checks the tables every step starts from; one gate per table that the
models train on (prompts, attributes, cross-domain sets) checks it once it is built, so a bad table stops the
training steps that read it and nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from explainrec_core import paths
from explainrec_core.code_graph import code_files
from explainrec_core.config import Config
from explainrec_core.errors import DataError, QualityGateError
from explainrec_core.io import is_main_process, write_json

if TYPE_CHECKING:
    from explainrec_core.quality.gate import SuiteResult

resolve = paths.resolve
GATE_MODULE = "explainrec_core.quality.gate"  # every check function (quality/gate.py CHECKS)


@dataclass(frozen=True)
class StepFn:
    """A step function by name (`data_steps.run_ingest`), imported when it is called.

    A DVC stage or an `explainrec run all` step is one process that runs one step: importing every step module
    there (torch, transformers, peft, great_expectations: ~6 s on 2 cores) cost more than most steps' work, so
    each process imports only the module of the step it runs."""

    ref: str  # "<module under explainrec_core.steps>.<function>"

    @property
    def module(self) -> str:
        return f"explainrec_core.steps.{self.ref.rsplit('.', 1)[0]}"

    @property
    def name(self) -> str:
        return self.ref.rsplit(".", 1)[1]

    def __call__(self, cfg: Config, root: Path) -> dict:
        return getattr(importlib.import_module(self.module), self.name)(cfg, root)


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
    plots: tuple[str, ...] = ()  # figures the step draws (DVC plots, Dagster metadata)
    reads_metrics: tuple[str, ...] = ()  # steps whose metrics files this step reads (DVC deps too)
    gated: bool = False  # trains a model: must sit downstream of the quality gates on its inputs
    doc: str = ""
    watch: tuple[str, ...] = ()  # folders outside the pipeline it reads (path templates); `run all` fingerprints them

    @property
    def code(self) -> tuple[str, ...]:
        """Source files whose change must re-run the step (DVC deps): the module defining the step function and
        every explainrec_core module it imports, transitively."""
        return code_files(self.fn.module)


@dataclass(frozen=True)
class Gate:
    """A quality gate: one GX suite per checked output. A DVC stage; Dagster asset checks (blocking)."""

    name: str
    checks: tuple[str, ...]  # the outputs it checks (Dagster: the assets its blocking checks attach to)
    params: tuple[str, ...]
    report: str
    reads: tuple[str, ...] = ()  # other outputs its checks compare against (DVC deps)

    @property
    def code(self) -> tuple[str, ...]:
        """The modules of its check functions and everything they import (DVC deps)."""
        return code_files(GATE_MODULE)


SOURCES = (
    Source("raw_data", paths.RAW, "ingest", StepFn("data_steps.fetch_raw")),
)

STEPS = (
    Step("ingest", "ingest", StepFn("data_steps.run_ingest"), deps=("raw_data",),
         outs={name: paths.processed(name) for name in ("interactions", "items", "users", "stream_holdout")},
         params=("data", "cross_domain.second_dataset", "incoming"), watch=(paths.INCOMING_ACCEPTED,),
         metrics="reports/data/ingest.json",
         doc="Normalise the raw files into interactions, items and users tables."),
    Step("samples", "prepare", StepFn("data_steps.run_samples"), deps=("interactions",),
         outs={"samples": paths.processed("samples")}, params=("samples", "split"),
         metrics="reports/data/samples.json",
         doc="History/target samples with labels, split 80/10/10 by global time order."),
    Step("cold_start_sets", "prepare", StepFn("data_steps.run_cold_start_sets"), deps=("samples", "interactions"),
         outs={"cold_start_sets": paths.processed("cold_start_sets")},
         params=("cold_start.max_user_train_interactions", "cold_start.max_item_train_interactions"),
         metrics="reports/data/cold_start.json",
         doc="Test samples of new users and new items (few training-period interactions)."),
    Step("cross_domain_sets", "prepare", StepFn("data_steps.run_cross_domain_sets"),
         deps=("samples", "interactions", "items"),
         outs={"cross_domain_sets": paths.processed("cross_domain_sets")},
         params=("cross_domain.target_genres", "cross_domain.min_source_interactions", "cross_domain.eval_splits",
                 "cross_domain.second_dataset", "samples.history_len"), metrics="reports/data/cross_domain.json",
         doc="Zero-shot cross-domain sets: source-genre training samples, held-out-genre evaluation samples."),
    Step("preference_knowledge_base", "knowledge", StepFn("knowledge_steps.run_preference_knowledge_base"),
         deps=("samples", "interactions", "items", "users", "cold_start_sets"),
         outs={"preference_knowledge_base": paths.KNOWLEDGE_BASE,
               "knowledge_base_scores": paths.KNOWLEDGE_BASE_SCORES},
         params=("knowledge", "samples.like_threshold", "cold_start.curve_ks"),
         metrics=paths.STEP_METRICS["preference_knowledge_base"],
         doc="The preference knowledge base of the training period (eq. 4-5): demographic preferences with learned "
             "group weights, cross-domain correlations, temporal patterns; its zero-shot P(i | u) of every "
             "evaluated sample."),
    Step("base_model", "model", StepFn("llm_steps.run_base_model"), deps=(),
         outs={"base_model": paths.BASE_MODEL}, params=("model",),
         metrics="reports/models/base_model.json",
         doc="The base LLM (local folder, hub name or embedded SmolLM2-135M-Instruct) and its answer tokens."),
    Step("alpaca_data", "prepare", StepFn("llm_steps.run_alpaca_data"), deps=(),
         outs={"alpaca_data": paths.ALPACA_DATA}, params=("alpaca",),
         metrics="reports/data/alpaca.json",
         doc="Alpaca-format instruction data for stage 1 (user JSON, or the Self-Instruct seed tasks)."),
    Step("alpaca_adapter", "train", StepFn("llm_steps.run_alpaca_adapter"), deps=("base_model", "alpaca_data"),
         outs={"alpaca_adapter": paths.ALPACA_ADAPTER}, params=("lora", "alpaca_training"),
         metrics="reports/models/alpaca_adapter.json",
         plots=(f"{paths.FIGURES}/alpaca_adapter_training.png",), gated=True,
         doc="Stage 1: LoRA instruction tuning on the Alpaca data."),
    Step("rec_prompts", "prepare", StepFn("llm_steps.run_rec_prompts"),
         deps=("samples", "items", "cold_start_sets", "base_model"),
         outs={"rec_prompts": paths.REC_PROMPTS}, params=("rec_prompts", "llm_training.cutoff"),
         metrics="reports/data/rec_prompts.json",
         doc="TALLRec prompts for the few-shot train, valid, test and cold-start sample sets."),
    Step("rec_adapter", "train", StepFn("llm_steps.run_rec_adapter"),
         deps=("base_model", "alpaca_adapter", "rec_prompts"),
         outs={"rec_adapter": paths.REC_ADAPTER}, params=("llm_training", "evaluation"),
         metrics="reports/models/rec_adapter.json",
         plots=(f"{paths.FIGURES}/rec_adapter_training.png",), gated=True,
         doc="Stage 2: recommendation tuning from the stage-1 adapter, early-stopped on validation AUC."),
    Step("rec_evaluation", "evaluate", StepFn("llm_steps.run_rec_evaluation"),
         deps=("base_model", "rec_adapter", "rec_prompts"),
         outs={"rec_scores": paths.REC_SCORES}, params=("evaluation",),
         metrics="reports/rec_evaluation.json", doc="P(Yes) of the test and cold-start samples; AUC per set."),
    Step("ranking_candidates", "prepare", StepFn("eval_steps.run_ranking_candidates"), deps=("samples", "interactions"),
         outs={"ranking_candidates": paths.RANKING_CANDIDATES}, params=("ranking",),
         metrics="reports/ranking_candidates.json",
         doc="Each liked test target with 99 seeded unrated items: the same candidates for every method."),
    Step("baselines", "evaluate", StepFn("eval_steps.run_baselines"),
         deps=("samples", "interactions", "items", "cold_start_sets", "rec_prompts", "ranking_candidates",
               "item_features"),
         outs={"baseline_results": paths.BASELINE_RESULTS, "baseline_scores": paths.BASELINE_SCORES,
               "baseline_ranking": paths.BASELINE_RANKING},
         params=("baselines", "ranking", "cold_start.curve_ks"), metrics=paths.STEP_METRICS["baselines"],
         gated=True,
         doc="Popularity, BPR-MF, LightGCN, SASRec, content-based, MMGCN and LATTICE, per seed, under the LLM's "
             "protocol."),
    Step("rating_evaluation", "evaluate", StepFn("rating_steps.run_rating_evaluation"),
         deps=("samples", "interactions", "items", "rec_prompts"),
         outs={"rating_scores": paths.RATING_SCORES}, params=("rating", "samples.like_threshold"),
         metrics=paths.STEP_METRICS["rating_evaluation"],
         doc="Rating prediction (RMSE / MAE): global mean, biases and biased MF on the LLM's test samples."),
    Step("multitask_adapter", "train", StepFn("multitask_steps.run_multitask_adapter"),
         deps=("base_model", "alpaca_adapter", "rec_prompts", "samples", "items"),
         outs={"multitask_adapter": paths.MULTITASK_ADAPTER}, params=("llm_training", "evaluation", "multitask"),
         metrics=paths.STEP_METRICS["multitask_adapter"],
         plots=(f"{paths.FIGURES}/multitask_adapter_training.png",
                f"{paths.FIGURES}/multitask_adapter_task_weights.png"), gated=True,
         doc="The TALLRec recipe on two tasks at once: Yes/No and a verbalised star rating (eq. 10)."),
    Step("multitask_evaluation", "evaluate", StepFn("multitask_steps.run_multitask_evaluation"),
         deps=("base_model", "multitask_adapter", "rec_prompts", "samples", "items"),
         outs={"multitask_scores": paths.MULTITASK_SCORES, "multitask_ratings": paths.MULTITASK_RATINGS},
         params=("evaluation", "llm_training.cutoff"), metrics=paths.STEP_METRICS["multitask_evaluation"],
         doc="The multi-task model's P(Yes) on the test and cold-start samples and its ratings of the test samples."),
    Step("llm_ranking", "evaluate", StepFn("eval_steps.run_llm_ranking"),
         deps=("base_model", "rec_adapter", "ranking_candidates", "items"),
         outs={"llm_ranking": paths.LLM_RANKING}, params=("ranking",), metrics="reports/llm_ranking.json",
         doc="The rec adapter ranks candidate lists, computing each user's prompt prefix once (KV cache)."),
    Step("item_attributes", "attribution", StepFn("explain_steps.run_item_attributes"), deps=("items", "raw_data"),
         outs={"item_attributes": paths.processed("item_attributes")},
         params=("attribution.imdb_attributes", "attribution.kg_roles", "attribution.min_actor_films"),
         metrics="reports/data/item_attributes.json",
         doc="Item attributes from every source: genres, era, IMDb runtime/MPAA/rating, people shared via Freebase."),
    Step("preference_attributions", "attribution", StepFn("explain_steps.run_preference_attributions"),
         deps=("samples", "interactions", "items", "item_attributes"),
         outs={"preference_attributions": paths.processed("preference_attributions")},
         params=("attribution.prior_strength", "samples.like_threshold"),
         metrics="reports/data/preference_attributions.json",
         doc="Per user: smoothed log-odds of each attribute in liked vs disliked training-period ratings."),
    Step("explain_prompts", "attribution", StepFn("explain_steps.run_explain_prompts"),
         deps=("rec_prompts", "samples", "items", "item_attributes", "base_model"),
         outs={"explain_prompts": paths.EXPLAIN_PROMPTS},
         params=("attribution.prior_strength", "attribution.reasons_per_item", "attribution.max_cited",
                 "llm_training.cutoff"),
         metrics="reports/data/explain_prompts.json",
         doc="Attribution-enhanced prompts (and plain ones for the ablation) with reference explanations."),
    Step("explain_adapter", "train", StepFn("explain_steps.run_explain_adapter"),
         deps=("base_model", "alpaca_adapter", "explain_prompts"),
         outs={"explain_adapter": paths.EXPLAIN_ADAPTER},
         params=("llm_training", "attribution.loss", "attribution.selection_explanation_weight", "evaluation"),
         metrics="reports/models/explain_adapter.json",
         plots=(f"{paths.FIGURES}/explain_adapter_training.png",), gated=True,
         doc="The attributed model: answer + explanation, joint loss with the consistency term; the champion."),
    Step("explain_adapter_ablation", "train", StepFn("explain_steps.run_explain_adapter_ablation"),
         deps=("base_model", "alpaca_adapter", "explain_prompts"),
         outs={"explain_adapter_ablation": paths.EXPLAIN_ADAPTER_ABLATION},
         params=("llm_training", "attribution.loss", "attribution.selection_explanation_weight", "evaluation"),
         metrics="reports/models/explain_adapter_ablation.json",
         plots=(f"{paths.FIGURES}/explain_adapter_ablation_training.png",), gated=True,
         doc="Ablation: the same model and loss without preference attribution in the prompt."),
    Step("item_features", "multimodal", StepFn("item_token_steps.run_item_features"),
         deps=("samples", "interactions", "items", "item_attributes", "rec_prompts"),
         outs={"item_features": paths.ITEM_FEATURES},
         # the settings that make the vectors, not the fusion's: a fusion setting must not refit the features (and
         # the baselines that read them)
         params=("multimodal.text_encoder", "multimodal.clip_model", "multimodal.clip_pretrained",
                 "multimodal.image_dir", "multimodal.collaborative_model", "multimodal.collaborative_holdout",
                 "multimodal.max_attribute_values", "baselines.hyperparameters",
                 "baselines.ranking_hyperparameters", "baselines.seeds", "samples.like_threshold"),
         metrics=paths.STEP_METRICS["item_features"],
         doc="Per item: text (MiniLM or CLIP), image (open_clip, when weights are given), attribute and "
             "training-period collaborative vectors (AUC- and ranking-protocol CF settings)."),
    Step("meta_adaptation", "knowledge", StepFn("meta_steps.run_meta_adaptation"),
         deps=("samples", "interactions", "items", "users", "item_features", "cold_start_sets"),
         outs={"meta_model": paths.META_MODEL, "meta_scores": paths.META_SCORES},
         # the CF refit of its item vectors (meta_steps.task_users_and_features): item_features' CF settings
         params=("meta", "knowledge.age_bands", "cold_start", "samples.like_threshold",
                 "multimodal.collaborative_model", "baselines.hyperparameters", "baselines.seeds"),
         metrics=paths.STEP_METRICS["meta_adaptation"],
         plots=(f"{paths.FIGURES}/meta_adaptation_training.png",), gated=True,
         doc="Meta-learned adaptation to new users (eq. 6, MeLU-style): no-adaptation, first- and second-order "
             "MAML trained on the same tasks, compared on validation; AUC vs k on the true cold-start sets."),
    Step("item_token_adapter", "train", StepFn("item_token_steps.run_item_token_adapter"),
         # both LoRA sources: multimodal.schedule picks rec_adapter's (two_step) or the stage-1 adapter (joint)
         deps=("base_model", "alpaca_adapter", "rec_adapter", "rec_prompts", "item_features", "samples", "items",
               "interactions", "preference_knowledge_base"),  # the KB: the knowledge modality, when configured
         outs={"item_token_adapter": paths.ITEM_TOKEN_ADAPTER},
         params=("llm_training", "multimodal", "evaluation", "samples.like_threshold", "samples.history_len"),
         metrics=paths.STEP_METRICS["item_token_adapter"],
         plots=(f"{paths.FIGURES}/item_token_adapter_training.png",), gated=True,
         doc="Item tokens: the fusion and projector trained with the LoRA from stage 1 (multimodal.schedule: joint), "
             "or on the rec adapter with its LoRA frozen (two_step, CoLLM step 2)."),
    Step("item_token_evaluation", "evaluate", StepFn("item_token_steps.run_item_token_evaluation"),
         deps=("base_model", "item_token_adapter", "item_features", "rec_prompts", "ranking_candidates", "samples",
               "items", "interactions", "preference_knowledge_base"),
         outs={"item_token_scores": paths.ITEM_TOKEN_SCORES, "item_token_ranking": paths.ITEM_TOKEN_RANKING},
         params=("multimodal", "ranking", "evaluation", "samples.like_threshold"),
         metrics=paths.STEP_METRICS["item_token_evaluation"],
         plots=(f"{paths.FIGURES}/item_token_modality_weights.png",),
         doc="AUC and NDCG@K with item tokens on the TALLRec recipe's samples and lists; attention per modality."),
    Step("explain_item_token_adapter", "train", StepFn("explain_item_token_steps.run_explain_item_token_adapter"),
         deps=("base_model", "explain_adapter", "explain_prompts", "item_features", "samples", "items",
               "item_attributes", "interactions", "preference_knowledge_base"),
         outs={"explain_item_token_adapter": paths.EXPLAIN_ITEM_TOKEN_ADAPTER},
         params=("llm_training", "multimodal", "attribution", "evaluation", "samples.history_len"),
         metrics=paths.STEP_METRICS["explain_item_token_adapter"],
         plots=(f"{paths.FIGURES}/explain_item_token_adapter_training.png",), gated=True,
         doc="The champion (CoLLM step 2 on the attributed model): item tokens in the attributed prompt, the fusion "
             "trained with the answer + explanation loss, the attributed LoRA frozen."),
    Step("champion_ablations", "train", StepFn("ablation_steps.run_champion_ablations"),
         deps=("base_model", "explain_adapter", "explain_item_token_adapter", "explain_prompts", "item_features",
               "ranking_candidates", "samples", "items", "item_attributes", "interactions",
               "preference_knowledge_base"),
         outs={"champion_ablations": paths.CHAMPION_ABLATIONS,
               "champion_ablation_scores": paths.CHAMPION_ABLATION_SCORES,
               "champion_ablation_ranking": paths.CHAMPION_ABLATION_RANKING},
         params=("ablations", "llm_training", "multimodal", "attribution", "evaluation", "ranking",
                 "samples.history_len"),
         metrics=paths.STEP_METRICS["champion_ablations"], gated=True,
         doc="The ablation runner (Table II's modality rows): the champion's fusion retrained without one group of "
             "vectors at a time, same LoRA, data, schedule and seed; scored on its test samples and lists."),
    Step("explain_evaluation", "evaluate", StepFn("explain_evaluation_steps.run_explain_evaluation"),
         deps=("base_model", "explain_adapter", "explain_adapter_ablation", "explain_item_token_adapter",
               "item_features", "explain_prompts", "ranking_candidates", "samples", "items", "item_attributes",
               "interactions", "preference_knowledge_base"),
         outs={"explain_scores": paths.EXPLAIN_SCORES, "explanations": paths.EXPLANATIONS,
               "explain_ranking": paths.EXPLAIN_RANKING},
         params=("attribution", "multimodal", "ranking", "evaluation"),
         metrics="reports/explain_evaluation.json",
         doc="The attributed model, its ablation and the champion with item tokens: AUC, NDCG@K on the LLM's "
             "candidate lists, BLEU-4, ROUGE-L, faithfulness and stance agreement."),
    Step("cross_domain_prompts", "prepare", StepFn("cross_domain_steps.run_cross_domain_prompts"),
         deps=("cross_domain_sets", "items", "base_model"),
         outs={"cross_domain_prompts": paths.CROSS_DOMAIN_PROMPTS},
         params=("rec_prompts", "llm_training.cutoff"), metrics="reports/data/cross_domain_prompts.json",
         doc="TALLRec prompts of the cross-domain sets: source-domain training and validation, held-out evaluation."),
    Step("cross_domain_adapter", "train", StepFn("cross_domain_steps.run_cross_domain_adapter"),
         deps=("base_model", "alpaca_adapter", "cross_domain_prompts"),
         outs={"cross_domain_adapter": paths.CROSS_DOMAIN_ADAPTER}, params=("llm_training", "evaluation"),
         metrics="reports/models/cross_domain_adapter.json",
         plots=(f"{paths.FIGURES}/cross_domain_adapter_training.png",), gated=True,
         doc="The TALLRec recipe trained on the source domain only, early-stopped on source-domain validation."),
    Step("cross_domain_evaluation", "evaluate", StepFn("cross_domain_steps.run_cross_domain_evaluation"),
         deps=("base_model", "cross_domain_adapter", "cross_domain_prompts", "cross_domain_sets", "interactions",
               "items", "users", "item_features"),
         outs={"cross_domain_scores": paths.CROSS_DOMAIN_SCORES},
         params=("baselines", "knowledge", "cross_domain", "evaluation", "samples.like_threshold"),
         metrics=paths.STEP_METRICS["cross_domain_evaluation"],
         doc="Zero-shot cross-domain AUC (Table III): the source-domain LLM, baselines and knowledge base on the "
             "held-out domain."),
    Step("chatrec_evaluation", "evaluate", StepFn("chatrec_steps.run_chatrec_evaluation"),
         deps=("base_model", "rec_prompts", "samples", "interactions", "items"),
         outs={"chatrec_scores": paths.CHATREC_SCORES},
         params=("chatrec", "evaluation", "samples.like_threshold", "samples.history_len"),
         metrics=paths.STEP_METRICS["chatrec_evaluation"],
         doc="Chat-REC: the untuned instruction LLM, zero-shot, with the user's history and item-CF candidates."),
    Step("p5_adapter", "train", StepFn("p5_steps.run_p5_adapter"),
         deps=("base_model", "alpaca_adapter", "rec_prompts", "samples"),
         outs={"p5_adapter": paths.P5_ADAPTER}, params=("llm_training", "evaluation", "p5"),
         metrics=paths.STEP_METRICS["p5_adapter"], plots=(f"{paths.FIGURES}/p5_adapter_training.png",), gated=True,
         doc="The P5 baseline: P5's prompt families with ID words, LoRA from the stage-1 adapter, same schedule."),
    Step("p5_evaluation", "evaluate", StepFn("p5_steps.run_p5_evaluation"),
         deps=("base_model", "p5_adapter", "rec_prompts", "samples", "ranking_candidates"),
         outs={"p5_scores": paths.P5_SCORES, "p5_ranking": paths.P5_RANKING},
         params=("evaluation", "llm_training.cutoff", "p5", "ranking"), metrics=paths.STEP_METRICS["p5_evaluation"],
         doc="P5's P(Yes) on the test and cold-start samples and on the LLM's candidate lists."),
    Step("evaluation_report", "evaluate", StepFn("eval_steps.run_evaluation_report"),
         deps=("rec_scores", "baseline_results", "baseline_scores", "baseline_ranking", "llm_ranking", "explain_scores",
               "explanations", "explain_ranking", "item_token_scores", "item_token_ranking", "knowledge_base_scores",
               "meta_scores", "cross_domain_scores", "chatrec_scores", "p5_scores", "p5_ranking", "rating_scores",
               "multitask_scores", "multitask_ratings", "champion_ablation_scores", "champion_ablation_ranking"),
         outs={"evaluation_report": paths.EVALUATION_MD, "evaluation_html": paths.EVALUATION_HTML},
         params=("baselines", "ranking"), metrics=paths.METRICS,
         plots=(f"{paths.FIGURES}/roc_test.png", f"{paths.FIGURES}/auc_by_method.png"),
         reads_metrics=("base_model", "alpaca_adapter", "rec_adapter", "rec_evaluation", "ranking_candidates",
                        "llm_ranking", "item_attributes", "explain_prompts", "explain_adapter",
                        "explain_adapter_ablation", "explain_evaluation", "item_features", "item_token_adapter",
                        "item_token_evaluation", "explain_item_token_adapter", "preference_knowledge_base",
                        "baselines", "meta_adaptation", "cross_domain_adapter", "cross_domain_evaluation",
                        "chatrec_evaluation", "p5_adapter", "p5_evaluation", "champion_ablations",
                        "rating_evaluation", "multitask_adapter", "multitask_evaluation"),
         doc="Tables shaped like the paper's, plots, and reports/metrics.json."),
)

GATE = Gate("validate", checks=("interactions", "items", "users", "samples", "cold_start_sets", "alpaca_data"),
            params=("quality", "samples.like_threshold", "samples.history_len", "samples.min_history"),
            report="reports/data_quality.json")
"""The data gate: the tables every step starts from. Every training step depends on it."""

TRAINING_TABLE_GATES = (
    Gate("validate_rec_prompts", checks=("rec_prompts",), params=(), report="reports/quality/rec_prompts.json",
         reads=("samples",)),
    Gate("validate_explain_prompts", checks=("explain_prompts",), params=(),
         report="reports/quality/explain_prompts.json", reads=("samples",)),
    Gate("validate_item_attributes", checks=("item_attributes",), params=("quality.min_attribute_coverage",),
         report="reports/quality/item_attributes.json", reads=("items",)),
    Gate("validate_item_features", checks=("item_features",), params=("quality.min_attribute_coverage",),
         report="reports/quality/item_features.json", reads=("items",)),
    Gate("validate_preference_knowledge_base", checks=("preference_knowledge_base",), params=(),
         report="reports/quality/preference_knowledge_base.json", reads=("samples", "interactions", "items")),
    Gate("validate_cross_domain_sets", checks=("cross_domain_sets",),
         params=("samples.like_threshold", "samples.history_len", "cross_domain.eval_splits"),
         report="reports/quality/cross_domain_sets.json"),
)
"""One gate per table the models train or are evaluated on, each built after the data gate: a training step
depends on the gates of the tables it reads (directly or through earlier steps), so a table that changes
re-runs only its own gate and the steps downstream of it."""

GATES = (GATE, *TRAINING_TABLE_GATES)


def producer(artefact: str) -> Step | None:
    """The step that makes an artefact (None for a source)."""
    return next((s for s in STEPS if artefact in s.outs), None)


def ancestors(step: Step) -> set[str]:
    """Every artefact the step reads, directly or through the steps that make its inputs."""
    found: set[str] = set()
    todo = list(step.deps)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            made_by = producer(name)
            todo.extend(made_by.deps if made_by else ())
    return found


def gates_of(step: Step) -> tuple[Gate, ...]:
    """The gates a training step waits for: those that check any artefact upstream of it (none for other steps)."""
    if not step.gated:
        return ()
    upstream = ancestors(step)
    return tuple(g for g in GATES if upstream & set(g.checks))


def gate_checks(step: Step) -> tuple[str, ...]:
    """The checked assets a training step depends on in Dagster: every check of each of its gates."""
    return tuple(name for g in gates_of(step) for name in g.checks)


def find_gate(name: str) -> Gate:
    for g in GATES:
        if g.name == name:
            return g
    raise KeyError(f"unknown gate {name!r}; gates: {[g.name for g in GATES]}")


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"unknown step {name!r}; steps: {[s.name for s in STEPS] + [g.name for g in GATES]}")


def outputs(cfg: Config, root: Path | str = ".") -> dict[str, Path]:
    """Every named artefact (sources and step outputs) -> its resolved path."""
    found = {s.name: resolve(s.path, cfg, root) for s in SOURCES}
    for s in STEPS:
        found.update({name: resolve(t, cfg, root) for name, t in s.outs.items()})
    return found


def run_step(name: str, cfg: Config, root: Path | str = ".") -> dict:
    """Run one step and write its metrics file; what `explainrec run STEP` and the Dagster assets call."""
    root = Path(root)
    if name in {g.name for g in GATES}:
        results = run_gate(cfg, root, find_gate(name))
        return {r.name: r.success for r in results}
    s = step(name)
    stats = s.fn(cfg, root)
    if is_main_process():
        write_json(stats, root / s.metrics)
    return stats


def run_check(name: str, cfg: Config, root: Path | str = ".") -> SuiteResult:
    from explainrec_core.quality.gate import CHECKS  # great_expectations: imported by the processes that check

    files = outputs(cfg, root)
    if not files[name].exists():
        raise DataError(str(files[name]), f"missing: run the step that makes `{name}` before checking it")
    return CHECKS[name](cfg, files)


def run_gate(cfg: Config, root: Path | str = ".", gate: Gate = GATE) -> list[SuiteResult]:
    """Run a gate's checks and write its report (also on failure, so people can read it); raise on failure."""
    root = Path(root)
    results = [run_check(name, cfg, root) for name in gate.checks]
    write_json({"success": all(r.success for r in results), "suites": [r.to_dict() for r in results]},
               root / gate.report)
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateError(f"quality gate {gate.name} failed:\n" + "\n".join(r.summary() for r in failed))
    return results
