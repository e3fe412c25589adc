import Courier
import Foundation

// The ingest core as a firehose: two producer threads push pre-serialised events through
// `ingestRaw` (no parsing, no allocation on the hot path), per-shard workers hand ordered
// batches to an adapter, and shutdown drains everything. Embedded: the ProviderAdapter stores
// into the memory provider; with `--server`: the JetStreamAdapter publishes pipelined with a
// dedupe id per event, so a retried batch is never stored twice.

let count = Int(ProviderSelection.value(of: "--count") ?? "") ?? 200_000
let provider = try await ProviderSelection.provider(connectionName: "example-ingest-firehose")
let adapter: any Adapter =
    if let jetstream = provider as? JetStreamProvider {
        JetStreamAdapter(provider: jetstream)
    } else {
        ProviderAdapter(provider: provider, retention: count)
    }
let bus = try IngestBus(
    configuration: .init(
        shards: 2, batch: .init(maxEvents: 512, maxDelay: .milliseconds(2)), backpressure: .block(timeout: .seconds(5)),
        adapter: adapter)
)
print(
    "ingesting \(count) events into \(provider.name) over \(bus.shardCount) shards (nonce \(String(bus.producerNonce, radix: 16)))"
)

// Pre-serialise once, as a producer that receives bytes from the network would have them.
let payloads = (0..<64).map { sensor in
    RawEvent(
        Event(
            subject: "\(provider.subjectPrefix).telemetry.sensor\(sensor)", category: "telemetry",
            payload: ["celsius": .double(21.5)], source: "firehose"))
}
let started = ContinuousClock.now
let producers = 2
let done = DispatchGroup()
for producer in 0..<producers {
    DispatchQueue.global().async(group: done) {
        for index in stride(from: producer, to: count, by: producers) {
            // Same subject → same shard → order kept. `.block` waits (bounded) when a ring is full.
            _ = try? bus.ingestRaw(payloads[index % payloads.count])
        }
    }
}
done.wait()
let stats = await bus.shutdown()
let elapsed = ContinuousClock.now - started
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print(stats)
print(
    String(
        format: "%.0f events/s end to end; nothing lost: %@", Double(stats.eventsDispatched) / seconds,
        stats.eventsDispatched + stats.eventsDropped == stats.eventsIngested && stats.eventsDropped == 0
            ? "true" : "false"))

// Read back through the merged, resumable poll API.
let page = try await bus.poll(ConsumeRequest(limit: 5))
print("first polled: \(page.events.map { "\($0.raw.subject)#\($0.sequence)" }); more: \(page.hasMore)")
await provider.shutdown()
