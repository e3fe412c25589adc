#!/usr/bin/env bash
# Runs `courier demo` on the embedded memory provider, installing build dependencies if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
COURIER_BOOTSTRAP_PYTHON=0 scripts/bootstrap.sh
swift run courier demo "$@"
