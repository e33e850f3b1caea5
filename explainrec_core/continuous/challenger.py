"""The challenger of a retrain, and its comparison with the champion on the same newest samples.

Warm start: the champion's frozen attributed LoRA and its fusion weights, on the rebuilt item features (a retrain
refits the collaborative vectors, so the fusion must learn the new ones: that is what the challenger trains, with
the champion's own loss, learning rate and schedule; CoLLM step 2, as steps/explain_item_token_steps.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import torch

from explainrec_core import paths
from explainrec_core.attribution.faithfulness import faithfulness, stance_agreement
from explainrec_core.attribution.response_text import clean_response
from explainrec_core.config import Config
from explainrec_core.errors import RetrainError
from explainrec_core.evaluation.generation import explain_after_answer
from explainrec_core.evaluation.paired import auc_difference
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.features.fusion import ModalityFusion, load_fusion, save_fusion
from explainrec_core.features.item_prompts import add_slot_token, slot_budget
from explainrec_core.features.item_token_model import ItemTokenLM, SlotExample, item_token_joint_loss, scoring_embedder
from explainrec_core.models import adapters
from explainrec_core.models.base_model import load_tokenizer
from explainrec_core.steps.explain_item_token_steps import shown_contexts, slotted_explain_prompts
from explainrec_core.steps.explain_steps import context_builder, explained_prompt_rows
from explainrec_core.steps.item_token_steps import (
    bank_digest,
    feature_bank,
    load_item_token_model,
    trained_with_knowledge,
)
from explainrec_core.steps.llm_steps import _base_info, _checkpoint_dir, _finish, _fit, load_base
from explainrec_core.training.joint_loss import encode_explained

CHALLENGER_DIR = "models/retrain/challenger"  # the last challenger (the registry keeps a copy of every one)


def window_prompts(cfg: Config, root: Path, rows: pl.DataFrame) -> pl.DataFrame:
    """The attributed prompt and reference explanation of each window sample (as explain_prompts builds them)."""
    tokenizer = load_tokenizer(Path(_base_info(root)["path"]))
    built = explained_prompt_rows(cfg, root, rows, context_builder(cfg, root),
                                  lambda text: len(tokenizer(text)["input_ids"]))
    return rows.select("sample_id", "user_id", "item_id", "label").with_columns(
        pl.Series("prompt", [built[s]["prompt"] for s in rows["sample_id"]], pl.String),
        pl.Series("response", [built[s]["response"] for s in rows["sample_id"]], pl.String),
        pl.Series("n_history_dropped", [built[s]["n_history_dropped"] for s in rows["sample_id"]], pl.Int32))


def train_challenger(cfg: Config, root: Path, champion, rows: pl.DataFrame, log=print) -> tuple[Path, dict]:
    info, base, tokenizer = load_base(root)
    answer_ids, slot_id = info["answer_token_ids"], add_slot_token(tokenizer)
    source = champion.folder(root)
    llm = adapters.load_adapter(base, source)  # the champion's LoRA, frozen
    features = pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))
    bank = feature_bank(cfg, root, features, str(paths.resolve(paths.ITEM_FEATURES, cfg, root)),
                        trained_with_knowledge(source))
    old = load_fusion(source)  # verified against its own config; the features are new by design
    if bank.modality_dims != old.spec.modality_dims:
        raise RetrainError(f"{source}: the champion's fusion takes {old.spec.modality_dims}, the rebuilt item "
                           f"features have {bank.modality_dims}: retrain from scratch with the pipeline")
    fusion = ModalityFusion(dataclasses.replace(old.spec, features_sha256=bank_digest(features, bank)))
    fusion.load_state_dict(old.state_dict())
    model = ItemTokenLM(llm, fusion, bank, slot_id)

    table = window_prompts(cfg, root, rows)
    prompts, requests = slotted_explain_prompts(cfg, root, table, context_builder(cfg, root))
    examples = []
    for prompt, response, request in zip(prompts, table["response"], requests, strict=True):
        ex = encode_explained(tokenizer, prompt, response, answer_ids)
        examples.append(SlotExample(ex.input_ids, ex.labels, ex.answer_pos, request=request))
    r, weights = cfg.retrain, cfg.attribution.loss
    train_cfg = dataclasses.replace(cfg.llm_training, lr=cfg.multimodal.fusion_lr, epochs=r.epochs, eval_every=0,
                                    patience=0, cutoff=cfg.llm_training.cutoff + slot_budget(cfg.samples.history_len))
    ckpt = _checkpoint_dir(root, "retrain_challenger", champion.id, champion.adapter_sha256, train_cfg,
                           bank_digest(features, bank), table["sample_id"].to_list())
    result = _fit("retrain_challenger", model, tokenizer, examples, train_cfg, ckpt,
                  loss_fn=item_token_joint_loss(weights.classification, weights.explanation))
    card = {"name": "retrain_challenger", "parent": champion.id, "base_model": info["source"],
            "base_model_source": info, "prompt_column": "prompt", "lora": champion_lora(source),
            "data": {"window_train_samples": len(examples), "item_features_sha256": fusion.spec.features_sha256},
            "training": dataclasses.asdict(train_cfg)}
    summary = _finish("retrain_challenger", CHALLENGER_DIR, llm, result, card, root, ckpt, base,
                      extras=lambda staging: save_fusion(model.fusion, staging))
    log(f"challenger trained on {len(examples)} samples in {result.steps} steps")
    return root / CHALLENGER_DIR, {"examples": len(examples), "steps": result.steps,
                                   "final_loss": summary.get("final_loss"), "seconds": round(result.train_seconds, 1)}


def champion_lora(folder: Path) -> dict:
    """The LoRA section of a saved adapter's card (save_adapter checks the expected modules against it)."""
    return json.loads((folder / adapters.CARD_JSON).read_text())["lora"]


