"""Compare the multi-task model's task-weighting schemes on the validation set (paper eq. 10-11).

    python scripts/compare_task_weighting.py --params params/paper.yaml --root runs/multitask_weights \
        [--schemes fixed uncertainty dwa]

For each scheme: a settings file `ROOT/params_<scheme>.yaml` (the profile with only `multitask.weighting` changed),
then `explainrec run all --until multitask_adapter` in ROOT (the upstream steps run once and are reused; the
multi-task adapter retrains because its fingerprint includes the `multitask` section), and a copy of the adapter,
its step metrics and weight plot into `ROOT/weighting/<scheme>/`. Prints, per scheme, the selection score of the
kept weights and its parts (valid AUC, valid RMSE) at that step, and writes `ROOT/weighting/comparison.json`.
Only validation data decide; the test set is not read here.

Resumable: a scheme whose copy exists is not trained again (delete its folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from explainrec_core import paths

# Only multitask_adapter's inputs are needed (base model, stage-1 adapter, prompts, samples, items): the rest of the
# profile is left out, the single-task recipe and every evaluation on test included.
SKIP = ("baselines", "preference_knowledge_base", "cross_domain_sets", "chatrec_evaluation", "cross_domain_prompts",
        "llm_ranking", "explain_adapter", "explain_adapter_ablation", "item_token_adapter", "item_token_evaluation",
        "rec_adapter", "rec_evaluation", "rating_evaluation", "item_attributes", "preference_attributions",
        "explain_prompts", "item_features", "ranking_candidates", "cold_start_sets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params/paper.yaml"))
    parser.add_argument("--root", type=Path, default=Path("runs/multitask_weights"))
    parser.add_argument("--schemes", nargs="+", default=["fixed", "uncertainty", "dwa"])
    args = parser.parse_args()
    root = args.root
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    for scheme in args.schemes:
        keep = root / "weighting" / scheme
        if not (keep / "step.json").is_file():
            settings = root / f"params_{scheme}.yaml"
            settings.write_text(yaml.safe_dump({"extends": os.path.relpath(args.params.resolve(), root.resolve()),
                                                "multitask": {"weighting": scheme}}, sort_keys=False))
            skips = [a for s in SKIP for a in ("--skip", s)]
            subprocess.run([sys.executable, "-m", "explainrec_core.cli", "run", "all", "--params", str(settings),
                            "--root", str(root), "--until", "multitask_adapter", *skips], check=True)
            staging = keep.with_name(f".{scheme}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(root / paths.MULTITASK_ADAPTER, staging / "adapter")
            for figure in ("multitask_adapter_training.png", "multitask_adapter_task_weights.png"):
                if (root / paths.FIGURES / figure).is_file():
                    shutil.copy(root / paths.FIGURES / figure, staging / figure)
            shutil.copy(root / paths.STEP_METRICS["multitask_adapter"], staging / "step.json")
            shutil.rmtree(keep, ignore_errors=True)
            staging.rename(keep)
        step = json.loads((keep / "step.json").read_text())
        evals = step["valid_parts_by_evaluation"]
        best = step["best_step"]
        eval_steps = [s for s, _ in json.loads((keep / "adapter" / "model_card.json").read_text())
                      ["metrics"]["selection_by_step"]] if (keep / "adapter" / "model_card.json").is_file() else []
        at_best = evals[eval_steps.index(best)] if best in eval_steps else {}
        results[scheme] = {"selection_score": step["selection_score"], "best_step": best, "steps": step["steps"],
                           "valid_at_best": at_best, "final_weights": step["task_weights"][-1][1],
                           "train_seconds": step.get("train_seconds")}
        print(f"{scheme:12s} selection {step['selection_score']:+.4f} at step {best}/{step['steps']}  "
              f"valid AUC {at_best.get('valid_auc', float('nan')):.4f}  "
              f"valid RMSE {at_best.get('valid_rmse', float('nan')):.4f}  "
              f"final weights {results[scheme]['final_weights']}")
    best = max(results, key=lambda s: results[s]["selection_score"])
    (root / "weighting" / "comparison.json").write_text(json.dumps({"best": best, "schemes": results}, indent=2))
    print(f"best on valid: {best}")


if __name__ == "__main__":
    main()
