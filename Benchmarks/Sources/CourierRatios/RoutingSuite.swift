import Courier
import Foundation
import Synchronization

/// `Broker.route` throughput with 10, 1 000 and 10 000 triggers, the trigger index against a
/// linear scan of the same triggers (`Broker.Configuration.Matching.linearScan`).
///
/// Trigger i takes `events.c<i>.*`; every third one also needs event type `type.<i>`, every
/// fifth one a metadata attribute. Events cycle through the categories, so each matches one
/// trigger, and go to a sink that counts them. Attempt timeouts are off in both brokers (a
/// timeout costs two tasks per delivery, the same on both sides).
func routingPairs() throws -> [Pair] {
    try [10, 1_000, 10_000].map { triggers in
        let delivered = DeliveryCounter()
        let sink = InProcessSink("count") { _ in
            delivered.count.add(1, ordering: .relaxed)
            return nil
        }
        func broker(_ matching: Broker.Configuration.Matching) throws -> Broker {
            var configuration = Broker.Configuration(delivery: DeliveryPolicy(attemptTimeout: nil), matching: matching)
            configuration.logger.logLevel = .critical
            let broker = Broker(configuration: configuration)
            for i in 0..<triggers {
                var filter = TriggerFilter(subjectPattern: "events.c\(i).*")
                if i % 3 == 0 { filter.eventType = "type.\(i)" }
                if i % 5 == 0 { filter.attributes = ["tenant": "acme"] }
                try broker.addTrigger(Trigger(name: "t\(i)", filter: filter, sink: sink))
            }
            return broker
        }
        let indexed = try broker(.indexed)
        let linear = try broker(.linearScan)
        let events = (0..<min(triggers, 1000)).map { i in
            Event(
                subject: "events.c\(i).created",
                category: "c\(i)",
                eventType: i % 3 == 0 ? "type.\(i)" : "",
                payload: ["i": .int(Int64(i))],
                metadata: ["tenant": "acme"]
            )
        }
        @Sendable func measure(_ broker: Broker, _ count: Int) async throws -> Double {
            let before = delivered.count.load(ordering: .relaxed)
            let rate = await timed(count) {
                for n in 0..<count { _ = await broker.route(events[n % events.count]) }
            }
            guard delivered.count.load(ordering: .relaxed) - before == count else {
                throw CourierError(
                    .deliveryFailed, "benchmark routed \(delivered.count.load(ordering: .relaxed) - before) of \(count)"
                )
            }
            return rate
        }
        return Pair(
            name: "route, \(triggers) triggers (events/s)",
            baseline: "linear scan of the same triggers",
            courier: "indexed Broker.route",
            target: triggers == 10_000 ? 20 : nil,
            measureBaseline: { try await measure(linear, max(100, 2_000_000 / (triggers * 10))) },
            measureCourier: { try await measure(indexed, 100_000) }
        )
    }
}

/// Deliveries seen by the benchmark sink.
final class DeliveryCounter: Sendable {
    let count = Atomic<Int>(0)
}
