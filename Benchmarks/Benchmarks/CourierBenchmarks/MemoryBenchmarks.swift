import Benchmark
import Courier

/// MemoryProvider: publish → one durable subscriber that acknowledges each event.
func memoryBenchmarks() {
    Benchmark("memory: publish → durable subscriber with ack") { benchmark in
        let count = 200_000
        var configuration = MemoryProvider.Configuration()
        configuration.maxEvents = count + 1
        let provider = MemoryProvider(configuration: configuration)
        let subscription = try await provider.subscribeDurable(
            consumer: "bench", filter: "events.>", options: SubscribeOptions(maxAckPending: 10_000))
        let payload: JSONValue = ["symbol": "EURUSD", "bid": 1.0842, "ask": 1.0843, "venue": "ebs"]
        let events = (0..<count).map { _ in Event(subject: "events.market.fx", category: "market", payload: payload) }
        try await benchmark.measure(count) {
            async let consumed: Int = {
                var received = 0
                while received < count, let pending = try await subscription.next() {
                    try await pending.ack()
                    received += 1
                }
                return received
            }()
            for event in events { try await provider.publish(event) }
            let received = try await consumed
            precondition(received == count)
        }
        await subscription.close()
    }
}
