#!/usr/bin/env bash
# A CUDA 13 toolkit tree from PyPI wheels, enough to build `--features cuda`.
#
#   eval "$(scripts/setup-cuda.sh)"         # installs once, prints the exports
#   cargo build --release --features cuda
#
# Debian's main archive has no nvcc, and the `-cu12` nvcc wheels carry only
# ptxas; the CUDA 13 wheels (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-crt,
# nvidia-cuda-runtime, nvidia-cuda-cccl, nvidia-cublas) make a whole compiler.
# They unpack into one tree, `$SIGMA_CUDA_HOME` (default
# ~/.cache/sigma-cuda/13.0): bin/nvcc, nvvm/, include/, lib/ with lib64 and
# targets/x86_64-linux pointing at it, and the unversioned .so links CMake
# looks for.
#
# cuBLAS comes only as a shared library there, so lib/libcublas_static.a (the
# archive llama-cpp-sys-2 links) is scripts/cuda/cublas_lazy.c: cuBLAS opened
# on first use. The binary then starts on nodes without a GPU, a driver or
# CUDA libraries, and needs libcublas.so.13 only to run a model on a GPU.
#
# Printed on stdout (everything else goes to stderr):
#   CUDA_PATH, PATH         the toolkit, for CMake (nvcc)
#   CUDA_LIBRARY_PATH       the toolkit again: llama-cpp-sys-2 looks for
#                           the static CUDA runtime in its lib64/
#   CMAKE_CUDA_ARCHITECTURES
#                           $CUDA_ARCHITECTURES, default "80;86;89;90"
#                           (A100, A10/RTX 30, L4/L40/RTX 40, H100/H200)
#   GGML_CUDA_FA=OFF        ggml's CUDA flash-attention kernels are compiled
#                           empty: sigma attends with stock ops on CUDA
#                           (flash attention there indexes V by the K ratio,
#                           wrong for DiffQKV), and they are half the build.
set -euo pipefail
cd "$(dirname "$0")/.."

home="${SIGMA_CUDA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sigma-cuda/13.0}"
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-culibos==13.0.85
    nvidia-cublas==13.0.2.14
)
stamp="${wheels[*]} $(sha256sum scripts/cuda/cublas_lazy.c | cut -d' ' -f1)"

say() { printf '==> %s\n' "$*" >&2; }

if [ "$(cat "$home/.sigma-stamp" 2>/dev/null)" != "$stamp" ]; then
    pip=(python3 -m pip)
    "${pip[@]}" --version >/dev/null 2>&1 || {
        echo "error: pip for python3 is missing; install python3-pip, then rerun $0" >&2
        exit 1
    }
    say "installing the CUDA 13 toolkit wheels into $home"
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    "${pip[@]}" install --quiet --no-deps --target "$stage" "${wheels[@]}" >&2
    rm -rf "$home"
    mkdir -p "$(dirname "$home")"
    mv "$stage/nvidia/cu13" "$home"
    cd "$home"
    ln -sfn lib lib64
    mkdir -p targets/x86_64-linux
    ln -sfn ../../include targets/x86_64-linux/include
    ln -sfn ../../lib targets/x86_64-linux/lib
    for so in cudart cublas cublasLt; do
        ln -sfn "lib$so.so.13" "lib/lib$so.so"
    done
    ln -sfn libnvvm.so.4 lib/libnvvm.so
    cd - >/dev/null
    say "building the lazy cuBLAS loader into $home/lib/libcublas_static.a"
    cc -O2 -fPIC -I"$home/include" -c scripts/cuda/cublas_lazy.c -o "$home/lib/cublas_lazy.o"
    rm -f "$home/lib/libcublas_static.a" "$home/lib/libcublasLt_static.a"
    ar rcs "$home/lib/libcublas_static.a" "$home/lib/cublas_lazy.o"
    ar rcs "$home/lib/libcublasLt_static.a"
    rm "$home/lib/cublas_lazy.o"
    "$home/bin/nvcc" --version >&2
    printf '%s' "$stamp" >"$home/.sigma-stamp"
fi

cat <<EOF
export CUDA_PATH='$home'
export CUDA_LIBRARY_PATH='$home'
export PATH='$home/bin':"\$PATH"
export CMAKE_CUDA_ARCHITECTURES='${CUDA_ARCHITECTURES:-80;86;89;90}'
export GGML_CUDA_FA=OFF
EOF
