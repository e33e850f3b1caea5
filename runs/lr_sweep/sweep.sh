#!/usr/bin/env bash
# The learning-rate sweep of the TALLRec recipe's stage 2 (validation only): each rate in its own copy of the base
# root (data, stage 1 and the features shared), trained and early-stopped on the same 200 validation samples.
set -euo pipefail
cd "$(dirname "$0")/../.."
SKIPS="--skip preference_knowledge_base --skip ranking_candidates --skip rating_evaluation --skip preference_attributions --skip explain_prompts --skip cross_domain_prompts --skip chatrec_evaluation --skip cross_domain_sets"
for name in "$@"; do
  params=runs/lr_sweep/$name.yaml; root=runs/lr_sweep/$name
  [ -d "$root" ] || cp -r runs/lr_sweep/base "$root"
  explainrec run all --params "$params" --root "$root" --until rec_adapter $SKIPS
done
