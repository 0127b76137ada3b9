#!/usr/bin/env bash
# Reproduces the shipped retrofit deltas from scratch (CPU, about 30 minutes
# for Qwen2.5-Coder-0.5B): a Python environment with model/retrofit's pinned
# requirements, the base models pulled by sigma, then fit.py with the
# settings recorded in model/models.toml. Writes model/deltas/*.delta.gguf.
set -euo pipefail
cd "$(dirname "$0")/../.."
sigma=${SIGMA:-target/release/sigma}
venv=${VENV:-.venv-retrofit}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r model/retrofit/requirements.txt
fit() { # NAME BASE K_HEADS
  "$venv/bin/python" model/retrofit/fit.py --sigma "$sigma" --base "$("$sigma" model pull "$2")" \
    --k-heads "$3" --method refine --calib-seqs 32 --seq-len 512 --steps 100 --batch 8 --lr 2e-4 \
    --out "model/deltas/$1.delta.gguf"
}
fit sigma-qwen2.5-coder-0.5b qwen2.5-coder-0.5b 1
fit sigma-smollm2-135m smollm2-135m 1
sha256sum model/deltas/*.delta.gguf
