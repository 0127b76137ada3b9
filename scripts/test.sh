#!/usr/bin/env bash
# The project's test command (README quick start, CI): builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
# The engine's oracle tests compare both shipped models with llama.cpp.
sigma="${CARGO_TARGET_DIR:-target}/release/sigma"
"$sigma" model pull smollm2-135m
"$sigma" model pull qwen2.5-coder-0.5b
# llama.cpp built for this machine, for `sigma bench --peer` and its test
# (a few minutes the first time, then cached).
SIGMA_PEER_DIR="$(./scripts/build-llama-cpp-peer.sh)"
export SIGMA_PEER_DIR
cargo test --release --locked "$@"
# The deploy files (DaemonSet, NPD config, NHC check, systemd units), offline.
SIGMA_REAL_BIN="$sigma" ./deploy/check.sh
