#!/usr/bin/env bash
# Offline validation of sigma's Kubernetes and node-problem-detector files.
#
#   - The YAML manifests are checked against the OpenAPI schemas of specific
#     Kubernetes versions in strict mode (unknown fields are errors) with
#     kubernetes-validate (PyPI), which bundles the schemas: no cluster and
#     no network needed once it is installed.
#   - yamllint checks the YAML itself (duplicate keys, indentation, syntax).
#   - npd-sigma-plugin.json (and the copy inside the ConfigMap) is checked
#     against node-problem-detector's custom plugin monitor format: known
#     keys only, durations parseable, rule timeouts <= the global timeout,
#     every permanent rule has a default condition (NPD refuses to start
#     otherwise).
#
# scripts/setup.sh installs the tools in ~/.cache/sigma/tools-venv (or
# $SIGMA_TOOLS_VENV); any venv works:
#   python3 -m venv ~/.cache/sigma/tools-venv
#   ~/.cache/sigma/tools-venv/bin/pip install kubernetes-validate yamllint
# Run:
#   deploy/kubernetes/validate.sh            # uses that venv, else PATH
#   VENV=/path/to/venv deploy/kubernetes/validate.sh
#   K8S_VERSIONS="1.29.0 1.33.0" deploy/kubernetes/validate.sh
# Exits non-zero on the first failing check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-${SIGMA_TOOLS_VENV:-$HOME/.cache/sigma/tools-venv}}"
if [[ -x "$VENV/bin/kubernetes-validate" ]]; then
    export PATH="$VENV/bin:$PATH"
fi
PY="python3"
[[ -x "$VENV/bin/python3" ]] && PY="$VENV/bin/python3"

for tool in kubernetes-validate yamllint; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "validate.sh: $tool not found; pip install kubernetes-validate yamllint" >&2
        exit 2
    fi
done

# The oldest Kubernetes still widely run (EKS/GKE extended support) and the
# newest schema kubernetes-validate bundles.
newest_bundled() {
    "$PY" -c '
import os, re, kubernetes_validate as kv
d = os.path.join(os.path.dirname(kv.__file__), "kubernetes-json-schema")
vs = [m.group(1) for m in (re.match(r"v(\d+\.\d+\.\d+)-local-strict$", n) for n in os.listdir(d)) if m]
print(max(vs, key=lambda v: tuple(map(int, v.split(".")))))'
}
K8S_VERSIONS="${K8S_VERSIONS:-1.29.0 $(newest_bundled)}"

manifests=("$here/sigma-daemonset.yaml" "$here/npd-sigma-configmap.yaml")

echo "== yamllint"
yamllint -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}}}' \
    "${manifests[@]}"
echo "ok"

for v in $K8S_VERSIONS; do
    echo "== kubernetes-validate --strict -k $v"
    kubernetes-validate --strict -k "$v" "${manifests[@]}"
done

echo "== node-problem-detector custom plugin config"
"$PY" - "$here/npd-sigma-plugin.json" "$here/npd-sigma-configmap.yaml" <<'PY'
import json, re, sys
import yaml

def duration(s):
    # Go time.ParseDuration, for the units NPD configs use.
    m = re.fullmatch(r"((\d+(\.\d+)?)(ns|us|ms|s|m|h))+", s)
    if not m:
        raise SystemExit(f"not a Go duration: {s!r}")
    mult = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * mult[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|ms|s|m|h)", s))

TOP = {"plugin", "pluginConfig", "source", "conditions", "rules", "metricsReporting"}
GLOBAL = {"invoke_interval", "timeout", "max_output_length", "concurrency",
          "enable_message_change_based_condition_update", "skip_initial_status"}
COND = {"type", "reason", "message"}
RULE = {"type", "condition", "reason", "path", "args", "timeout", "invoke_interval"}

def check(cfg, where):
    def need(ok, msg):
        if not ok:
            raise SystemExit(f"{where}: {msg}")
    need(set(cfg) <= TOP, f"unknown top-level keys {set(cfg) - TOP}")
    need(cfg.get("plugin") == "custom", 'plugin must be "custom"')
    need(isinstance(cfg.get("source"), str) and cfg["source"], "source missing")
    pc = cfg.get("pluginConfig", {})
    need(set(pc) <= GLOBAL, f"unknown pluginConfig keys {set(pc) - GLOBAL}")
    interval = duration(pc.get("invoke_interval", "30s"))
    gtimeout = duration(pc.get("timeout", "5s"))
    need(isinstance(pc.get("max_output_length", 80), int), "max_output_length must be an int")
    need(isinstance(pc.get("concurrency", 3), int) and pc.get("concurrency", 3) >= 1, "concurrency must be an int >= 1")
    for b in ("enable_message_change_based_condition_update", "skip_initial_status"):
        need(isinstance(pc.get(b, False), bool), f"{b} must be a bool")
    need(isinstance(cfg.get("metricsReporting", True), bool), "metricsReporting must be a bool")
    need(gtimeout < interval, f"global timeout {gtimeout}s must be under invoke_interval {interval}s")
    conds = cfg.get("conditions", [])
    for c in conds:
        need(set(c) <= COND and {"type", "reason", "message"} <= set(c), f"condition {c}: needs exactly type, reason, message")
        need(re.fullmatch(r"[A-Z][A-Za-z0-9]*", c["reason"]) is not None, f"condition reason {c['reason']!r} must be CamelCase")
    types = {c["type"] for c in conds}
    rules = cfg.get("rules", [])
    need(rules, "no rules")
    for r in rules:
        need(set(r) <= RULE, f"rule {r}: unknown keys {set(r) - RULE}")
        need(r.get("type") in ("permanent", "temporary"), f"rule type {r.get('type')!r}")
        need(r.get("path", "").startswith("/"), "rule path must be absolute")
        need(all(isinstance(a, str) for a in r.get("args", [])), "args must be strings")
        need(re.fullmatch(r"[A-Z][A-Za-z0-9]*", r.get("reason", "")) is not None, f"rule reason {r.get('reason')!r} must be CamelCase")
        if r["type"] == "permanent":
            need(r.get("condition") in types, f"permanent rule for {r.get('condition')!r} has no default condition")
        if "timeout" in r:
            t = duration(r["timeout"])
            need(t <= gtimeout, f"rule timeout {t}s > global timeout {gtimeout}s (NPD refuses to start)")
    print(f"{where}: ok (source={cfg['source']}, {len(conds)} conditions, {len(rules)} rules, "
          f"interval {interval:g}s, timeout {gtimeout:g}s)")
    return cfg

plugin = check(json.load(open(sys.argv[1])), sys.argv[1])
docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
cms = [d for d in docs if d.get("kind") == "ConfigMap"]
if len(cms) != 1 or "sigma.json" not in cms[0].get("data", {}):
    raise SystemExit(f"{sys.argv[2]}: expected one ConfigMap with data key sigma.json")
embedded = check(json.loads(cms[0]["data"]["sigma.json"]), sys.argv[2] + ":data.sigma.json")
if embedded != plugin:
    raise SystemExit(f"{sys.argv[2]}: data.sigma.json differs from {sys.argv[1]}; copy it again")
print("ConfigMap copy matches npd-sigma-plugin.json")
PY
echo "all checks passed"
