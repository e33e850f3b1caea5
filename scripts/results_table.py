"""Print the README's main results table from a profile's reports/metrics.json (no hand-copied figures).

    python scripts/results_table.py runs/paper/reports/metrics.json

One row per method the report has: test / new-user / new-item AUC with 95% intervals, NDCG@10 on the LLM's candidate
lists, each with its paired difference to the best baseline of that column (the report's own figures: paired
percentile bootstrap over the same samples / lists).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {  # report method -> README label, in the README's order; methods not in the report are left out
    "tallrec_lora": "TALLRec recipe (text prompt)",
    "tallrec_item_tokens": "TALLRec recipe + item tokens",
    "explainrec": "ExplainRec w/o item tokens (attributed text prompt)",
    "explainrec_no_attribution": "ExplainRec w/o attribution (plain prompt, joint loss)",
    "explainrec_item_tokens": "**ExplainRec (champion: attribution + item tokens)**",
    "tallrec_multitask": "TALLRec recipe, multi-task (+ rating)",
    "p5": "P5 (prompt families on our LLM)",
    "chat_rec": "Chat-REC (untuned LLM, CF candidates)",
    "knowledge_base": "knowledge base alone (eq. 5, no LLM)",
    "popularity": "popularity",
    "bpr": "BPR-MF",
    "lightgcn": "LightGCN",
    "sasrec": "SASRec",
    "content": "content (MiniLM)",
    "mmgcn": "MMGCN",
    "lattice": "LATTICE",
}
COLUMNS = (("test", "auc"), ("new_user", "auc"), ("new_item", "auc"), ("llm_lists", "ndcg@10"))


def cells(stats: dict | None, key: str) -> list[str]:
    """'value [low, high]' and 'difference to the best [low, high]' (or '(best)'), '-' where not measured."""
    if not stats or key not in stats:
        return ["-", "-"]
    low, high = stats[f"{key}_ci95"]
    value = f"{stats[key]:.3f} [{low:.3f}, {high:.3f}]"
    if stats.get(f"delta_{key}_vs_best") is None:
        return [value, "(best)"]
    d_low, d_high = stats[f"delta_{key}_ci95"]
    return [value, f"{stats[f'delta_{key}_vs_best']:+.3f} [{d_low:+.3f}, {d_high:+.3f}]"]


def table(metrics: dict) -> str:
    head = ["method", "test AUC", "Δ vs best", "new users", "Δ vs best", "new items", "Δ vs best",
            "NDCG@10 (LLM's lists)", "Δ vs best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, label in LABELS.items():
        if method not in metrics["methods"]:
            continue
        m = metrics["methods"][method]
        row = [label]
        for name, key in COLUMNS:
            stats = m.get("ranking_lists", {}).get(name) if name == "llm_lists" else m.get("sets", {}).get(name)
            row += cells(stats, key)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(table(json.loads(Path(sys.argv[1]).read_text())))
