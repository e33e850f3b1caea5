#!/usr/bin/env bash
# meta_adaptation before and after the task users were kept out of its item CF vectors, on the same data (the paper
# profile's tables: a copy of runs/multitask_lr/data/processed in before/ and after/), with the paper profile's
# meta settings (params/paper.yaml: 3 epochs). "before" runs commit 7c72ff2's code from a worktree:
#   git worktree add /tmp/old_meta 7c72ff2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
(cd "$here/before" && PYTHONPATH=/tmp/old_meta "$repo/.venv/bin/explainrec" run meta_adaptation --params /tmp/old_meta/params/paper.yaml)
(cd "$here/after" && "$repo/.venv/bin/explainrec" run meta_adaptation --params "$repo/params/paper.yaml")
