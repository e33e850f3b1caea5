"""Item-token steps: item_features -> item_token_adapter -> item_token_evaluation (paper III-D; CoLLM's route).

Training schedule (`multimodal.schedule`), both on the same few-shot samples with the same `llm_training` schedule
(evaluations, early stopping, seed), compared on validation:
- two_step (CoLLM): step 1 is the TALLRec recipe's rec_adapter (LoRA on the text prompts); step 2 (here) trains the
  fusion and projector with that LoRA frozen. The item-token model then differs from the TALLRec recipe in the
  soft tokens alone.
- joint: the LoRA starts from the stage-1 (Alpaca) adapter, as rec_adapter's does, and trains together with the
  fusion on the slotted prompts, so the LLM can learn to read the soft tokens (a frozen LoRA trained on text it
  could not rank by cannot).
Only the fusion's learning rate is its own (`multimodal.fusion_lr`: a freshly initialised MLP needs a larger one
than a LoRA update), and the cutoff grows by the markers' tokens so the same history fits. Both are scored on the
same samples and candidate lists as the TALLRec recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import Config
from explainrec_core.evaluation.ranking import llm_lists, unseen_negatives, write_list_scores
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.features.feature_bank import FeatureBank, FeatureError, SlotRequest
from explainrec_core.features.fusion import CONFIG as FUSION_CONFIG
from explainrec_core.features.fusion import FusionSpec, ModalityFusion, load_fusion, save_fusion
from explainrec_core.features.item_features import build_item_features, features_digest
from explainrec_core.features.item_prompts import (
    add_slot_token,
    slot_budget,
    slotted_parts,
    slotted_rec_prompt,
    slotted_suffix,
)
from explainrec_core.features.item_token_model import (
    ItemTokenLM,
    SlotExample,
    item_token_loss,
    item_token_pairwise_loss,
    score_slotted_candidates,
    scoring_embedder,
    token_embedding_norm,
)
from explainrec_core.features.knowledge_evidence import KnowledgeEvidence
from explainrec_core.io import sha256_file, write_parquet
from explainrec_core.knowledge import store
from explainrec_core.models import adapters
from explainrec_core.plots import plot_modality_weights
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import quote_item, rec_response
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import EVAL_SETS, _as_dict, _checkpoint_dir, _finish, _fit, load_base
from explainrec_core.training.examples import encode


def run_item_features(cfg: Config, root: Path) -> dict:
    """One row per item: text, image (when CLIP weights are configured), attributes and collaborative vectors (the
    latter fitted without the LLM's training targets unless multimodal.collaborative_holdout is off)."""
    mm = cfg.multimodal
    items = read_processed(cfg, root, "items")
    samples = read_processed(cfg, root, "samples")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"), items,
                                    cfg.samples.like_threshold)
    images = None
    if mm.clip_pretrained and mm.image_dir:
        from explainrec_core.features.image_encoder import ClipSpec, encode_images, image_sources

        ids = items["item_id"].to_list()
        images = encode_images(ClipSpec(mm.clip_model, mm.clip_pretrained), image_sources(mm.image_dir, ids), ids)
    # The LLM's training targets, left out of the CF fit (multimodal.collaborative_holdout, item_features.py)
    held_out = (pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set") == "train").select("user_id", "item_id")
                if mm.collaborative_holdout else None)
    table = build_item_features(cfg, items, read_processed(cfg, root, "item_attributes"), data, images, held_out)
    write_parquet(table.frame, paths.resolve(paths.ITEM_FEATURES, cfg, root))
    return {**table.report, "sha256": features_digest(table.frame)}


def _read_features(cfg: Config, root: Path) -> pl.DataFrame:
    return pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))


def slotted_prompts(cfg: Config, root: Path, rows: pl.DataFrame) -> tuple[list[str], list[SlotRequest]]:
    """The item-token prompt of each rec_prompts row: its text prompt with the same shown history, plus slots."""
    samples = read_processed(cfg, root, "samples").select("sample_id", "history_item_ids", "history_ratings")
    items = read_processed(cfg, root, "items")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    prompts, requests = [], []
    for r in rows.join(samples, on="sample_id", how="left").iter_rows(named=True):
        start = r["n_history_dropped"]
        history = [(titles[i], rating, i) for i, rating in zip(r["history_item_ids"][start:],
                                                                r["history_ratings"][start:], strict=True)]
        prompt, request = slotted_rec_prompt(history, (titles[r["item_id"]], r["item_id"]),
                                             cfg.samples.like_threshold, cfg.multimodal.user_token, r["prompt"],
                                             user=r["user_id"])
        prompts.append(prompt)
        requests.append(request)
    return prompts, requests


