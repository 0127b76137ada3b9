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
python3 -c 'import ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# An emulated CPU without AVX-512 (and one below x86-64-v3) for the test of the
# run-time choice of CPU kernels (tests/cpu_variants.rs).
command -v qemu-x86_64 >/dev/null || need_pkgs+=(qemu-user)
# The engines the fleet tests start on this machine (they run their own
# daemons in temporary directories; the packaged services are not started):
# pdsh, clush, a one-node Slurm with munge, an OpenSSH server, Prometheus's
# promtool, systemd-analyze.
engine_pkgs=()
command -v pdsh >/dev/null || engine_pkgs+=(pdsh)
command -v clush >/dev/null || engine_pkgs+=(clustershell)
command -v slurmctld >/dev/null || engine_pkgs+=(slurmctld)
command -v slurmd >/dev/null || engine_pkgs+=(slurmd)
command -v srun >/dev/null || engine_pkgs+=(slurm-client)
command -v munged >/dev/null || engine_pkgs+=(munge)
[ -x /usr/sbin/sshd ] || engine_pkgs+=(openssh-server)
command -v promtool >/dev/null || engine_pkgs+=(prometheus)
command -v systemd-analyze >/dev/null || engine_pkgs+=(systemd)
if [ $((${#need_pkgs[@]} + ${#engine_pkgs[@]})) -gt 0 ]; then
    say "installing system packages: ${need_pkgs[*]} ${engine_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Keep the packaged daemons from starting while they install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" "${engine_pkgs[@]}"
    # ... nor at the next boot: only the tests start them (and only the
    # services installed just now are touched).
    if [ -d /run/systemd/system ]; then
        for pkg in "${engine_pkgs[@]}"; do
            case $pkg in
                slurmctld|slurmd|munge|prometheus) $SUDO systemctl disable --now "$pkg" >/dev/null 2>&1 || true ;;
                openssh-server) $SUDO systemctl disable --now ssh >/dev/null 2>&1 || true ;;
            esac
        done
    fi
fi

# Offline checkers of the Kubernetes manifests (deploy/kubernetes/validate.sh).
tools_venv="${SIGMA_TOOLS_VENV:-$HOME/.cache/sigma/tools-venv}"
if [ ! -x "$tools_venv/bin/kubernetes-validate" ] || [ ! -x "$tools_venv/bin/yamllint" ]; then
    say "installing the manifest checkers (kubernetes-validate, yamllint) in $tools_venv"
    python3 -m venv "$tools_venv"
    "$tools_venv/bin/pip" install -q kubernetes-validate yamllint
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
