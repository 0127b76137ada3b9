#!/usr/bin/env bash
# One command from a fresh machine to a working `sigma doctor`:
# system packages, Rust toolchain check, release build, then the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# System packages: cmake and clang build ggml (through llama-cpp-sys-2).
need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v clang >/dev/null || need_pkgs+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
command -v tmux >/dev/null || need_pkgs+=(tmux)
command -v pip3 >/dev/null || command -v pip >/dev/null || need_pkgs+=(python3-pip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing system packages: ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found: install Rust with rustup (https://rustup.rs), then rerun $0" >&2
    exit 1
fi

say "building sigma (release)"
cargo build --release --locked

sigma="${CARGO_TARGET_DIR:-target}/release/sigma"

say "default model (downloaded once, checked against its sha256)"
"$sigma" model pull qwen2.5-coder-0.5b

say "sigma doctor"
status=0
"$sigma" doctor || status=$?
case $status in
    0|3|4) say "done: sigma is at $sigma (doctor exit $status: 0 healthy, 3 warnings, 4 critical)" ;;
    *) exit "$status" ;;
esac