def unseen_negative_prompts(cfg: Config, root: Path, rows: pl.DataFrame,
                            any_time: bool = False) -> list[tuple[str, SlotRequest]]:
    """The ranking protocol's negatives (multimodal.unseen_negatives per liked row): items the user had not rated
    in the training period (`any_time`: ever, as the test lists' negatives; for validation rows, whose user may
    rate items after the training period), in the target's place of that sample's prompt (the same shown
    history)."""
    return [(prompt, request) for _, prompt, request in unseen_negatives_by_sample(cfg, root, rows, any_time)]


def unseen_negatives_by_sample(cfg: Config, root: Path, rows: pl.DataFrame,
                               any_time: bool = False) -> list[tuple[int, str, SlotRequest]]:
    """unseen_negative_prompts with the sample each negative belongs to: (sample_id, prompt, request)."""
    samples = read_processed(cfg, root, "samples")
    items = read_processed(cfg, root, "items")
    interactions = read_processed(cfg, root, "interactions")
    rated = (interactions.select("user_id", "item_id") if any_time else
             TrainingData.from_tables(samples, interactions, items, cfg.samples.like_threshold).interactions)
    liked = rows.filter(pl.col("label") == 1)
    drawn = unseen_negatives(liked, rated, items["item_id"].to_numpy(), cfg.multimodal.unseen_negatives,
                             cfg.rec_prompts.seed)
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    rows = drawn.join(liked.select("sample_id", "n_history_dropped"), on="sample_id").join(
        samples.select("sample_id", "history_item_ids", "history_ratings"), on="sample_id", how="left")
    out = []
    for r in rows.sort("sample_id", maintain_order=True).iter_rows(named=True):
        start = r["n_history_dropped"]
        history = [(titles[i], rating, i) for i, rating in zip(r["history_item_ids"][start:],
                                                                r["history_ratings"][start:], strict=True)]
        out.append((r["sample_id"], *slotted_rec_prompt(history, (titles[r["item_id"]], r["item_id"]),
                                                        cfg.samples.like_threshold, cfg.multimodal.user_token,
                                                        user=r["user_id"])))
    return out


def knowledge_evidence(cfg: Config, root: Path) -> KnowledgeEvidence:
    """The knowledge modality's source: the preference knowledge base and the training-period ratings it counted
    (to leave a training sample's own rating out of its evidence)."""
    folder = paths.resolve(paths.KNOWLEDGE_BASE, cfg, root)
    try:
        kb = store.load(folder)
    except FileNotFoundError as exc:
        raise FeatureError(f"multimodal.modalities names knowledge: {exc}") from None
    items = read_processed(cfg, root, "items")
    data = TrainingData.from_tables(read_processed(cfg, root, "samples"), read_processed(cfg, root, "interactions"),
                                    items, cfg.samples.like_threshold)
    counted = store.training_ratings(data)
    if counted.height != kb.manifest["training_ratings"]:
        raise FeatureError(f"{folder}: built from "
                           f"{kb.manifest['training_ratings']} training ratings, the tables now hold {counted.height} "
                           "(rebuild preference_knowledge_base)")
    return KnowledgeEvidence.from_store(kb, counted)


def feature_bank(cfg: Config, root: Path, features: pl.DataFrame, source: str,
                 with_knowledge: bool = True) -> FeatureBank:
    """The item features (and the knowledge base's pair evidence when `multimodal.modalities` names knowledge) the
    fusion reads. `with_knowledge=False` leaves the knowledge modality out: the attributed prompts (the champion's)
    do not carry their user yet, so its evidence could never be present there."""
    modalities = [m for m in cfg.multimodal.modalities if with_knowledge or m != "knowledge"]
    knowledge = knowledge_evidence(cfg, root) if "knowledge" in modalities else None
    return FeatureBank(features, modalities, source, knowledge=knowledge)


