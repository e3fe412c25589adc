#!/usr/bin/env bash
# Acceptance check for the command plugin: `swift package courier-dev-server start` runs a local
# nats-server -js and prints its URL, `courier demo --server <URL>` works against it, `stop`
# stops it and `status` then says so.
set -euo pipefail
cd "$(dirname "$0")/.."
courier=${COURIER_BIN:-.build/debug/courier}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cleanup() { swift package courier-dev-server stop > /dev/null 2>&1 || true; }
trap cleanup EXIT
swift package courier-dev-server start --port "$port" 2>/dev/null | tee /tmp/courier-dev-server.out
url=$(grep -E '^nats://' /tmp/courier-dev-server.out | tail -1)
[ "$url" = "nats://127.0.0.1:$port" ] || { echo "dev-server-check: no URL printed" >&2; exit 1; }
pid=$(cat .build/courier-dev-server/nats-server.pid)
timeout 120 "$courier" demo --server "$url" > /tmp/courier-dev-demo.out
grep -q "Demo complete." /tmp/courier-dev-demo.out || { cat /tmp/courier-dev-demo.out >&2; exit 1; }
echo "dev-server-check: courier demo --server $url completed"
swift package courier-dev-server stop 2>/dev/null
if kill -0 "$pid" 2>/dev/null; then echo "dev-server-check: nats-server $pid still running after stop" >&2; exit 1; fi
swift package courier-dev-server status 2>/dev/null | grep -q "no courier dev server running"
echo "dev-server-check: stop stopped nats-server $pid"
