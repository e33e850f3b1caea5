#!/usr/bin/env bash
# GPU proof of the two-stage tuning: both stages in bf16 at a bigger setting than the CPU demo, then the
# speed benchmark against bare loops. Prints tokens/s, peak memory and AUC; writes them under $OUT.
#
#   bash scripts/gpu_check.sh                  # on a machine with a CUDA GPU and `make setup && make data` done
#   MODEL=/path/to/llama-7b-hf bash scripts/gpu_check.sh
#
# Sized to finish in well under 8 minutes with SmolLM2-135M on one H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=${OUT:-build/gpu_check}
MODEL=${MODEL:-}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work" "$MODEL" "$PWD" <<'PY'
import sys, yaml
work, model, repo = sys.argv[1:]
params = yaml.safe_load(open(f"{repo}/params.yaml"))
params["data"]["raw_dir"] = f"{repo}/data/raw/ml-100k"
params["model"]["base"] = model
params["alpaca"]["max_samples"] = 0                       # all 175 seed tasks
params["alpaca_training"].update(epochs=3, batch_size=16, cutoff=512, checkpoint_every=20)
params["rec_prompts"].update(train_samples=256, valid_samples=256, test_samples=2000, cold_start_samples=0)
params["rec_training"].update(epochs=4, batch_size=16, grad_accum=1, eval_every=8, patience=4, checkpoint_every=16)
params["evaluation"]["batch_size"] = 64
yaml.safe_dump(params, open(f"{work}/params.yaml", "w"), sort_keys=False)
PY
start=$(date +%s)
(cd "$work" && for step in ingest samples cold_start_sets alpaca_data validate base_model alpaca_adapter rec_prompts \
    rec_adapter rec_evaluation; do explainrec run "$step" > "$work/$step.log" 2>&1 || { cat "$work/$step.log"; exit 1; }; done)
echo "pipeline wall time: $(( $(date +%s) - start )) s"
cp -r "$work/reports" "$OUT/"
python - "$OUT/reports" <<'PY'
import json, sys
r = sys.argv[1]
for stage in ("alpaca_adapter", "rec_adapter"):
    m = json.load(open(f"{r}/models/{stage}.json"))
    print(f"{stage}: {m['steps']} steps, {m['tokens_per_s']:.0f} tokens/s, peak {m['peak_memory_mb']:.0f} MB, "
          f"{m['train_seconds']:.0f} s, {m['mixed_precision']}")
e = json.load(open(f"{r}/rec_evaluation.json"))
print("AUC " + ", ".join(f"{s} {e[s]['auc']:.3f} (n={e[s]['n']})" for s in ("test", "new_user", "new_item")))
print(f"scoring: {e['scoring']['samples_per_s']:.0f} samples/s at batch {e['scoring']['batch_size']}")
PY
python scripts/bench_llm.py --model "$MODEL" --batch-size 32 --train-steps 20 --score-prompts 512 --out "$OUT/bench.json"
