#!/usr/bin/env bash
# A 3-node JetStream cluster on loopback, an R3 file stream, one publisher and two worker
# instances sharing one durable consumer (manual ack). While the publisher runs, the stream's
# leader is killed with SIGKILL; the script then checks that the workers together received every
# published event and prints "nothing lost: true".
#
#   Examples/cluster/run.sh            # builds courier if needed
#   COURIER_BIN=… NATS_SERVER_BIN=… Examples/cluster/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
courier=${COURIER_BIN:-}
if [ -z "$courier" ]; then
    swift build --package-path "$root" --product courier >&2
    courier="$root/.build/debug/courier"
fi
nats_server=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}
count=${COUNT:-3000}
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The cluster: n1, n2, n3 with full-mesh routes, one store each.
client=() route=()
for i in 1 2 3; do client[$i]=$(free_port); route[$i]=$(free_port); done
declare -A node_pid
for i in 1 2 3; do
    routes=""
    for j in 1 2 3; do [ "$j" != "$i" ] && routes+="\"nats-route://127.0.0.1:${route[$j]}\","; done
    cat > "$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${client[$i]}
jetstream { store_dir: "$work/n$i" }
cluster { name: example, listen: 127.0.0.1:${route[$i]}, routes: [${routes%,}] }
CONF
    "$nats_server" -c "$work/n$i.conf" -l "$work/n$i.log" &
    node_pid[$i]=$!
    pids+=("$!")
done
for i in 1 2 3; do
    for _ in $(seq 1 300); do grep -q "Server is ready" "$work/n$i.log" 2>/dev/null && break; sleep 0.1; done
done
servers="nats://127.0.0.1:${client[1]},nats://127.0.0.1:${client[2]},nats://127.0.0.1:${client[3]}"
connection=(--server "$servers" --stream CLUSTER --replicas 3 --storage file)
echo "cluster: $("$nats_server" --version), nodes on ports ${client[1]}, ${client[2]}, ${client[3]}"

# The stream exists (R3) once `courier info` succeeds; the meta leader may take a moment.
for attempt in $(seq 1 60); do
    "$courier" info "${connection[@]}" --json > "$work/info.json" 2>/dev/null && break
    [ "$attempt" = 60 ] && { echo "the cluster did not come up" >&2; exit 1; }
    sleep 0.5
done

# Two workers share the durable consumer "workers": each event goes to one of them.
for worker in a b; do
    "$courier" sub "events.orders.>" --durable workers --manual-ack --json --timeout 120 "${connection[@]}" \
        > "$work/worker-$worker.out" 2> "$work/worker-$worker.err" &
    pids+=("$!")
done

# At notice level the publisher's log also says when it reconnected, and to which node.
"$courier" pub orders created --count "$count" --payload '{"amount": 42}' --log-level notice "${connection[@]}" \
    > "$work/pub.out" 2> "$work/pub.err" &
publisher=$!
pids+=("$publisher")

# Kill the stream leader once a third of the events went out.
received() { cat "$work"/worker-*.out 2>/dev/null | wc -l; }
for _ in $(seq 1 600); do [ "$(received)" -ge $((count / 3)) ] && break; sleep 0.1; done
"$courier" info "${connection[@]}" --json > "$work/info.json"
leader=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["replicaSet"]["leader"])' "$work/info.json")
kill -KILL "${node_pid[${leader#n}]}"
wait "${node_pid[${leader#n}]}" 2>/dev/null || true
echo "killed the stream leader $leader (SIGKILL) after $(received) deliveries"

# A failed publisher is shown with what each node said about the cluster since the kill.
node_logs() {
    for i in 1 2 3; do
        echo "--- n$i: its last cluster and JetStream lines" >&2
        grep -E 'JetStream|[Ll]eader|[Rr]oute|ERR|WRN' "$work/n$i.log" | tail -n 15 >&2 || true
    done
}
wait "$publisher" || {
    echo "the publisher failed:" >&2
    cat "$work/pub.err" >&2
    node_logs
    exit 1
}
# Wait (at most 90 s) until the workers together saw every event.
distinct() {
    cat "$work"/worker-*.out | python3 -c 'import json,sys; print(len({json.loads(l)["id"] for l in sys.stdin if l.strip()}))'
}
for _ in $(seq 1 900); do [ "$(distinct)" -ge "$count" ] && break; sleep 0.1; done
"$courier" info "${connection[@]}" > "$work/info.txt" || true
a=$(wc -l < "$work/worker-a.out")
b=$(wc -l < "$work/worker-b.out")
got=$(distinct)
echo "new leader: $(grep -o 'leader [^,]*' "$work/info.txt" | head -1)"
echo "published $count; worker a received $a, worker b received $b; distinct events $got"
echo "nothing lost: $([ "$got" -eq "$count" ] && echo true || echo false)"
[ "$got" -eq "$count" ]
