#!/usr/bin/env bash
# Builds llama.cpp for this machine, as a user would, for
# `sigma bench --peer DIR`: the same llama.cpp source as Sigma's in-process
# peer (the copy inside the pinned llama-cpp-sys-2 crate, so the C API and
# its structures match), built as shared libraries with every instruction
# set this CPU has and this kernel enables, read from /proc/cpuinfo
# (AVX-512 and its VNNI/BF16/VBMI parts, AVX-VNNI, AMX).
#
# It never uses GGML_NATIVE (-march=native): a CPU can advertise AMX that
# the kernel does not enable, and the build then dies with SIGILL. The
# kernel lists AMX in /proc/cpuinfo only when it enables it.
#
#   scripts/build-llama-cpp-peer.sh [--out DIR] [--no-avx512]
#
#   --out DIR     where the build goes (default ~/.cache/sigma/llama-cpp-peer)
#   --no-avx512   leave the AVX-512 and AMX sets off (an x86-64-v3 build)
#
# Prints the directory to pass to `sigma bench --peer`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${XDG_CACHE_HOME:-$HOME/.cache}/sigma/llama-cpp-peer" avx512=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --no-avx512) avx512=0; shift ;;
    *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
command -v cmake >/dev/null || { echo "error: cmake is missing: run scripts/setup.sh (or apt-get install cmake)" >&2; exit 1; }

# The llama.cpp source the pinned llama-cpp-sys-2 builds from.
manifest=$(cargo metadata --format-version 1 --locked 2>/dev/null |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="llama-cpp-sys-2"))')
src="$(dirname "$manifest")/llama.cpp"
[ -f "$src/CMakeLists.txt" ] || { echo "error: no llama.cpp source at $src: run 'cargo fetch --locked'" >&2; exit 1; }
version=$(basename "$(dirname "$manifest")")

# Instruction sets: this CPU's, as the kernel reports them.
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]] && echo ON || echo OFF; }
defs=(-DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)"
  -DGGML_F16C="$(has f16c)" -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)")
if [ "$avx512" = 1 ] && [ "$(has avx512f)" = ON ] && [ "$(has avx512bw)" = ON ] &&
  [ "$(has avx512vl)" = ON ] && [ "$(has avx512dq)" = ON ]; then
  defs+=(-DGGML_AVX512=ON -DGGML_AVX512_VBMI="$(has avx512vbmi)"
    -DGGML_AVX512_VNNI="$(has avx512_vnni)" -DGGML_AVX512_BF16="$(has avx512_bf16)"
    -DGGML_AMX_TILE="$(has amx_tile)" -DGGML_AMX_INT8="$(has amx_int8)" -DGGML_AMX_BF16="$(has amx_bf16)")
else
  defs+=(-DGGML_AVX512=OFF)
fi
on=$(printf '%s\n' "${defs[@]}" | sed -n 's/^-DGGML_\(.*\)=ON$/\1/p' | tr '\n' ' ')
echo "building llama.cpp from $version for this CPU: ${on:-no extensions}" >&2

cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF "${defs[@]}" >/dev/null
cmake --build "$out" --target llama -j "$(nproc)" >&2
lib=$(find "$out" -name 'libllama.so' -print -quit)
[ -n "$lib" ] || { echo "error: the build made no libllama.so under $out" >&2; exit 1; }
printf '%s\n' "$version" "$on" >"$(dirname "$lib")/sigma-peer.txt"
dirname "$lib"
