"""The champion: the attributed model (answers and explains) with item tokens (paper III-B + III-D, eq. 9).

Training schedule: CoLLM's two steps, as for the TALLRec recipe's item tokens (item_token_steps.py). Step 1 is
`explain_adapter` (LoRA on the attributed text prompts, joint loss); step 2 (here) trains the fusion and projector
with that LoRA frozen, on the same few-shot samples and the same `llm_training` schedule (steps, evaluations, early
stopping on validation AUC, seed), with the fusion's own learning rate and the cutoff grown by the markers' tokens.
The loss is eq. 3's answer + explanation terms with the same weights (features/item_token_model.py). So the champion
differs from `explain_adapter` in the soft tokens alone, and is scored on the same samples (explain_evaluation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.attribution.builder import ContextBuilder
from explainrec_core.attribution.explanations import SampleContext
from explainrec_core.config import Config
from explainrec_core.evaluation.scoring import auc
from explainrec_core.features.feature_bank import SlotRequest
from explainrec_core.features.fusion import save_fusion
from explainrec_core.features.item_prompts import add_slot_token, slot_budget, slotted_explain_prompt
from explainrec_core.features.item_token_model import SlotExample, item_token_joint_loss
from explainrec_core.io import sha256_file
from explainrec_core.models import adapters
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.explain_steps import context_builder
from explainrec_core.steps.item_token_steps import new_item_token_model, score_slotted
from explainrec_core.steps.llm_steps import _as_dict, _checkpoint_dir, _finish, _fit, load_base
from explainrec_core.training.joint_loss import encode_explained


def shown_contexts(cfg: Config, root: Path, rows: pl.DataFrame, builder: ContextBuilder) -> list[SampleContext]:
    """The context each explain_prompts row's prompt shows: its history without the oldest items the cutoff
    dropped (`n_history_dropped`), reasons recomputed from what is shown (as attribution/prompting.fit_prompt)."""
    samples = read_processed(cfg, root, "samples").select("sample_id", "history_item_ids", "history_ratings")
    joined = rows.select("sample_id", "item_id", "n_history_dropped").join(samples, on="sample_id", how="left")
    by_id = {r["sample_id"]: builder.build(r["history_item_ids"][r["n_history_dropped"]:],
                                           r["history_ratings"][r["n_history_dropped"]:], r["item_id"])
             for r in joined.iter_rows(named=True)}
    return [by_id[s] for s in rows["sample_id"]]


def slotted_explain_prompts(cfg: Config, root: Path, rows: pl.DataFrame, builder: ContextBuilder
                            ) -> tuple[list[str], list[SlotRequest]]:
    """The item-token prompt of each explain_prompts row: its attributed prompt, same shown history, plus slots
    (checked: removing the slots gives the row's prompt back)."""
    prompts, requests = [], []
    for ctx, text in zip(shown_contexts(cfg, root, rows, builder), rows["prompt"], strict=True):
        prompt, request = slotted_explain_prompt(ctx, cfg.attribution.reasons_per_item, cfg.multimodal.user_token,
                                                 text)
        prompts.append(prompt)
        requests.append(request)
    return prompts, requests


CHAMPION_DESCRIPTION = ("The champion: the attributed adapter (frozen) with item tokens after each title and a user "
                        "token (fusion trained with the answer + explanation loss, CoLLM step 2).")


def run_explain_item_token_adapter(cfg: Config, root: Path) -> dict:
    return train_champion_fusion(cfg, root, "explain_item_token_adapter", paths.EXPLAIN_ITEM_TOKEN_ADAPTER,
                                 CHAMPION_DESCRIPTION)


def train_champion_fusion(cfg: Config, root: Path, name: str, target: str, description: str) -> dict:
    """The champion's step 2 under `cfg`, saved to `target`: the ablation runner (ablation_steps.py) calls it with
    the same settings but fewer modalities, so its variants differ from the champion in that alone."""
    info, base, tokenizer = load_base(root)
    answer_ids = info["answer_token_ids"]
    slot_id = add_slot_token(tokenizer)
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s).unique("sample_id").sort("sample_id")
                              for s in ("train", "valid"))
    llm = adapters.load_adapter(base, root / paths.EXPLAIN_ADAPTER)  # step 1's LoRA, frozen (CoLLM step 2)
    # no knowledge modality: the attributed prompts do not carry their user (features/knowledge_evidence.py)
    model = new_item_token_model(cfg, root, llm, slot_id, with_knowledge=False)
    builder = context_builder(cfg, root)
    train_cfg = dataclasses.replace(cfg.llm_training, lr=cfg.multimodal.fusion_lr,
                                    epochs=cfg.multimodal.fusion_epochs,
                                    cutoff=cfg.llm_training.cutoff + slot_budget(cfg.samples.history_len))
    train_prompts, train_requests = slotted_explain_prompts(cfg, root, train_rows, builder)
    examples, skipped = [], 0
    for prompt, response, request, text in zip(train_prompts, train_rows["response"], train_requests,
                                               train_rows["prompt"], strict=True):
        # The same examples as explain_adapter: those its cutoff dropped stay out here too.
        if len(encode_explained(tokenizer, text, response, answer_ids).input_ids) > cfg.llm_training.cutoff:
            skipped += 1
            continue
        ex = encode_explained(tokenizer, prompt, response, answer_ids)
        examples.append(SlotExample(ex.input_ids, ex.labels, ex.answer_pos, request=request))
    valid_prompts, valid_requests = slotted_explain_prompts(cfg, root, valid_rows, builder)
    valid_labels = valid_rows["label"].to_list()

    def evaluate(m) -> float:
        value = auc(valid_labels, score_slotted(m, tokenizer, slot_id, valid_prompts, valid_requests, answer_ids,
                                         cfg.evaluation.batch_size))
        return 0.5 if value is None else value

    weights = cfg.attribution.loss
    ckpt = _checkpoint_dir(root, name, info, train_cfg, cfg.multimodal, weights,
                           sha256_file(root / paths.EXPLAIN_PROMPTS),
                           sha256_file(root / paths.EXPLAIN_ADAPTER / adapters.WEIGHTS),
                           model.fusion.spec.features_sha256)
    result = _fit(name, model, tokenizer, examples, train_cfg, ckpt, evaluate=evaluate,
                  loss_fn=item_token_joint_loss(weights.classification, weights.explanation))
    card = {"name": name, "description": description,
            "base_model": info["source"], "base_model_source": info, "prompt_column": "prompt",
            "data": {"file": paths.EXPLAIN_PROMPTS, "sha256": sha256_file(root / paths.EXPLAIN_PROMPTS),
                     "train_examples": len(examples), "valid_samples": valid_rows.height,
                     "skipped_longer_than_cutoff": skipped,
                     "item_features_sha256": model.fusion.spec.features_sha256,
                     "modalities": model.bank.modalities, "modalities_off": model.bank.off},
            "lora": _as_dict(cfg.lora), "training": _as_dict(train_cfg), "multimodal": _as_dict(cfg.multimodal),
            "loss_weights": {"classification": weights.classification, "explanation": weights.explanation},
            "metrics": {"best_valid_auc": result.best_metric, "best_step": result.best_step,
                        "valid_auc_by_step": result.evals}}
    summary = _finish(name, target, llm, result, card, root, ckpt,
                      base, extras=lambda staging: save_fusion(model.fusion, staging))
    return {**summary, "examples": len(examples), "skipped_longer_than_cutoff": skipped,
            "valid_auc": result.best_metric, "modalities": model.bank.modalities, "modalities_off": model.bank.off}
