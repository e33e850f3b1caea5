#!/usr/bin/env bash
# P5 at paper sizes (runs/p5/params.yaml): the TALLRec recipe's ranking (llm_ranking), the baselines (3 seeds, both
# protocols), P5 trained and scored, and the report pairing them. The other LLM variants are not run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
SKIPS=""
for s in cross_domain_sets preference_knowledge_base cross_domain_prompts chatrec_evaluation meta_adaptation \
         validate_preference_knowledge_base validate_cross_domain_sets cross_domain_adapter cross_domain_evaluation \
         explain_adapter explain_adapter_ablation item_token_adapter item_token_evaluation explain_item_token_adapter \
         explain_evaluation multitask_adapter multitask_evaluation; do SKIPS="$SKIPS --skip $s"; done
explainrec run all --params runs/p5/params.yaml --root runs/p5 --until evaluation_report $SKIPS
