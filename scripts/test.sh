#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs if missing. Integration tests start their
# own nats-server processes on free loopback ports and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift test "$@"
