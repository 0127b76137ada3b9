#!/usr/bin/env bash
# The project's test command (README quick start, CI): builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo test --release --locked "$@"
