#!/usr/bin/env bash
# Builds sigma with the `cuda` feature (release) in its own target directory,
# checks that the binary starts without a GPU, a driver or CUDA libraries,
# and with --pack leaves in dist/ what scripts/device-check.sh needs on a GPU
# machine that has no Rust toolchain: sigma-cuda.xz (the stripped binary)
# and vocab.gguf (a tiny model whose tokenizer `sigma model tiny --vocab`
# reads, so nothing is downloaded there).
#
#   scripts/check-cuda-build.sh [--pack]
#
# CUDA_ARCHITECTURES chooses the GPUs (default "80;86;89;90"; "90" alone is
# H100/H200 and builds in about a quarter of the time). The toolkit comes
# from scripts/setup-cuda.sh; the target directory is SIGMA_CUDA_TARGET
# (default /var/cache/sigma-cuda/target). The build runs under `nice`.
# Measured times are in the README ("Development").
set -euo pipefail
cd "$(dirname "$0")/.."

pack=false
case "${1:-}" in
    --pack) pack=true ;;
    "") ;;
    *) echo "usage: $0 [--pack]" >&2; exit 2 ;;
esac

eval "$(scripts/setup-cuda.sh)"
export CARGO_TARGET_DIR="${SIGMA_CUDA_TARGET:-/var/cache/sigma-cuda/target}"
mkdir -p "$CARGO_TARGET_DIR"
start=$(date +%s)
nice -n 19 cargo build --release --locked --features cuda
sigma="$CARGO_TARGET_DIR/release/sigma"
echo "==> built $sigma for CUDA architectures $CMAKE_CUDA_ARCHITECTURES in $(($(date +%s) - start)) s" >&2

# No CUDA library may be needed to start: cuBLAS is opened on first use and
# the CUDA runtime is static (scripts/setup-cuda.sh says how).
if ldd "$sigma" | grep -E 'libcu(da|dart|blas)'; then
    echo "error: $sigma needs the CUDA libraries above to start; build with the toolkit of scripts/setup-cuda.sh" >&2
    exit 1
fi
# Here (no GPU) it must start, run on the CPU and say why.
out="$("$sigma" bench diffqkv --device auto --max-prefix 2048 --min-steps 1 --max-steps 1 --json)"
case "$out" in
    *'"device":"cpu"'*) echo "==> starts without a GPU and falls back to the CPU" >&2 ;;
    *) echo "error: unexpected bench output without a GPU: $out" >&2; exit 1 ;;
esac

if $pack; then
    mkdir -p dist
    strip -o dist/sigma-cuda "$sigma"
    xz -9 -T0 -f dist/sigma-cuda
    "$sigma" model tiny --out dist/vocab.gguf >/dev/null
    du -b dist/sigma-cuda.xz dist/vocab.gguf >&2
    total=$(du -cb dist/sigma-cuda.xz dist/vocab.gguf | tail -1 | cut -f1)
    if [ "$total" -gt $((60 << 20)) ]; then
        echo "error: dist/ holds $total bytes; a device run carries at most 64 MiB with the repository" >&2
        exit 1
    fi
    echo "==> packed dist/sigma-cuda.xz and dist/vocab.gguf for scripts/device-check.sh" >&2
fi
