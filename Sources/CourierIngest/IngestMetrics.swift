import CoreMetrics
import CourierCore

/// Reports one shard's counters through swift-metrics, so the backend the application
/// bootstraps sees the ingest core next to the bus metrics:
///
/// - `courier_ingest_events_dispatched_total`, `courier_ingest_batches_total`
/// - `courier_ingest_events_dropped_total` (evicted, dropped on entry, in failed batches or at a
///   forced shutdown) and `courier_ingest_events_rejected_total` (refused to their producer)
/// - `courier_ingest_events_dead_lettered_total` (rejected one by one by the adapter)
/// - `courier_ingest_batch_retries_total` and the timer `courier_ingest_batch_duration_seconds`
///
/// each with `bus` (``IngestBus/Configuration/name``) and `shard` dimensions. Producers never touch swift-metrics: the shard worker reports
/// the ring's counters as deltas after each batch, so the hot path stays free of it.
struct IngestMetricsReporter {
    private let dispatched: Counter
    private let batches: Counter
    private let dropped: Counter
    private let rejected: Counter
    private let deadLettered: Counter
    private let retries: Counter
    private let batchDuration: Timer
    /// The counter values last reported, by `IngestRing.Counter` raw value (no allocation per report).
    private var reported = [UInt64](repeating: 0, count: IngestRing.Counter.allCases.count)

    static let droppedCounters: [IngestRing.Counter] = [
        .evicted, .droppedOnEntry, .droppedInBatches, .droppedAtShutdown,
    ]

    init(bus: String, shard: Int) {
        let dimensions = [("bus", bus), ("shard", String(shard))]
        dispatched = Counter(label: "courier_ingest_events_dispatched_total", dimensions: dimensions)
        batches = Counter(label: "courier_ingest_batches_total", dimensions: dimensions)
        dropped = Counter(label: "courier_ingest_events_dropped_total", dimensions: dimensions)
        rejected = Counter(label: "courier_ingest_events_rejected_total", dimensions: dimensions)
        deadLettered = Counter(label: "courier_ingest_events_dead_lettered_total", dimensions: dimensions)
        retries = Counter(label: "courier_ingest_batch_retries_total", dimensions: dimensions)
        batchDuration = Timer(label: "courier_ingest_batch_duration_seconds", dimensions: dimensions)
    }

    /// Records one dispatch's duration.
    func recordBatch(nanoseconds: Int64) {
        batchDuration.recordNanoseconds(nanoseconds)
    }

    /// Reports what the ring's counters gained since the last call.
    mutating func report(_ ring: IngestRing) {
        func delta(_ counter: IngestRing.Counter) -> Int64 {
            let now = ring.load(counter)
            let before = reported[counter.rawValue]
            reported[counter.rawValue] = now
            return Int64(truncatingIfNeeded: now &- before)
        }
        if case let value = delta(.dispatched), value > 0 { dispatched.increment(by: value) }
        if case let value = delta(.batches), value > 0 { batches.increment(by: value) }
        if case let value = delta(.rejected), value > 0 { rejected.increment(by: value) }
        if case let value = delta(.deadLettered), value > 0 { deadLettered.increment(by: value) }
        if case let value = delta(.retries), value > 0 { retries.increment(by: value) }
        let lost = Self.droppedCounters.reduce(Int64(0)) { $0 + delta($1) }
        if lost > 0 { dropped.increment(by: lost) }
    }
}
