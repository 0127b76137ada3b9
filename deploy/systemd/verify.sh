#!/usr/bin/env bash
# Checks sigma-prom.service and sigma-prom.timer with `systemd-analyze
# verify` in a throwaway root (so /usr/local/bin/sigma need not be installed
# here: a stub stands in for it). Fails on any message, since verify only
# warns, exit 0, about unknown or misspelled keys.
# Needs systemd-analyze (Debian: apt-get install systemd). Run:
#   bash deploy/systemd/verify.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd" \
         "$root/var/lib/prometheus/node-exporter"
printf '#!/bin/sh\nexit 0\n' > "$root/usr/local/bin/sigma"
chmod +x "$root/usr/local/bin/sigma"
# The stock units (sysinit.target, timers.target, ...) the defaults refer to.
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$here/sigma-prom.service" "$here/sigma-prom.timer" "$root/etc/systemd/system/"

systemd-analyze --version | head -1
out="$(systemd-analyze verify --root="$root" \
    /etc/systemd/system/sigma-prom.service /etc/systemd/system/sigma-prom.timer 2>&1)" || {
    echo "$out"; echo "systemd-analyze verify failed"; exit 1; }
if [[ -n "$out" ]]; then
    echo "$out"; echo "systemd-analyze verify printed warnings"; exit 1
fi
echo "systemd-analyze verify: ok (no warnings)"
# Informational: systemd's exposure score for the service's sandboxing.
systemd-analyze security --offline=true --root="$root" /etc/systemd/system/sigma-prom.service 2>&1 | tail -1
