#!/usr/bin/env bash
# What a DiffQKV retrofit costs and buys against its base, in one run:
#   quality: `sigma bench quality --against` (greedy agreement, KL, perplexity);
#   speed:   whole-model decode from a synthetic cache of 4k, 16k and 32k
#            positions, both models, with and without selective V.
# Usage: scripts/bench-retrofit.sh [BASE [RETROFIT]]   (one model process at a time)
set -euo pipefail
base=${1:-qwen2.5-coder-0.5b}
retro=${2:-sigma-$base}
sigma=${SIGMA:-target/release/sigma}

echo "== quality: $retro against $base"
"$sigma" bench quality --model "$base" --against "$retro" --prompts "${PROMPTS:-20}"

echo "== decode speed (tokens/s, median of 2 runs of 8 tokens)"
printf '%-8s %-34s %-10s %s\n' context model select-v tok/s
for ctx in 4096 16384 32768; do
  for sel in "" 100; do
    for m in "$base" "$retro"; do
      args=(bench --model "$m" --context "$ctx" --synthetic-kv --gen-tokens 8 --runs 2 --attention fused --json)
      [ -n "$sel" ] && args+=(--select-v "$sel")
      tps=$("$sigma" "${args[@]}" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ours"]["decode_tok_s"], 2))')
      printf '%-8s %-34s %-10s %s\n' "$ctx" "$m" "${sel:-no}" "$tps"
    done
  done
done
