#!/usr/bin/env bash
# One prepared run on a lent GPU machine (H100/H200: nvcc, cmake, Python,
# no Rust toolchain, no network), or a CPU-mode dry run of the same steps.
#
#   scripts/check-cuda-build.sh --pack     # here: dist/sigma-cuda.xz, dist/vocab.gguf
#   scripts/device-check.sh                # there, with dist/ carried; OUT=... for results
#   scripts/device-check.sh --cpu          # here: every step with --device cpu
#
# Steps (each writes files under $OUT, default /tmp/devcheck; the GPU run
# fits in 8 minutes on one H100/H200):
#   1. env.txt, device.txt: the machine, and where `auto` puts a model and why.
#   2. Random-weight models made on the spot with `sigma model tiny` (the
#      tokenizer from dist/vocab.gguf, so nothing is downloaded): three tiny
#      ones (Sigma 8/2/4 and 8/1/8 heads, llama 8/2/2; f16 weights) and one
#      shaped like Sigma-1.5B (26 blocks, hidden 2048, 32/4/16 heads of 64,
#      AugQ 3072, FFN 6144, q4_0; 2 blocks in --cpu mode).
#   3. logits-*.json and logits.txt: `sigma generate --dump-logits` on the
#      GPU (stock attention) against the CPU (flash attention), 16 greedy
#      tokens after a 40-token prompt, also with --gpu-layers 1 (a graph
#      split between GPU and CPU) and with --select-v 4 against the CPU's
#      selective V. Pass: largest |gpu - cpu| <= 5e-3 x largest |cpu| logit
#      (f16 weights and cache; the stock and flash paths round differently;
#      measured on the CPU: 0.8e-3 to 1.8e-3) on the last position, and
#      1e-1 for the q4_0 1.5B-shaped model (its activations are quantised
#      to 8 bits per product, q8_0 on the CPU, q8_1 on CUDA, compounded
#      over 26 random blocks; a wrong head mapping moves logits by O(1)).
#   4. bench.json, bench-long.json: `sigma bench` of the 1.5B-shaped model
#      (prefill 512, decode 128; and decode at a 16k synthetic cache).
#   5. diffqkv.txt, diffqkv.json: `sigma bench diffqkv`, the paper's
#      attention-layer table (prefixes 2k..64k; up to 4k in --cpu mode).
#   6. summary.txt: one line per check, PASS or FAIL; the exit code is the
#      number of failures.
#
# In --cpu mode the "GPU" side is `--device cpu --attention stock`: the same
# commands and comparisons, on the path CUDA takes.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

mode=gpu
case "${1:-}" in
    --cpu) mode=cpu ;;
    "") ;;
    *) echo "usage: $0 [--cpu]" >&2; exit 2 ;;
esac

OUT="${OUT:-/tmp/devcheck}"
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fails=0
: >"$OUT/summary.txt"

say() { printf '==> %s\n' "$*" >&2; }
record() { # record PASS|FAIL "what"
    printf '%s %s\n' "$1" "$2" | tee -a "$OUT/summary.txt" >&2
    [ "$1" = PASS ] || fails=$((fails + 1))
}
run() { # run NAME CMD...: stdout to $OUT/NAME, stderr to $OUT/NAME.err
    local name="$1"
    shift
    if "$@" >"$OUT/$name" 2>"$OUT/$name.err"; then
        return 0
    fi
    say "failed: $* (see $OUT/$name.err)"
    tail -5 "$OUT/$name.err" >&2
    return 1
}