def trained_with_knowledge(folder: Path) -> bool:
    """Whether the fusion saved in `folder` reads the knowledge modality (the champion's never does)."""
    try:
        return "knowledge" in json.loads((folder / FUSION_CONFIG).read_text())["modality_dims"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # load_fusion reports what is wrong with the folder


def bank_digest(features: pl.DataFrame, bank: FeatureBank) -> str:
    """What a fusion is checked against on load: the item features' content hash, and with the knowledge modality
    the knowledge base's too (a rebuilt KB changes the evidence the fusion learned to read)."""
    digest = features_digest(features)
    if bank.knowledge is None:
        return digest
    return hashlib.sha256(f"{digest}:{bank.knowledge.digest}".encode()).hexdigest()


def new_item_token_model(cfg: Config, root: Path, llm, slot_id: int, with_knowledge: bool = True) -> ItemTokenLM:
    """`llm` (a LoRA model: frozen for two_step, trainable for joint) with a freshly initialised fusion (seeded by
    `llm_training.seed`) over the item_features the settings name: the item-token training's starting point."""
    features = _read_features(cfg, root)
    bank = feature_bank(cfg, root, features, str(paths.resolve(paths.ITEM_FEATURES, cfg, root)), with_knowledge)
    embeddings = llm.get_input_embeddings()
    spec = FusionSpec(modality_dims=bank.modality_dims, context_dim=bank.context_dim,
                      fusion_dim=cfg.multimodal.fusion_dim, hidden_size=embeddings.embedding_dim,
                      token_norm=token_embedding_norm(llm), user_token=cfg.multimodal.user_token,
                      features_sha256=bank_digest(features, bank))
    torch.manual_seed(cfg.llm_training.seed)
    return ItemTokenLM(llm, ModalityFusion(spec), bank, slot_id)


def score_slotted(model: ItemTokenLM, tokenizer, slot_id: int, prompts, requests, answer_ids, batch_size,
                  on_batch=None) -> np.ndarray:
    """P(Yes) of each slotted prompt (its soft tokens from `requests`), batched."""
    return score_yes(model.llm, tokenizer, prompts, answer_ids, batch_size, on_batch=on_batch,
                     embed=scoring_embedder(model, requests), slot_id=slot_id)


def run_item_token_adapter(cfg: Config, root: Path) -> dict:
    info, base, tokenizer = load_base(root)
    slot_id = add_slot_token(tokenizer)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s).sort("sample_id") for s in ("train", "valid"))
    ranking = cfg.multimodal.training_protocol == "ranking"
    if ranking:  # liked targets against unrated items only: the disliked targets answer another question
        train_rows, valid_rows = (rows.filter(pl.col("label") == 1) for rows in (train_rows, valid_rows))
    joint = cfg.multimodal.schedule == "joint"
    # joint: LoRA continued from stage 1 and trained with the fusion; two_step: rec_adapter's LoRA, frozen
    lora_source = root / (paths.ALPACA_ADAPTER if joint else paths.REC_ADAPTER)
    llm = adapters.load_adapter(base, lora_source, trainable=joint)
    model = new_item_token_model(cfg, root, llm, slot_id)
    bank, spec = model.bank, model.fusion.spec

    train_prompts, train_requests = slotted_prompts(cfg, root, train_rows)
    examples = []
    for prompt, response, request in zip(train_prompts, train_rows["response"], train_requests, strict=True):
        ex = encode(tokenizer, prompt, response)
        examples.append(SlotExample(ex.input_ids, ex.labels, request=request))
    pairwise = cfg.multimodal.ranking_loss == "pairwise"
    by_sample = {s: i for i, s in enumerate(train_rows["sample_id"])}  # pairwise: negatives ride on their target
    # two_step trains the fusion alone, at its rate; joint keeps llm_training.lr for the LoRA
    train_cfg = dataclasses.replace(cfg.llm_training, lr=cfg.llm_training.lr if joint else cfg.multimodal.fusion_lr,
                                    epochs=cfg.multimodal.fusion_epochs,
                                    cutoff=cfg.llm_training.cutoff + slot_budget(cfg.samples.history_len))
    negatives = {"added": 0, "skipped_too_long": 0}
    if cfg.multimodal.unseen_negatives:
        for sample_id, prompt, request in unseen_negatives_by_sample(cfg, root, train_rows):
            ex = encode(tokenizer, prompt, rec_response(0))
            if len(ex.input_ids) > train_cfg.cutoff:  # a longer title than the positive's: never train on a cut
                negatives["skipped_too_long"] += 1
                continue
            negative = SlotExample(ex.input_ids, ex.labels, request=request)
            if pairwise:
                target = examples[by_sample[sample_id]]
                examples[by_sample[sample_id]] = dataclasses.replace(target, extra=(*target.extra, negative))
            else:
                examples.append(negative)
            negatives["added"] += 1
    valid_prompts, valid_requests = slotted_prompts(cfg, root, valid_rows)
    valid_labels = valid_rows["label"].to_list()
    if ranking:  # each liked validation target against as many unrated items, drawn as the training negatives are
        for prompt, request in unseen_negative_prompts(cfg, root, valid_rows, any_time=True):
            valid_prompts.append(prompt)
            valid_requests.append(request)
            valid_labels.append(0)

    def evaluate(m) -> float:
        value = auc(valid_labels, score_slotted(m, tokenizer, slot_id, valid_prompts, valid_requests,
                                         info["answer_token_ids"], cfg.evaluation.batch_size))
        return 0.5 if value is None else value

    ckpt = _checkpoint_dir(root, "item_token_adapter", info, train_cfg, cfg.multimodal,
                           sha256_file(root / paths.REC_PROMPTS), sha256_file(lora_source / adapters.WEIGHTS),
                           spec.features_sha256)
    answer = info["answer_token_ids"]
    result = _fit("item_token_adapter", model, tokenizer, examples, train_cfg, ckpt, evaluate=evaluate,
                  loss_fn=item_token_pairwise_loss(answer["Yes"], answer["No"]) if pairwise else item_token_loss,
                  lr_by_prefix={"fusion.": cfg.multimodal.fusion_lr} if joint else None)
    card = {"name": "item_token_adapter",
            "description": ("The TALLRec recipe with item tokens: LoRA (from the stage-1 adapter) and fusion trained "
                            "together" if joint else
                            "The TALLRec recipe's adapter (frozen) with item tokens: the fusion trained on it (CoLLM "
                            "step 2)") + "; fused text/attribute/collaborative vectors projected into the token "
                                         "space after each title.",
            "schedule": cfg.multimodal.schedule, "training_protocol": cfg.multimodal.training_protocol,
            "lora_source": str(lora_source.relative_to(root)),
            "base_model": info["source"], "base_model_source": info,
            "data": {"file": paths.REC_PROMPTS, "sha256": sha256_file(root / paths.REC_PROMPTS),
                     "train_examples": len(examples), "unseen_negatives": negatives,
                     "valid_samples": len(valid_labels),
                     "item_features_sha256": spec.features_sha256, "modalities": bank.modalities,
                     "modalities_off": bank.off},
            "lora": _as_dict(cfg.lora), "training": _as_dict(train_cfg), "multimodal": _as_dict(cfg.multimodal),
            "metrics": {"best_valid_auc": result.best_metric, "best_step": result.best_step,
                        "valid_auc_by_step": result.evals}}
    summary = _finish("item_token_adapter", paths.ITEM_TOKEN_ADAPTER, llm, result, card, root, ckpt, base,
                      extras=lambda staging: save_fusion(model.fusion, staging))
    return {**summary, "examples": len(examples), "unseen_negatives": negatives, "valid_auc": result.best_metric,
            "training_protocol": cfg.multimodal.training_protocol, "ranking_loss": cfg.multimodal.ranking_loss,
            "valid_samples": len(valid_labels),
            "modalities": bank.modalities,
            "modalities_off": bank.off, "fusion_parameters": sum(p.numel() for p in model.fusion.parameters())}


