#!/usr/bin/env bash
# The test figures of one arm (run once, after the settings were chosen on validation): the TALLRec recipe's
# rec_adapter and the item-token adapter of that root scored on the paper profile's test and cold-start samples,
# the baselines (3 seeds) on the same samples, and the report pairing them. Usage: test_eval.sh ARM
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; params=runs/lr_sweep/$name.yaml; root=runs/lr_sweep/$name
SKIPS=""
for s in preference_knowledge_base rating_evaluation preference_attributions explain_prompts cross_domain_prompts \
         chatrec_evaluation cross_domain_sets multitask_adapter multitask_evaluation llm_ranking \
         validate_explain_prompts explain_adapter explain_adapter_ablation meta_adaptation \
         explain_item_token_adapter explain_evaluation validate_preference_knowledge_base \
         validate_cross_domain_sets cross_domain_adapter cross_domain_evaluation p5_adapter p5_evaluation champion_ablations ${EXTRA_SKIPS:-}; do SKIPS="$SKIPS --skip $s"; done
explainrec run all --params "$params" --root "$root" --until evaluation_report $SKIPS