# The binary: $SIGMA, else the packed CUDA build, else (CPU mode) the
# default release build.
if [ -z "${SIGMA:-}" ]; then
    if [ -f dist/sigma-cuda.xz ]; then
        xz -dc dist/sigma-cuda.xz >"$work/sigma" && chmod +x "$work/sigma"
        SIGMA="$work/sigma"
    elif [ $mode = cpu ] && [ -x "${CARGO_TARGET_DIR:-target}/release/sigma" ]; then
        SIGMA="${CARGO_TARGET_DIR:-target}/release/sigma"
        case "$SIGMA" in /*) ;; *) SIGMA="$repo/$SIGMA" ;; esac
    else
        echo "error: no sigma binary: run scripts/check-cuda-build.sh --pack (GPU) or cargo build --release (--cpu), or set SIGMA" >&2
        exit 2
    fi
fi
sigma() { "$SIGMA" "$@"; }
if [ $mode = gpu ]; then
    gpu=(--device cuda)
else
    gpu=(--device cpu --attention stock)
fi

# cuBLAS comes from the machine (the binary opens libcublas.so.13 on first
# use): the toolkit beside nvcc, or a pip wheel.
if [ $mode = gpu ] && [ -z "${SIGMA_CUBLAS:-}" ]; then
    for dir in "${CUDA_HOME:-/nonexistent}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib \
        $(python3 -c 'import site; print(" ".join(p + "/nvidia/cu13/lib" for p in site.getsitepackages()))' 2>/dev/null); do
        if [ -e "$dir/libcublas.so.13" ]; then
            export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            break
        fi
    done
fi

say "1. machine and device choice ($mode mode)"
{
    date -u
    uname -a
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,utilization.gpu --format=csv 2>&1 || true
    command -v nvcc >/dev/null && nvcc --version | tail -2
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    ldd "$SIGMA"
} >"$OUT/env.txt" 2>&1

vocab="$repo/dist/vocab.gguf"
if [ ! -f "$vocab" ]; then
    vocab="$work/vocab.gguf"
    # needs the tiny default model (downloaded once); GPU runs carry dist/vocab.gguf
    sigma model tiny --out "$vocab" >/dev/null ||
        { echo "error: no dist/vocab.gguf and no tiny model to make one; run scripts/check-cuda-build.sh --pack" >&2; exit 2; }
fi

say "2. random-weight models"
tiny() { # tiny NAME ARGS...
    local name="$1"
    shift
    sigma model tiny --vocab "$vocab" --out "$work/$name.gguf" "$@" >/dev/null
}
big_layers=26
[ $mode = cpu ] && big_layers=2
t0=$(date +%s)
if tiny sigma-824 --arch sigma --heads 8,2,4 --type f16 --seed 1 &&
    tiny sigma-818 --arch sigma --heads 8,1,8 --type f16 --seed 2 &&
    tiny llama-822 --arch llama --heads 8,2,2 --type f16 --seed 3 &&
    tiny sigma-1.5b --arch sigma --layers "$big_layers" --hidden 2048 --heads 32,4,16 \
        --head-dim 64 --aug-q 3072 --ff 6144 --type q4_0 --ctx 32768 --seed 4; then
    record PASS "models made in $(($(date +%s) - t0)) s"
else
    record FAIL "sigma model tiny"
    exit 1
fi
run device.txt sigma model info "$work/sigma-1.5b.gguf" --device auto
grep '^device' "$OUT/device.txt" >&2

say "3. logits: GPU side against the CPU's flash attention"
prompt="nvidia-smi reports an uncorrectable ECC error on GPU 3 and XID 79 in dmesg; what should I check first on this node"
gen() { # gen OUT_NAME MODEL TOKENS ARGS...: greedy generation, logits of the last position
    local name="$1" model="$2" n="$3"
    shift 3
    run "$name.gen.json" sigma generate --model "$work/$model.gguf" --greedy -n "$n" --ctx 512 \
        --prompt "$prompt" --json --dump-logits "$OUT/$name.json" "$@"
}
check() { # check WHAT TOLERANCE MODEL TOKENS "CPU ARGS" "GPU ARGS": both sides, then compare
    local what="$1" tol="$2" model="$3" n="$4" name
    name="$(printf '%s' "$what" | tr -c 'A-Za-z0-9.' '-')"
    # shellcheck disable=SC2086 # the argument lists are split on purpose
    if gen "$name-cpu" "$model" "$n" $5 && gen "$name-gpu" "$model" "$n" $6; then
        compare "$what" "$name-cpu" "$name-gpu" "$tol"
    else
        record FAIL "logits $what: a generation failed"
    fi
}
compare() { # compare WHAT CPU_NAME GPU_NAME TOLERANCE
    python3 - "$OUT/$2.json" "$OUT/$3.json" "$4" "$1" "$OUT/$2.gen.json" "$OUT/$3.gen.json" <<'EOF' >>"$OUT/logits.txt"
import json, sys
cpu, gpu, tol, what = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
tok_c, tok_g = json.load(open(sys.argv[5]))["tokens"], json.load(open(sys.argv[6]))["tokens"]
scale = max(abs(x) for x in cpu)
err = max(abs(a - b) for a, b in zip(cpu, gpu)) / scale
top = lambda v: max(range(len(v)), key=v.__getitem__)
same = sum(a == b for a, b in zip(tok_c, tok_g))
ok = len(cpu) == len(gpu) and err <= tol
print(f"{'PASS' if ok else 'FAIL'} {what}: max|gpu-cpu|/max|cpu| = {err:.2e} (tolerance {tol:g}), "
      f"argmax {'same' if top(cpu) == top(gpu) else 'differs'}, greedy tokens equal {same}/{len(tok_c)}")
sys.exit(0 if ok else 1)
EOF
    local status=$?
    tail -1 "$OUT/logits.txt" | sed 's/^/    /' >&2
    if [ $status -eq 0 ]; then record PASS "logits $1"; else record FAIL "logits $1"; fi
}
cpu="--device cpu --attention flash"
for m in sigma-824 sigma-818 llama-822; do
    check "$m" 5e-3 "$m" 16 "$cpu" "${gpu[*]}"
done
check "sigma-824 gpu-layers 1" 5e-3 sigma-824 16 "$cpu" "${gpu[*]} --gpu-layers 1"
check "sigma-824 select-v 4" 5e-3 sigma-824 16 "--device cpu --attention fused --select-v 4" "${gpu[*]} --select-v 4"
check "sigma-1.5b-shaped q4_0" 1e-1 sigma-1.5b 1 "$cpu" "${gpu[*]}"

say "4. sigma bench on the 1.5B-shaped model"
if [ $mode = gpu ]; then
    bench=(--prompt-tokens 512 --gen-tokens 128 --runs 3)
    long=(--context 16384 --synthetic-kv --gen-tokens 64 --runs 3)
else
    bench=(--prompt-tokens 64 --gen-tokens 8 --runs 1)
    long=(--context 1024 --synthetic-kv --gen-tokens 4 --runs 1)
fi
run bench.json sigma bench --model "$work/sigma-1.5b.gguf" "${gpu[@]}" "${bench[@]}" --json &&
    record PASS "bench: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["device"], j["attention"], "prefill", round(j["ours"]["prefill_tok_s"] or 0, 1), "tok/s, decode", round(j["ours"]["decode_tok_s"], 1), "tok/s")' "$OUT/bench.json")" ||
    record FAIL "sigma bench"
run bench-long.json sigma bench --model "$work/sigma-1.5b.gguf" "${gpu[@]}" "${long[@]}" --json &&
    record PASS "bench at a long synthetic cache: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("context", j["context"], "decode", round(j["ours"]["decode_tok_s"], 1), "tok/s")' "$OUT/bench-long.json")" ||
    record FAIL "sigma bench --context"

say "5. sigma bench diffqkv"
if [ $mode = gpu ]; then
    dq=(--device cuda --max-prefix 65536)
else
    dq=(--device cpu --attention stock --min-steps 1 --max-steps 1 --max-prefix 4096)
fi
if run diffqkv.txt sigma bench diffqkv "${dq[@]}" && run diffqkv.json sigma bench diffqkv "${dq[@]}" --json; then
    record PASS "bench diffqkv ($(head -1 "$OUT/diffqkv.txt"))"
    cat "$OUT/diffqkv.txt" >&2
else
    record FAIL "sigma bench diffqkv"
fi

say "summary ($fails failed): $OUT/summary.txt"
exit "$fails"