def load_item_token_model(cfg: Config, root: Path, adapter: str = paths.ITEM_TOKEN_ADAPTER):
    """(manifest, ItemTokenLM, tokenizer, slot id) of a saved item-token adapter (LoRA + fusion), verified against
    the features."""
    info, base, tokenizer = load_base(root)
    slot_id = add_slot_token(tokenizer)
    folder = root / adapter
    # A registered model carries the features its fusion was trained on (continuous/registry.py); a pipeline
    # adapter runs on the pipeline's item_features.
    source = folder / paths.ADAPTER_FEATURES
    if not source.is_file():
        source = paths.resolve(paths.ITEM_FEATURES, cfg, root)
    features = pl.read_parquet(source)
    bank = feature_bank(cfg, root, features, str(source), trained_with_knowledge(folder))
    fusion = load_fusion(folder, features_sha256=bank_digest(features, bank), modality_dims=bank.modality_dims,
                         hidden_size=base.config.hidden_size)
    llm = adapters.load_adapter(base, folder)
    return info, ItemTokenLM(llm, fusion, bank, slot_id).eval(), tokenizer, slot_id


@torch.inference_mode()
def run_item_token_evaluation(cfg: Config, root: Path) -> dict:
    """AUC of the test and cold-start sets and NDCG@K of the LLM's candidate lists with item tokens; the fusion's
    attention per modality for warm and new items."""
    info, model, tokenizer, slot_id = load_item_token_model(cfg, root)
    answer_ids = info["answer_token_ids"]
    prompts = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS))
    unique = prompts.unique("sample_id").sort("sample_id")
    texts, requests = slotted_prompts(cfg, root, unique)
    start = time.perf_counter()
    with progress_bar(unique.height, "item_token_evaluation: scoring") as advance:
        p_yes = score_slotted(model, tokenizer, slot_id, texts, requests, answer_ids, cfg.evaluation.batch_size,
                              advance)
    seconds = time.perf_counter() - start
    scores = prompts.select("set", "sample_id", "user_id", "item_id", "label").join(
        unique.select("sample_id").with_columns(pl.Series("p_yes", p_yes)), on="sample_id")
    write_parquet(scores.sort("set", "sample_id"), root / paths.ITEM_TOKEN_SCORES)
    metrics: dict = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
                     for name in EVAL_SETS for part in [scores.filter(pl.col("set") == name)]}
    metrics["scoring"] = {"samples": unique.height, "seconds": round(seconds, 2),
                          "samples_per_s": round(unique.height / seconds, 3)}

    # Which modality the target's token relies on, for warm items (test) and items new to the training period.
    weights = {}
    by_sample = dict(zip(unique["sample_id"].to_list(), requests, strict=True))
    for name in ("test", "new_item"):
        ids = scores.filter(pl.col("set") == name)["sample_id"].to_list()
        if ids:
            targets = [SlotRequest(items=by_sample[s].items[-1:], liked=by_sample[s].liked, user=by_sample[s].user)
                       for s in ids]
            _, w = model.soft_tokens(targets)
            weights[name] = dict(zip(model.bank.modalities, w.mean(0).tolist(), strict=True))
    metrics["modality_weights"] = weights
    if weights:
        plot = plot_modality_weights(weights, root / paths.FIGURES / "item_token_modality_weights.png")
        metrics["modality_weights_plot"] = str(plot.relative_to(root))

    metrics["ranking"], seconds_per_list = _rank(cfg, root, model, tokenizer, answer_ids)
    metrics["ranking"]["seconds_per_list"] = seconds_per_list
    return metrics


