#!/usr/bin/env bash
# Every offline check of the deploy files: the Kubernetes manifests against
# the Kubernetes schema, the NPD plugin config, the NHC check, the systemd
# units. scripts/test.sh runs it; scripts/setup.sh installs what it needs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/kubernetes/validate.sh"
bash "$here/nhc/test-sigma-nhc.sh"
bash "$here/systemd/verify.sh"
