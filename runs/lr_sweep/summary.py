"""Validation AUC by step of every run in runs/lr_sweep (rec_adapter and item_token_adapter), from the model cards."""

import json
from pathlib import Path

HERE = Path(__file__).parent
for root in sorted(p for p in HERE.iterdir() if (p / "models").is_dir()):
    for step in ("rec_adapter", "item_token_adapter"):
        card_path = root / "models" / step / "model_card.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            m = card["metrics"]
            evals = ", ".join(f"{s}: {v:.3f}" for s, v in m["valid_auc_by_step"])
            lr = card["training"]["lr"]
            print(f"{root.name:>16} {step:>19} {card.get('schedule', ''):>8} lr {lr:g}: best {m['best_valid_auc']:.4f} "
                  f"at step {m['best_step']}  [{evals}]")
