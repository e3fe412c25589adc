import Courier
import Foundation

/// The embedded provider against Swift's own in-process channel, `AsyncStream`: the baseline
/// moves the same events from one task to another with no log, no positions and no acks.
func memoryPairs() -> [Pair] {
    let count = 200_000
    let payload: JSONValue = ["symbol": "EURUSD", "bid": 1.0842, "ask": 1.0843, "venue": "ebs"]
    let events = (0..<count).map { _ in Event(subject: "events.market.fx", category: "market", payload: payload) }
    return [
        Pair(
            name: "publish → one consumer",
            baseline: "AsyncStream handoff",
            courier: "MemoryProvider publish → durable subscription, manual ack",
            target: 1.0,
            measureBaseline: {
                let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
                return await timed(count) {
                    async let consumed: Int = {
                        var received = 0
                        for await _ in stream {
                            received += 1
                            if received == count { break }
                        }
                        return received
                    }()
                    for event in events { continuation.yield(event) }
                    let received = await consumed
                    precondition(received == count)
                }
            },
            measureCourier: {
                var configuration = MemoryProvider.Configuration()
                configuration.maxEvents = count + 1
                let provider = MemoryProvider(configuration: configuration)
                let subscription = try await provider.subscribeDurable(
                    consumer: "bench", filter: "events.>", options: SubscribeOptions(maxAckPending: 10_000))
                let result = try await timed(count) {
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
                return result
            }
        ),
        Pair(
            name: "new event id",
            baseline: "\"evt-\" + UUID().uuidString.lowercased() (Foundation)",
            courier: "Event.newID()",
            target: nil,
            measureBaseline: {
                var length = 0
                let result = await timed(count) {
                    for _ in 0..<count { length &+= ("evt-" + UUID().uuidString.lowercased()).utf8.count }
                }
                precondition(length == count * 40)
                return result
            },
            measureCourier: {
                var length = 0
                let result = await timed(count) {
                    for _ in 0..<count { length &+= Event.newID().utf8.count }
                }
                precondition(length == count * 40)
                return result
            }
        ),
    ]
}
