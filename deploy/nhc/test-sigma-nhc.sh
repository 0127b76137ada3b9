#!/usr/bin/env bash
# Tests for deploy/nhc/sigma.nhc without NHC or sigma installed: stubs NHC's
# die/dbg/log, fakes `sigma doctor --json --compact` with small scripts in a
# temp dir (exit 0/3/4/1/127/timeout, odd JSON), and checks what check_sigma
# returns and what it passes to die.
# Run: bash deploy/nhc/test-sigma-nhc.sh   (exits non-zero on any failure)
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- NHC stubs: record instead of offlining the node --------------------
DIE_CALLS=0
DIE_RC=""
DIE_MSG=""
LOG_MSG=""
function die() {
    DIE_CALLS=$((DIE_CALLS + 1))
    DIE_RC="$1"
    shift
    DIE_MSG="$*"
    return 0 # like NHC in check-all mode (-a): die returns, the check must too
}
function dbg() { :; }
function log() { LOG_MSG="$*"; }

# shellcheck source=deploy/nhc/sigma.nhc
source "$here/sigma.nhc"

# --- fake sigma binaries -------------------------------------------------
# fake NAME EXIT STDOUT: a sigma that insists on the expected arguments.
function fake() {
    local name="$1" rc="$2" out="$3"
    printf '%s\n' "$out" > "$tmp/$name.out"
    cat > "$tmp/$name" <<EOF
#!/usr/bin/env bash
if [[ "\$*" != "doctor --json --compact" ]]; then
    echo "fake sigma: unexpected arguments: \$*" >&2
    exit 99
fi
echo "some diagnostics on stderr" >&2
cat "$tmp/$name.out"
exit $rc
EOF
    chmod +x "$tmp/$name"
}

# Lines in the layout of src/report/verdict.rs (Verdict): host, verdict,
# exit_code, sigma, time, findings[{id, severity, gpu?, uuid?, title}],
# unavailable?. "gpu" is left out when a finding concerns no single GPU.
head='"host":"gpu-node-17","sigma":"0.1.0","time":"2026-11-28T07:00:00Z"'
unavail='"unavailable":[{"source":"kernel log","reason":"id \"x\" timed out"}]'
healthy='{'"$head"',"verdict":"healthy","exit_code":0,"findings":[]}'
warning='{'"$head"',"verdict":"warning","exit_code":3,"findings":[{"id":"pcie-link-degraded","severity":"warning","gpu":1,"uuid":"GPU-1111","title":"PCIe link runs at x8"},{"id":"ecc-sbe-high","severity":"warning","title":"t"},{"id":"fw-old","severity":"info","gpu":0,"title":"t"}]}'
# The critical finding's title holds quotes and braces that a naive parser
# would trip on.
critical='{'"$head"',"verdict":"critical","exit_code":4,"findings":[{"id":"xid-79","severity":"critical","gpu":3,"uuid":"GPU-3333","title":"GPU 3 fell off the bus: \"id\":\"bogus\",\"severity\":\"critical\" {x}"},{"id":"xid-48","severity":"critical","gpu":5,"title":"t"},{"id":"remap-pending","severity":"warning","gpu":2,"title":"t"}],'"$unavail"'}'
# No single GPU: no "gpu" key (the verdict line), or "gpu":null (doctor --json).
critical_nogpu='{'"$head"',"verdict":"critical","exit_code":4,"findings":[{"id":"driver-not-loaded","severity":"critical","title":"t"}]}'
critical_null='{"schema_version":1,"status":"critical","exit_code":4,"findings":[{"id":"nvml-hung","severity":"critical","gpu":null,"title":"t","evidence":{"k":"{\"id\":\"z\"}"}}],"snapshot":{"gpus":[{"id":"not-a-finding"}]}}'
# Worst-first is sigma's promise; the parser still picks the critical one.
critical_late='{"verdict":"critical","exit_code":4,"findings":[{"id":"clock-throttle","severity":"warning","gpu":0,"title":"t"},{"id":"nvlink-down","severity":"critical","gpu":7,"title":"t"}]}'
# Another field order: the first id is named, without a gpu.
critical_reordered='{"status":"critical","findings":[{"severity":"critical","id":"row-remap-failed","gpu":6}]}'
# Pretty-printed (spaces) rather than compact.
critical_spaced='{"status": "critical", "findings": [{"id": "xid-94", "severity": "critical", "gpu": 4, "title": "t"}]}'

fake healthy 0 "$healthy"
fake warning 3 "$warning"
fake critical 4 "$critical"
fake critical_nogpu 4 "$critical_nogpu"
fake critical_null 4 "$critical_null"
fake critical_late 4 "$critical_late"
fake critical_spaced 4 "$critical_spaced"
fake critical_reordered 4 "$critical_reordered"
fake critical_garbage 4 'not json at all'
fake failing 1 ''
fake wrong_args_never_called 0 "$healthy"
cat > "$tmp/slow" <<'EOF'
#!/usr/bin/env bash
sleep 30
EOF
chmod +x "$tmp/slow"

