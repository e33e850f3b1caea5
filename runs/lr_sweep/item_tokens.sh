#!/usr/bin/env bash
# The item-token schedules (validation only): each arm in its own copy of the $SRC root (same data, stage 1,
# rec_adapter and item features), item_token_adapter trained and early-stopped on the same 200 validation samples.
set -euo pipefail
cd "$(dirname "$0")/../.."
SKIPS=""
for s in preference_knowledge_base ranking_candidates rating_evaluation preference_attributions explain_prompts \
         cross_domain_prompts chatrec_evaluation cross_domain_sets rec_evaluation multitask_adapter \
         multitask_evaluation llm_ranking validate_explain_prompts validate_item_attributes explain_adapter \
         explain_adapter_ablation baselines meta_adaptation p5_adapter p5_evaluation champion_ablations ${EXTRA_SKIPS:-}; do SKIPS="$SKIPS --skip $s"; done
for name in "$@"; do
  params=runs/lr_sweep/$name.yaml; root=runs/lr_sweep/$name
  [ -d "$root" ] || cp -r "runs/lr_sweep/${SRC:-lr1e-4}" "$root"   # SRC: the arm whose rec_adapter it starts from
  explainrec run all --params "$params" --root "$root" --until item_token_adapter $SKIPS
done
