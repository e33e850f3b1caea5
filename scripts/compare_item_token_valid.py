"""Pair two item-token adapters (e.g. two training schedules) on the validation samples they were selected on.

Schedule experiments end in two `item_token_adapter` folders trained on the same samples (runs/lr_sweep: one
profile root per arm). This scores each one's slotted validation prompts and prints each AUC with its 95% interval
and the paired difference (bootstrap over the same samples). The adapters were early-stopped on these very samples,
so the difference carries that selection; it decides a setting, it is not a test figure.

`--protocol ranking` asks the ranking lists' question instead: the liked validation targets against
`multimodal.unseen_negatives` items each that their user never rated (the validation set the ranking-protocol
adapter, multimodal.training_protocol: ranking, is early-stopped on; drawn with the first params' settings).

    python scripts/compare_item_token_valid.py runs/lr_sweep/it_joint.yaml runs/lr_sweep/it_joint \
        runs/lr_sweep/it_two.yaml runs/lr_sweep/it_two
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import torch
import typer

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.evaluation.paired import auc_difference, auc_with_ci
from explainrec_core.steps.item_token_steps import (
    load_item_token_model,
    score_slotted,
    slotted_prompts,
    unseen_negative_prompts,
)


@torch.inference_mode()
def valid_scores(params: Path, root: Path, protocol: str = "auc", draw_params: Path | None = None) -> pl.DataFrame:
    cfg = load_config(params)
    info, model, tokenizer, slot_id = load_item_token_model(cfg, root)
    rows = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set") == "valid").sort("sample_id")
    if protocol == "ranking":
        rows = rows.filter(pl.col("label") == 1)
    texts, requests = slotted_prompts(cfg, root, rows)
    keys, labels = rows["sample_id"].to_list(), rows["label"].to_list()
    if protocol == "ranking":
        draw = load_config(draw_params or params)
        k = draw.multimodal.unseen_negatives
        if not 1 <= k < 100:  # the negatives' keys below leave room for 99 per liked target
            raise typer.BadParameter(f"{draw_params or params}: multimodal.unseen_negatives must be in 1..99 to draw "
                                     "the ranking negatives")
        for j, (text, request) in enumerate(unseen_negative_prompts(draw, root, rows, any_time=True)):
            texts.append(text)
            requests.append(request)
            keys.append(-(keys[j // k] * 100 + j % k + 1))  # one key per (liked target, its j-th negative)
            labels.append(0)
    p_yes = score_slotted(model, tokenizer, slot_id, texts, requests, info["answer_token_ids"],
                          cfg.evaluation.batch_size)
    return pl.DataFrame({"sample_id": keys, "label": labels, "score": p_yes})


def main(params_a: Path, root_a: Path, params_b: Path, root_b: Path,
         resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
         protocol: Annotated[str, typer.Option(help="auc (like/dislike) | ranking (liked vs never rated).")] = "auc"
         ) -> None:
    if protocol not in ("auc", "ranking"):
        raise typer.BadParameter(f"--protocol: auc or ranking, got {protocol!r}")
    a = valid_scores(params_a, root_a, protocol)
    b = valid_scores(params_b, root_b, protocol, draw_params=params_a)
    out = {"a": str(root_a), "b": str(root_b), "protocol": protocol, "n": a.height,
           "auc_a": auc_with_ci(a, resamples).to_dict(), "auc_b": auc_with_ci(b, resamples).to_dict(),
           "a_minus_b": auc_difference(a, b, resamples).to_dict()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    typer.run(main)
