#!/usr/bin/env bash
# Builds every package under Examples/ (sharing one build folder, .build-examples), runs each on
# the embedded provider and against a nats-server started here, checks that the service-group
# example stops on SIGTERM with nothing lost, and runs Examples/cluster/run.sh (3-node cluster,
# leader killed mid-run).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$PWD/.build-examples"
examples=(publisher:PublisherExample durable-worker:DurableWorkerExample routing:RoutingExample
    encrypted-events:EncryptedEventsExample cloudevents-bridge:CloudEventsBridgeExample
    ingest-firehose:IngestFirehoseExample service-group:ServiceGroupExample)
for entry in "${examples[@]}"; do
    echo "examples: building ${entry%%:*}"
    swift build --package-path "Examples/${entry%%:*}" --scratch-path "$scratch"
done

nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$nats_server" -js -a 127.0.0.1 -p "$port" -sd "$work/store" -l "$work/server.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do grep -q "Server is ready" "$work/server.log" 2>/dev/null && break; sleep 0.05; done
url="nats://127.0.0.1:$port"

# Each example's last line says what it proved; a failing example exits non-zero.
expect=(PublisherExample:"stored per category: orders=6"
    DurableWorkerExample:"processed 5, retried 1, dead-lettered 1"
    RoutingExample:"trigger ship-paid: matched 1, delivered 1"
    EncryptedEventsExample:"is retired"
    CloudEventsBridgeExample:"keeps every attribute and the data: true"
    IngestFirehoseExample:"nothing lost: true")
for entry in "${expect[@]}"; do
    binary=${entry%%:*}
    wanted=${entry#*:}
    for mode in embedded nats; do
        args=()
        [ "$mode" = nats ] && args=(--server "$url")
        timeout 120 "$scratch/debug/$binary" "${args[@]}" > "$work/out" 2> "$work/err" || {
            echo "examples: $binary ($mode) failed" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
        grep -qF "$wanted" "$work/out" || {
            echo "examples: $binary ($mode) did not print '$wanted'" >&2; cat "$work/out" >&2; exit 1; }
        echo "examples: $binary ($mode): $(grep -F "$wanted" "$work/out" | head -1)"
    done
done

# The service group: started, given time to produce, stopped with SIGTERM, nothing lost.
for mode in embedded nats; do
    args=()
    [ "$mode" = nats ] && args=(--server "$url")
    "$scratch/debug/ServiceGroupExample" "${args[@]}" > "$work/group.out" 2> "$work/group.err" &
    group_pid=$!
    for _ in $(seq 1 100); do grep -q "send SIGTERM" "$work/group.out" 2>/dev/null && break; sleep 0.1; done
    sleep 2
    kill -TERM "$group_pid"
    status=0
    for _ in $(seq 1 300); do kill -0 "$group_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$group_pid" 2>/dev/null; then
        kill -KILL "$group_pid"; echo "examples: service group ($mode) did not stop within 30 s of SIGTERM" >&2; exit 1
    fi
    wait "$group_pid" || status=$?
    cat "$work/group.out"
    [ "$status" = 0 ] && grep -q "nothing lost: true" "$work/group.out" || {
        echo "examples: service group ($mode) exited $status" >&2; cat "$work/group.err" >&2; exit 1; }
    grep -q "^produced [1-9]" "$work/group.out" || { echo "examples: service group ($mode) produced nothing" >&2; exit 1; }
done

# The cluster script: a 3-node cluster, a publisher, two workers on one durable consumer, the
# stream leader killed mid-run, nothing lost.
courier="$PWD/.build/debug/courier"
[ -x "$courier" ] || swift build --product courier
COURIER_BIN="$courier" timeout 300 Examples/cluster/run.sh > "$work/cluster.out" 2>&1 || {
    echo "examples: cluster failed" >&2; cat "$work/cluster.out" >&2; exit 1; }
grep -q "nothing lost: true" "$work/cluster.out"
echo "examples: cluster: $(grep -F "published" "$work/cluster.out")"
echo "examples: all ${#examples[@]} examples and the cluster script built and ran"