def _rank(cfg: Config, root: Path, model: ItemTokenLM, tokenizer, answer_ids) -> tuple[dict, float]:
    """The LLM's candidate lists (the same seeded draw as llm_ranking), each user's slotted prefix run once."""
    items = read_processed(cfg, root, "items")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    candidates = llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)
    rows, start = [], time.perf_counter()
    with progress_bar(candidates.height, "item_token_evaluation: ranking") as advance:
        for r in candidates.iter_rows(named=True):
            history = [(titles[i], rating, i) for i, rating in zip(r["history_item_ids"], r["history_ratings"],
                                                                    strict=True)]
            prefix = slotted_parts(history, cfg.samples.like_threshold, cfg.multimodal.user_token, r["user_id"])
            suffixes = [slotted_suffix((titles[i], i), prefix[1].liked, r["user_id"]) for i in r["candidates"]]
            p_yes = score_slotted_candidates(model, tokenizer, prefix, suffixes, answer_ids,
                                             cfg.evaluation.batch_size * 4)
            rows.append({"sample_id": r["sample_id"], "scores": p_yes.tolist()})
            advance(1)
    seconds = time.perf_counter() - start
    metrics = write_list_scores(rows, root / paths.ITEM_TOKEN_RANKING)
    return metrics, round(seconds / max(candidates.height, 1), 2)
