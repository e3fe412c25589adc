import Logging
import Synchronization

extension IngestBus {
    // MARK: Scaling advice

    /// What ``suggestScaling()`` advises.
    public struct ScalingSuggestion: Sendable, Hashable, CustomStringConvertible {
        /// The suggested shard count (equal to the current one to hold).
        public var shards: Int
        /// The current shard count.
        public var current: Int
        /// Why.
        public var reason: String

        public var description: String { "\(current) → \(shards) shards: \(reason)" }
    }

    /// Advice from ring fill levels and the last dispatch latencies: more shards when rings run
    /// more than ¾ full or dispatches take longer than four batch delays, fewer when every ring
    /// is nearly empty and dispatches are quick.
    public func suggestScaling() -> ScalingSuggestion {
        let current = shardCount
        var fullest = 0.0
        var total = 0.0
        var slowest: Duration = .zero
        for shard in 0..<current {
            let ring = rings[shard]
            let fill = Double(ring.pending) / Double(ring.capacity)
            fullest = max(fullest, fill)
            total += fill
            slowest = max(slowest, .nanoseconds(Int64(truncatingIfNeeded: ring.load(.lastDispatchNanos))))
        }
        let average = total / Double(max(1, current))
        let slow = configuration.batch.maxDelay * 4
        if fullest > 0.75 || slowest > max(slow, .milliseconds(10)) {
            let target = min(configuration.maxShards, max(current + 1, current * 2))
            return ScalingSuggestion(
                shards: target,
                current: current,
                reason: "fullest ring \(Int(fullest * 100))% full, slowest dispatch \(slowest)"
            )
        }
        if current > 1, fullest < 0.05, average < 0.02, slowest < configuration.batch.maxDelay {
            return ScalingSuggestion(
                shards: max(1, current / 2),
                current: current,
                reason: "rings nearly empty (fullest \(Int(fullest * 100))%), dispatches take \(slowest)"
            )
        }
        return ScalingSuggestion(
            shards: current, current: current, reason: "fill \(Int(average * 100))% on average, dispatch \(slowest)")
    }
}