@torch.inference_mode()
def evaluate(cfg: Config, root: Path, adapter: Path, rows: pl.DataFrame, explain_n: int) -> dict:
    """P(Yes) of every row and explanations of the first `explain_n`, by the item-token model in `adapter`."""
    info, model, tokenizer, slot_id = load_item_token_model(cfg, root, str(adapter.relative_to(root)))
    builder = context_builder(cfg, root)
    table = window_prompts(cfg, root, rows)
    prompts, requests = slotted_explain_prompts(cfg, root, table, builder)
    answer_ids, batch = info["answer_token_ids"], cfg.evaluation.batch_size
    p_yes = score_yes(model.llm, tokenizer, prompts, answer_ids, batch, embed=scoring_embedder(model, requests),
                      slot_id=slot_id)
    explained_rows = table.head(explain_n)
    contexts = shown_contexts(cfg, root, explained_rows, builder)
    explained = explain_after_answer(model.llm, tokenizer, prompts[:explain_n], list(p_yes[:explain_n]),
                                     cfg.attribution.max_new_tokens, batch,
                                     embed=scoring_embedder(model, requests[:explain_n]))
    texts = [clean_response(text, answer=answer) for answer, text in explained]
    return {"p_yes": p_yes, "auc": auc(table["label"].to_list(), list(p_yes)),
            **faithfulness(contexts, texts, builder.vocabulary),
            **{k: v for k, v in stance_agreement(contexts, texts, builder.vocabulary).items()},
            "examples": texts[:3]}


def compare(cfg: Config, root: Path, champion, challenger_dir: Path, rows: pl.DataFrame, log=print) -> dict:
    """Champion and challenger on the same newest samples: AUC each, the paired difference, faithfulness."""
    n = min(cfg.retrain.explain_samples, rows.height)
    results = {"champion": evaluate(cfg, root, champion.folder(root), rows, n),
               "challenger": evaluate(cfg, root, challenger_dir, rows, n)}
    frames = {k: rows.select("sample_id", "label").with_columns(pl.Series("score", v.pop("p_yes")))
              for k, v in results.items()}
    diff = auc_difference(frames["challenger"], frames["champion"], seed=cfg.retrain.seed)
    for name, m in results.items():
        log(f"{name}: AUC {m['auc']:.4f} on {rows.height} newest samples, faithfulness {m['faithfulness']}")
    return {**results, "auc_difference": diff.to_dict(), "eval_samples": rows.height, "explained": n}
