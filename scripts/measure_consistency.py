"""Does the consistency term (paper eq. 3) make generated explanations agree with their answers? A paired A/B.

    python scripts/measure_consistency.py --root runs/paper --params params/paper.yaml --train 64 --test 60

Trains the attributed model twice from the pipeline's outputs under --root (its explain prompts, base model and
Alpaca adapter, or a seeded fresh LoRA when there is none yet; the LoRA and schedule of `llm_training`), on the same
--train training examples (a seeded subset), with the same seed, differing only in the consistency weight: 0 and
--weight (the other loss weights as in --params). There is no early stopping (both runs take the full schedule, so
they differ in nothing else). Then both explain the same first --test test samples as explain_evaluation
does (the predicted answer, P(Yes) >= 0.5, written after the prompt and the explanation generated after it;
`clean_response`; max_new_tokens from --params), and `attribution.explanations.explanation_stance` reads each
explanation's stance. An explanation contradicts its answer when the stance has the opposite sign ("Yes."
+ an argument against liking, or "No." + one for). Reports, per run, how many contradict out of those with an answer
and a stance, and the pairs where only one run contradicts (an exact two-sided sign test on those: McNemar). Writes
the result as JSON to --out. Nothing under --root is changed (checkpoints go to a temp folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
from scipy.stats import binomtest

from explainrec_core import paths
from explainrec_core.attribution.explanations import explanation_stance
from explainrec_core.attribution.response_text import clean_response, split_answer
from explainrec_core.config import load_config
from explainrec_core.evaluation.generation import explain_after_answer
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models import adapters
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.explain_steps import context_builder
from explainrec_core.steps.llm_steps import load_base
from explainrec_core.training.engine import train
from explainrec_core.training.joint_loss import encode_explained, make_joint_loss


def contradicts(text: str, stance: int) -> bool | None:
    """True/False when the text has an answer and a stance; None otherwise (not counted either way)."""
    answer = split_answer(text)[0]
    if answer is None or stance == 0:
        return None
    return stance != (1 if answer == "Yes" else -1)


def run(args) -> dict:
    cfg = load_config(args.params)
    root = args.root
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    train_rows = prompts.filter(pl.col("set") == "train").unique("sample_id").sort("sample_id")
    train_rows = train_rows.sample(min(args.train, train_rows.height), seed=args.seed).sort("sample_id")
    test_rows = prompts.filter(pl.col("set") == "test").unique("sample_id").sort("sample_id").head(args.test)
    builder = context_builder(cfg, root)
    samples = read_processed(cfg, root, "samples").join(test_rows.select("sample_id"), on="sample_id")
    # As explain_evaluation does: the history the prompt shows (oldest items dropped to fit the cutoff).
    dropped = dict(test_rows.select("sample_id", "n_history_dropped").iter_rows())
    contexts = {r["sample_id"]: builder.build(r["history_item_ids"][dropped[r["sample_id"]]:],
                                              r["history_ratings"][dropped[r["sample_id"]]:], r["item_id"])
                for r in samples.iter_rows(named=True)}
    schedule = dataclasses.replace(cfg.llm_training, seed=args.seed, checkpoint_every=0, eval_every=0, patience=0,
                                   **({"epochs": args.epochs} if args.epochs else {}))
    out: dict = {"root": str(root), "params": str(args.params), "seed": args.seed, "train_examples": None,
                 "test_samples": test_rows.height, "schedule": dataclasses.asdict(schedule), "runs": {}}
    texts: dict[float, list[str]] = {}
    for weight in (0.0, args.weight):
        info, base, tokenizer = load_base(root)
        answer_ids = info["answer_token_ids"]
        examples = [encode_explained(tokenizer, p, r, answer_ids)
                    for p, r in zip(train_rows["prompt"], train_rows["response"], strict=True)]
        examples = [e for e in examples if len(e.input_ids) <= schedule.cutoff]
        out["train_examples"] = len(examples)
        if (root / paths.ALPACA_ADAPTER).exists():
            model, out["start"] = adapters.load_adapter(base, root / paths.ALPACA_ADAPTER, trainable=True), "alpaca"
        else:  # stage 1 not run yet under --root: both runs start from the same fresh LoRA (seeded)
            torch.manual_seed(args.seed)
            model, out["start"] = adapters.attach_lora(base, cfg.lora), "fresh LoRA (no alpaca adapter)"
        weights = dataclasses.replace(cfg.attribution.loss, consistency=weight)
        loss_fn = make_joint_loss(weights, tokenizer, answer_ids)
        with tempfile.TemporaryDirectory() as ckpt:
            result = train(model, examples, schedule, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=Path(ckpt),
                           loss_fn=loss_fn, on_step=lambda s, loss: print(f"  w_con={weight} step {s} loss {loss:.3f}",
                                                                           file=sys.stderr, flush=True))
        start = time.perf_counter()
        p_yes = score_yes(model, tokenizer, test_rows["prompt"].to_list(), answer_ids, cfg.evaluation.batch_size)
        explained = explain_after_answer(model, tokenizer, test_rows["prompt"].to_list(), p_yes,
                                         cfg.attribution.max_new_tokens, cfg.evaluation.batch_size)
        raw = [answer + text for answer, text in explained]
        texts[weight] = [clean_response(t, answer=a) for a, t in explained]  # as explain_evaluation reads them
        stances = [explanation_stance(t, contexts[s], builder.vocabulary)
                   for t, s in zip(texts[weight], test_rows["sample_id"], strict=True)]
        verdicts = [contradicts(t, st) for t, st in zip(texts[weight], stances, strict=True)]
        compared = [v for v in verdicts if v is not None]
        out["runs"][str(weight)] = {
            "loss_weights": dataclasses.asdict(weights), "train_seconds": round(result.train_seconds, 1),
            "steps": result.steps, "first_loss": result.losses[0][1], "last_loss": result.losses[-1][1],
            "own_explanations_generated": loss_fn.generated,
            "generate_seconds": round(time.perf_counter() - start, 1),
            "contradicting": sum(compared), "compared": len(compared),
            "contradict_share": sum(compared) / len(compared) if compared else None,
            "no_answer": sum(split_answer(t)[0] is None for t in texts[weight]),
            "no_stance": sum(st == 0 for st in stances), "verdicts": verdicts, "texts": texts[weight],
            "raw_texts": raw}
    a, b = (out["runs"][str(w)]["verdicts"] for w in (0.0, args.weight))
    paired = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    only_without = sum(x and not y for x, y in paired)  # contradicts at weight 0 only
    only_with = sum(y and not x for x, y in paired)
    out["paired"] = {"both_compared": len(paired), "contradict_without_term_only": only_without,
                     "contradict_with_term_only": only_with,
                     "sign_test_p": binomtest(only_without, only_without + only_with).pvalue
                     if only_without + only_with else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/paper"))
    parser.add_argument("--params", type=Path, default=Path("params/paper.yaml"))
    parser.add_argument("--train", type=int, default=64, help="training examples (a seeded subset)")
    parser.add_argument("--test", type=int, default=60, help="test samples whose explanations are compared")
    parser.add_argument("--weight", type=float, default=1.0, help="the consistency weight of the second run")
    parser.add_argument("--epochs", type=int, default=0, help="override llm_training.epochs (0 = keep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/consistency_measurement.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    summary = {w: {k: v for k, v in r.items() if k not in ("verdicts", "texts", "raw_texts", "loss_weights")}
               for w, r in result["runs"].items()}
    print(json.dumps({"start": result["start"], "train_examples": result["train_examples"],
                      "test_samples": result["test_samples"], "runs": summary, "paired": result["paired"]}, indent=1))


if __name__ == "__main__":
    main()
