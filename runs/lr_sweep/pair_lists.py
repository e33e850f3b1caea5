"""NDCG@10 of the item-token ranker vs every ranking-tuned baseline on the same LLM lists (paired bootstrap, 2,000
resamples, seed 0, as the report's; the report pairs each method with the best baseline only).

    python runs/lr_sweep/pair_lists.py ROOT
"""

import sys
from pathlib import Path

from explainrec_core.evaluation.paired import PairedBootstrap, Scored
from explainrec_core.evaluation.report import ITEM_TOKENS, ndcg_frames

root = Path(sys.argv[1])
lists = ndcg_frames(root)["llm_lists"]
scored = {m: Scored.from_frame(f, "ndcg", None) for m, f in lists.items()}
boot = PairedBootstrap(scored[ITEM_TOKENS], 2000, 0)
dists = {m: boot.mean(s) for m, s in scored.items()}
for method, dist in dists.items():
    if method != ITEM_TOKENS:
        diff = dists[ITEM_TOKENS].minus(dist).to_dict()
        print(f"{ITEM_TOKENS} - {method}: {diff['delta']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}] "
              f"({diff['verdict']})")
