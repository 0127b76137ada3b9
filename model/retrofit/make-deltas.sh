#!/usr/bin/env bash
# Reproduces the shipped retrofit deltas from scratch (CPU: about 20 minutes of
# fitting for Qwen2.5-Coder-0.5B, then about 2 hours of distillation on an idle
# 2-core machine): a Python environment with model/retrofit's pinned
# requirements, the base models pulled by sigma, then fit.py (and, for Qwen,
# distill.py) with the settings recorded in model/models.toml. Writes
# model/deltas/*.delta.gguf.
set -euo pipefail
cd "$(dirname "$0")/../.."
sigma=${SIGMA:-target/release/sigma}
venv=${VENV:-.venv-retrofit}
work=${WORK:-$(mktemp -d)}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r model/retrofit/requirements.txt
fit() { # BASE K_HEADS OUT
  "$venv/bin/python" model/retrofit/fit.py --sigma "$sigma" --base "$("$sigma" model pull "$1")" \
    --k-heads "$2" --method refine --calib-seqs 32 --seq-len 512 --steps 100 --batch 8 --lr 2e-4 \
    --out "$3"
}
distill() { # BASE FROM OUT STEPS (resumes from $work/NAME.pt when interrupted)
  "$venv/bin/python" model/retrofit/distill.py --sigma "$sigma" --base "$("$sigma" model pull "$1")" \
    --delta "$2" --out "$3" --checkpoint "$work/$(basename "$3").pt" \
    --calib-seqs 64 --seq-len 512 --seed 1 --top-k 64 --steps "$4" --batch 2 --lr 1e-4 --every 5
}
fit qwen2.5-coder-0.5b 1 "$work/sigma-qwen2.5-coder-0.5b.fitted.delta.gguf"
# Two runs, as shipped: 60 steps, then 240 more from the first run's delta (a
# fresh cosine schedule).
distill qwen2.5-coder-0.5b "$work/sigma-qwen2.5-coder-0.5b.fitted.delta.gguf" \
  "$work/sigma-qwen2.5-coder-0.5b.distilled60.delta.gguf" 60
distill qwen2.5-coder-0.5b "$work/sigma-qwen2.5-coder-0.5b.distilled60.delta.gguf" \
  model/deltas/sigma-qwen2.5-coder-0.5b.delta.gguf 240
fit smollm2-135m 1 model/deltas/sigma-smollm2-135m.delta.gguf
sha256sum model/deltas/*.delta.gguf
