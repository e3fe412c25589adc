/// The counters of an ``IngestBus``.
public struct IngestStats: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Events the bus took responsibility for: enqueued, or dropped on entry by the backpressure
    /// mode. Refused events are not included.
    public var eventsIngested: UInt64 = 0
    /// Events dropped: by the backpressure mode, in batches the adapter never took, or at a
    /// shutdown deadline.
    public var eventsDropped: UInt64 = 0
    /// Events refused to their producer (who still holds them).
    public var eventsRejected: UInt64 = 0
    /// Batches the adapter took.
    public var batchesDispatched: UInt64 = 0
    /// Events in those batches the adapter stored.
    public var eventsDispatched: UInt64 = 0
    /// Events the adapter rejected one by one (a bad subject, an oversized payload), which the
    /// bus dead-letters (``IngestBus/deadLetters``). After shutdown,
    /// `eventsDispatched + eventsDeadLettered + eventsDropped == eventsIngested`.
    public var eventsDeadLettered: UInt64 = 0
    /// Batch retries after retryable adapter errors.
    public var batchRetries: UInt64 = 0
    /// Events waiting in the rings.
    public var pending: UInt64 = 0
    /// Current shard count.
    public var shards: Int = 0
    /// Whether a shutdown deadline forced events to be dropped.
    public var shutdownWasLossy = false

    /// Creates zeroed stats.
    public init() {}

    public var description: String {
        "ingested \(eventsIngested), dispatched \(eventsDispatched) in \(batchesDispatched) batches, "
            + "dead-lettered \(eventsDeadLettered), dropped \(eventsDropped), "
            + "rejected \(eventsRejected), pending \(pending), shards \(shards)\(shutdownWasLossy ? ", lossy shutdown" : "")"
    }
}