# --- the cases -------------------------------------------------------------
passed=0
failed=0
# expect NAME BIN TIMEOUT LEVEL WANT_RC WANT_DIE_MSG ("" = die not called)
function expect() {
    local name="$1" bin="$2" timeout="$3" level="$4" want_rc="$5" want_msg="$6" rc
    DIE_CALLS=0 DIE_RC="" DIE_MSG="" LOG_MSG=""
    # shellcheck disable=SC2034 # read by check_sigma
    SIGMA_BIN="$bin" SIGMA_TIMEOUT="$timeout"
    if [[ -n "$level" ]]; then
        check_sigma "$level"
    else
        check_sigma
    fi
    rc=$?
    local ok=1
    [[ "$rc" == "$want_rc" ]] || ok=0
    if [[ -z "$want_msg" ]]; then
        [[ "$DIE_CALLS" == 0 ]] || ok=0
    else
        [[ "$DIE_CALLS" == 1 && "$DIE_RC" == 1 && "$DIE_MSG" == "$want_msg" ]] || ok=0
    fi
    if (( ok )); then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: rc=$rc (want $want_rc), die calls=$DIE_CALLS rc=$DIE_RC msg='$DIE_MSG' (want '$want_msg')"
    fi
}

expect "exit 0: healthy passes"                 "$tmp/healthy"          10 ""       0 ""
expect "exit 0: healthy passes (warning level)" "$tmp/healthy"          10 warning  0 ""
expect "exit 3: warnings do not drain"          "$tmp/warning"          10 ""       0 ""
if [[ "$LOG_MSG" == *pcie-link-degraded* ]]; then
    passed=$((passed + 1)); echo "ok   exit 3: warning logged"
else
    failed=$((failed + 1)); echo "FAIL exit 3: warning not logged: '$LOG_MSG'"
fi
expect "exit 3: check_sigma critical passes"    "$tmp/warning"          10 critical 0 ""
expect "exit 3: check_sigma warning drains"     "$tmp/warning"          10 warning  1 "sigma: pcie-link-degraded gpu1"
expect "exit 4: first critical id and gpu"      "$tmp/critical"         10 ""       1 "sigma: xid-79 gpu3"
expect "exit 4: warning level drains too"       "$tmp/critical"         10 warning  1 "sigma: xid-79 gpu3"
expect "exit 4: no gpu key names no gpu"        "$tmp/critical_nogpu"   10 ""       1 "sigma: driver-not-loaded"
expect "exit 4: gpu null names no gpu"          "$tmp/critical_null"    10 ""       1 "sigma: nvml-hung"
expect "exit 4: critical found after a warning" "$tmp/critical_late"    10 ""       1 "sigma: nvlink-down gpu7"
expect "exit 4: spaces in the JSON"             "$tmp/critical_spaced"  10 ""       1 "sigma: xid-94 gpu4"
expect "exit 4: other field order, first id"   "$tmp/critical_reordered" 10 ""     1 "sigma: row-remap-failed"
expect "exit 4: unparseable output still fails" "$tmp/critical_garbage" 10 ""       1 "sigma: critical finding"
expect "exit 127: sigma missing"                "$tmp/no-such-sigma"    10 ""       1 "sigma: check failed (exit 127)"
expect "exit 1: sigma itself failed"            "$tmp/failing"          10 ""       1 "sigma: check failed (exit 1)"
expect "exit 124: sigma timed out"              "$tmp/slow"             1  ""       1 "sigma: check failed (exit 124)"
expect "unknown level is refused"               "$tmp/healthy"          10 fatal    1 'sigma: check_sigma: unknown level "fatal" (critical or warning)'

# Non-executable file: timeout reports 126.
printf '#!/bin/sh\nexit 0\n' > "$tmp/not-executable"
expect "exit 126: sigma not executable"         "$tmp/not-executable"   10 ""       1 "sigma: check failed (exit 126)"

# The real binary on simulated nodes, when given (scripts/test.sh does):
# SIGMA_REAL_BIN=target/release/sigma bash deploy/nhc/test-sigma-nhc.sh
if [[ -n "${SIGMA_REAL_BIN:-}" ]]; then
    for sim in h100x8-xid79 h100x8-power-cap h100x8-healthy; do
        printf '#!/bin/sh\nSIGMA_SIMULATE=%s exec %q "$@"\n' "$sim" "$SIGMA_REAL_BIN" > "$tmp/real-$sim"
        chmod +x "$tmp/real-$sim"
    done
    expect "real sigma, critical node drains"   "$tmp/real-h100x8-xid79"     20 ""  1 "sigma: gpu-lost gpu3"
    expect "real sigma, warnings do not drain"  "$tmp/real-h100x8-power-cap" 20 ""  0 ""
    expect "real sigma, healthy node passes"    "$tmp/real-h100x8-healthy"   20 ""  0 ""
fi

echo "$passed passed, $failed failed"
(( failed == 0 ))
