#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads untrusted input
# (cargo-afl and AFL++ on the stable toolchain): the guard, the kernel-log
# XID parser, the command-output interpreters, the simulated-node and
# scenario loaders, the GGUF reader, and our tokenizer against llama.cpp's.
# Each target starts from its corpus in fuzz/corpus/ (the simulated-node
# loader from assets/sim) and runs for a bounded time. A crash, or an input
# that takes over 5 s (a hang: a parser a hostile line could stall), fails
# the run and is kept under the work directory with the command that
# replays it.
#
#   scripts/fuzz.sh [--seconds N] [--only TARGET] [--grow]
#
#   --seconds N   per target (default 20; CI uses the default)
#   --only T      one target (guard, xid_log, command_output, sim_node, scenario, gguf, tokenizer)
#   --grow        merge what the run found into fuzz/corpus (afl-cmin), to commit
#
# Prints one line per target (executions, speed, corpus, crashes, hangs)
# and a total; docs/SECURITY.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20 only="" grow=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --grow) grow=1; shift ;;
    *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
targets=(guard xid_log command_output sim_node scenario gguf tokenizer)
if [ -n "$only" ]; then
  [[ " ${targets[*]} " == *" $only "* ]] || { echo "error: no fuzz target '$only' (one of: ${targets[*]})" >&2; exit 2; }
  targets=("$only")
fi

# cargo-afl builds AFL++ for this rustc once (a few minutes), then is cached.
if ! command -v cargo-afl >/dev/null; then
  echo "installing cargo-afl (once)" >&2
  cargo install cargo-afl --locked --version 0.18.2 >&2
fi
cargo afl config --build >/dev/null 2>&1 || true # already built: a no-op that exits non-zero
# afl-fuzz itself, not `cargo afl fuzz`: that adds CMPLOG (-c0), which needs
# AFL++'s LLVM plugins and so a nightly rustc.
shopt -s nullglob
found=("${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$(rustc -V | sed -E 's/^rustc ([^ ]+) \(([0-9a-f]{7}).*/\1-\2/')"/afl.rs-*/afl/bin/afl-fuzz)
shopt -u nullglob
afl_fuzz=""
[ ${#found[@]} -gt 0 ] && afl_fuzz="${found[${#found[@]}-1]}"
[ -x "$afl_fuzz" ] || { echo "error: cargo-afl's afl-fuzz was not found for $(rustc -V): run 'cargo afl config --build --force'" >&2; exit 1; }

# The tokenizer target compares with llama.cpp on the smallest shipped model.
cargo run --release --locked --quiet -- model pull smollm2-135m >/dev/null

# An instrumented build of sigma (ggml included), cached beside the normal one.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}-afl"
(cd fuzz && cargo afl build --release --locked --quiet)
bin="$CARGO_TARGET_DIR/release"

work="${FUZZ_WORK:-$(mktemp -d)}"
mkdir -p "$work"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
  AFL_NO_AFFINITY=1
field() { sed -n "s/^$1 *: //p" "$2"; } # one value of fuzzer_stats
total_execs=0 total_failed=0
printf '%-14s %8s %12s %10s %8s %8s %6s\n' target seconds executions "execs/s" corpus crashes hangs
for t in "${targets[@]}"; do
  out="$work/$t"
  corpus="fuzz/corpus/$t"
  [ "$t" = sim_node ] && corpus=assets/sim # the shipped nodes (too big to keep more)
  rm -rf "$out"
  "$afl_fuzz" -i "$corpus" -o "$out" -V "$seconds" -t 5000 -m none -- "$bin/$t" \
    >"$work/$t.log" 2>&1 || { echo "error: afl-fuzz failed on $t (its log: $work/$t.log)" >&2; tail -20 "$work/$t.log" >&2; exit 1; }
  s="$out/default/fuzzer_stats"
  execs=$(field execs_done "$s") crashes=$(field saved_crashes "$s") hangs=$(field saved_hangs "$s")
  printf '%-14s %8s %12s %10s %8s %8s %6s\n' "$t" "$(field run_time "$s")" "$execs" \
    "$(field execs_per_sec "$s")" "$(field corpus_count "$s")" "$crashes" "$hangs"
  total_execs=$((total_execs + execs)) total_failed=$((total_failed + crashes + hangs))
  for c in "$out"/default/crashes/id:* "$out"/default/hangs/id:*; do
    [ -e "$c" ] && echo "  $(basename "$(dirname "$c")"): $bin/$t < '$c'" >&2
  done
  if [ "$grow" = 1 ] && [ "$t" != sim_node ]; then
    all="$work/$t.all" merged="$work/$t.min"
    mkdir -p "$all" && cp "fuzz/corpus/$t"/* "$all"/ && cp "$out"/default/queue/id:* "$all"/
    cargo afl cmin -i "$all" -o "$merged" -t 5000 -- "$bin/$t" >/dev/null
    rm -rf "fuzz/corpus/$t" && mv "$merged" "fuzz/corpus/$t"
  fi
done
echo "total: $total_execs executions, $total_failed crashes and hangs (work directory $work)"
[ "$total_failed" = 0 ] || { echo "error: the fuzzers found crashes or hangs: replay each with the command above, fix it, and add the input to fuzz/corpus" >&2; exit 1; }
