#if Routing
import CourierCore
import CoreMetrics
import Synchronization

/// A named rule: events passing ``filter`` are delivered to ``sink`` under ``delivery``.
///
/// ```swift
/// let audit = try Trigger(
///     name: "audit-orders",
///     filter: TriggerFilter(subjectPattern: "events.orders.>"),
///     sink: TopicSink(provider: provider, subject: "events.audit.orders")
/// )
/// try broker.addTrigger(audit)
/// ```
public struct Trigger: Sendable {
    /// The trigger's name, unique within a broker.
    public let name: String
    /// Which events it takes.
    public let filter: TriggerFilter
    /// Where they go.
    public let sink: any EventSink
    /// Its retry policy; `nil` uses the broker's default.
    public let delivery: DeliveryPolicy?

    /// Creates a trigger, checking its name, filter and policy.
    ///
    /// - Throws: `CourierError/Code/invalidFilter` or `CourierError/Code/invalidConfiguration`
    ///   naming what is wrong.
    public init(
        name: String, filter: TriggerFilter = TriggerFilter(), sink: any EventSink, delivery: DeliveryPolicy? = nil
    ) throws {
        guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
            throw CourierError(
                .invalidConfiguration, "a trigger name must be non-empty without whitespace, got '\(name)'", input: name
            )
        }
        do {
            try filter.validate()
            try delivery?.validate()
        } catch var error as CourierError {
            error.message = "trigger '\(name)': \(error.message)"
            throw error
        }
        self.name = name
        self.filter = filter
        self.sink = sink
        self.delivery = delivery
    }
}

/// What routing one event did.
public struct RouteResult: Sendable, Hashable {
    /// The names of the triggers that matched, in the order they were added.
    public var matched: [String] = []
    /// Triggers whose sink took the event.
    public var delivered: Int = 0
    /// Triggers whose sink kept failing and whose dead-letter hand-off also failed: these events
    /// were not handled, and ``failures`` says why.
    public var failed: Int = 0
    /// Triggers whose sink kept failing, so the event was dead-lettered.
    public var deadLettered: Int = 0
    /// Reply events published back.
    public var replies: Int = 0
    /// One line per failure: trigger name and error.
    public var failures: [String] = []

    /// Creates an empty result.
    public init() {}

    /// Whether every matching trigger either delivered the event or dead-lettered it.
    public var isComplete: Bool { failed == 0 }
}

/// Counters of one trigger, also reported through swift-metrics with a `trigger` dimension.
public final class TriggerMetrics: Sendable {
    /// A copy of the counters.
    public struct Snapshot: Sendable, Hashable, Codable {
        /// Events that matched.
        public var matched: UInt64
        /// Events the sink took.
        public var delivered: UInt64
        /// Retries after failed attempts.
        public var retried: UInt64
        /// Events dead-lettered after the retries ran out.
        public var deadLettered: UInt64
        /// Events neither delivered nor dead-lettered.
        public var failed: UInt64
        /// Total delivery latency (all attempts and backoff), microseconds.
        public var latencyMicrosTotal: UInt64
        /// Slowest delivery, microseconds.
        public var latencyMicrosMax: UInt64

        /// Mean delivery latency of delivered events, microseconds.
        public var latencyMicrosAverage: Double { delivered == 0 ? 0 : Double(latencyMicrosTotal) / Double(delivered) }
    }

    private let matchedCount = Atomic<UInt64>(0)
    private let deliveredCount = Atomic<UInt64>(0)
    private let retriedCount = Atomic<UInt64>(0)
    private let deadLetteredCount = Atomic<UInt64>(0)
    private let failedCount = Atomic<UInt64>(0)
    private let latencyTotal = Atomic<UInt64>(0)
    private let latencyMax = Atomic<UInt64>(0)
    private let matchedCounter: Counter
    private let deliveredCounter: Counter
    private let retriedCounter: Counter
    private let deadLetteredCounter: Counter
    private let failedCounter: Counter
    private let latencyTimer: Timer

    init(broker: String, trigger: String) {
        let dimensions = [("broker", broker), ("trigger", trigger)]
        matchedCounter = Counter(label: "courier_trigger_matched_total", dimensions: dimensions)
        deliveredCounter = Counter(label: "courier_trigger_delivered_total", dimensions: dimensions)
        retriedCounter = Counter(label: "courier_trigger_retried_total", dimensions: dimensions)
        deadLetteredCounter = Counter(label: "courier_trigger_dead_lettered_total", dimensions: dimensions)
        failedCounter = Counter(label: "courier_trigger_failed_total", dimensions: dimensions)
        latencyTimer = Timer(label: "courier_trigger_delivery_duration_seconds", dimensions: dimensions)
    }

    func recordMatched() {
        matchedCount.add(1, ordering: .relaxed)
        matchedCounter.increment()
    }

    func recordDelivered(nanoseconds: Int64) {
        deliveredCount.add(1, ordering: .relaxed)
        deliveredCounter.increment()
        let micros = UInt64(max(0, nanoseconds) / 1000)
        latencyTotal.add(micros, ordering: .relaxed)
        _ = latencyMax.max(micros, ordering: .relaxed)
        latencyTimer.recordNanoseconds(nanoseconds)
    }

    func recordRetry() {
        retriedCount.add(1, ordering: .relaxed)
        retriedCounter.increment()
    }

    func recordDeadLettered() {
        deadLetteredCount.add(1, ordering: .relaxed)
        deadLetteredCounter.increment()
    }

    func recordFailed() {
        failedCount.add(1, ordering: .relaxed)
        failedCounter.increment()
    }

    /// The current counters.
    public var snapshot: Snapshot {
        Snapshot(
            matched: matchedCount.load(ordering: .relaxed),
            delivered: deliveredCount.load(ordering: .relaxed),
            retried: retriedCount.load(ordering: .relaxed),
            deadLettered: deadLetteredCount.load(ordering: .relaxed),
            failed: failedCount.load(ordering: .relaxed),
            latencyMicrosTotal: latencyTotal.load(ordering: .relaxed),
            latencyMicrosMax: latencyMax.load(ordering: .relaxed)
        )
    }
}
#endif
