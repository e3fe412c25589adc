#!/usr/bin/env bash
# Acceptance check for the CLI against a real nats-server: `courier pub` then
# `courier sub --durable … --json --count N` round-trips N events with identical wire JSON, and
# publishing twice with the same --msg-id stores one message.
set -euo pipefail
cd "$(dirname "$0")/.."
courier=${COURIER_BIN:-.build/debug/courier}
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$nats_server" -js -a 127.0.0.1 -p "$port" -sd "$work/store" -l "$work/server.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do grep -q "Server is ready" "$work/server.log" 2>/dev/null && break; sleep 0.05; done
export NATS_URL="nats://127.0.0.1:$port"
n=25

"$courier" pub orders created --payload '{"total":12.5,"items":["a","b"]}' --summary "order" --count $n --json > "$work/pub.jsonl"
"$courier" sub 'events.orders.>' --durable cli-roundtrip --manual-ack --json --count $n --timeout 20 > "$work/sub.jsonl"
"$courier" history orders --limit $n --json > "$work/history.jsonl"

python3 - "$work" $n <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
pub = [json.loads(l) for l in open(f"{work}/pub.jsonl")]
sub = [l.rstrip("\n") for l in open(f"{work}/sub.jsonl")]
history = [l.rstrip("\n") for l in open(f"{work}/history.jsonl")]
assert len(pub) == n and len(sub) == n, (len(pub), len(sub))
assert [p["sequence"] for p in pub] == list(range(1, n + 1)), pub
assert [json.loads(s)["id"] for s in sub] == [p["id"] for p in pub], "ids differ"
assert sub == history, "subscription and history wire JSON differ"
for line in sub:
    event = json.loads(line)
    assert list(event) == ["id","subject","category","eventType","version","payload","summary","source","timestamp","metadata"], list(event)
    assert event["payload"] == {"total": 12.5, "items": ["a", "b"]}
print(f"cli-roundtrip: {n} events round-tripped with identical wire JSON")
PY

first=$("$courier" pub orders paid --msg-id order-42-paid --json)
second=$("$courier" pub orders paid --msg-id order-42-paid --json)
python3 - "$first" "$second" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert not a["duplicate"] and b["duplicate"] and a["sequence"] == b["sequence"], (a, b)
print(f"cli-roundtrip: second publish with the same --msg-id is a duplicate of sequence {a['sequence']}")
PY
stored=$("$courier" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
[ "$stored" = "$((n + 1))" ] || { echo "expected $((n + 1)) stored messages, found $stored" >&2; exit 1; }
echo "cli-roundtrip: stream holds $stored messages"

# courier route with the example routing file: events published with `courier pub` reach the
# topic sink (events.audit.orders) and the log sink (paid orders), and SIGTERM stops it cleanly.
"$courier" route --config Examples/routing/route.json > "$work/route.out" 2> "$work/route.err" &
route_pid=$!
trap 'kill "$route_pid" 2>/dev/null || true; kill "$server_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$courier" pub orders created --summary "created o-7" --payload '{"order":"o-7"}' --json > /dev/null
"$courier" pub orders paid --type order.paid --summary "paid o-7" --payload '{"order":"o-7"}' --json > /dev/null
# The broker routed the $n + 1 earlier orders too: wait (bounded) for all $n + 3 audit copies.
for _ in $(seq 1 200); do
    audited=$("$courier" history audit --limit 1000 --json | wc -l)
    [ "$audited" -ge $((n + 3)) ] && break
    sleep 0.1
done
"$courier" history audit --limit 1000 --json > "$work/audit.jsonl"
kill -TERM "$route_pid"
for _ in $(seq 1 100); do kill -0 "$route_pid" 2>/dev/null || break; sleep 0.1; done
wait "$route_pid"   # exit status 0 after a graceful shutdown (set -e fails otherwise)
python3 - "$work" $((n + 3)) <<'PY'
import json, sys
work, expected = sys.argv[1], int(sys.argv[2])
audit = [json.loads(l) for l in open(f"{work}/audit.jsonl")]
assert len(audit) == expected, (len(audit), expected)
assert all(e["subject"] == "events.audit.orders" and e["metadata"]["courier_routed_from"].startswith("events.orders.") for e in audit)
assert len({e["metadata"]["courier_original_id"] for e in audit}) == expected, "each original routed once"
log = open(f"{work}/route.err").read()
assert "routed event" in log and "paid o-7" in log, log
assert "created o-7" not in log, "the log sink takes paid orders only"
assert "broker stopped" in open(f"{work}/route.out").read()
print(f"cli-roundtrip: courier route sent {len(audit)} events to the topic sink and the paid order to the log sink")
PY
