import CoreMetrics
import Synchronization

/// Counters of an ``EventBus``, readable at any time without locking, and also reported through
/// swift-metrics (so a Prometheus or OpenTelemetry backend bootstrapped by the application picks
/// them up under `courier_*` labels).
public final class EventMetrics: Sendable {
    /// A consistent-enough copy of the counters.
    public struct Snapshot: Sendable, Hashable, Codable {
        /// Events published.
        public var publishCount: UInt64
        /// Publishes that failed (including rejected events).
        public var publishErrors: UInt64
        /// Total publish latency, microseconds.
        public var publishLatencyMicrosTotal: UInt64
        /// Slowest publish, microseconds.
        public var publishLatencyMicrosMax: UInt64
        /// Subscriptions created.
        public var subscribeCount: UInt64
        /// Subscriptions removed.
        public var unsubscribeCount: UInt64
        /// Events delivered to bus subscribers.
        public var consumeCount: UInt64
        /// Events dead-lettered.
        public var dlqCount: UInt64
        /// Dead-letter hand-offs that failed (the event stayed pending).
        public var dlqErrors: UInt64
        /// Events rejected by schema validation.
        public var validationErrors: UInt64
        /// Payloads encrypted.
        public var encryptCount: UInt64
        /// Payloads decrypted.
        public var decryptCount: UInt64
        /// Payloads that failed to encrypt or decrypt.
        public var cryptoErrors: UInt64

        /// Mean publish latency in microseconds.
        public var publishLatencyMicrosAverage: Double {
            publishCount == 0 ? 0 : Double(publishLatencyMicrosTotal) / Double(publishCount)
        }
    }

    private let publishCount = Atomic<UInt64>(0)
    private let publishErrors = Atomic<UInt64>(0)
    private let publishLatencyTotal = Atomic<UInt64>(0)
    private let publishLatencyMax = Atomic<UInt64>(0)
    private let subscribeCount = Atomic<UInt64>(0)
    private let unsubscribeCount = Atomic<UInt64>(0)
    private let consumeCount = Atomic<UInt64>(0)
    private let dlqCount = Atomic<UInt64>(0)
    private let dlqErrors = Atomic<UInt64>(0)
    private let validationErrors = Atomic<UInt64>(0)
    private let encryptCount = Atomic<UInt64>(0)
    private let decryptCount = Atomic<UInt64>(0)
    private let cryptoErrors = Atomic<UInt64>(0)

    private let published: Counter
    private let publishFailed: Counter
    private let publishTimer: Timer
    private let consumed: Counter
    private let consumeTimer: Timer
    private let deadLettered: Counter
    private let validationFailed: Counter
    private let cryptoFailed: Counter

    /// Creates counters reported to swift-metrics with the dimensions `dimensions`
    /// (for example `[("provider", "jetstream")]`).
    public init(dimensions: [(String, String)] = []) {
        published = Counter(label: "courier_events_published_total", dimensions: dimensions)
        publishFailed = Counter(label: "courier_publish_errors_total", dimensions: dimensions)
        publishTimer = Timer(label: "courier_publish_duration_seconds", dimensions: dimensions)
        consumed = Counter(label: "courier_events_consumed_total", dimensions: dimensions)
        consumeTimer = Timer(label: "courier_consume_duration_seconds", dimensions: dimensions)
        deadLettered = Counter(label: "courier_events_dead_lettered_total", dimensions: dimensions)
        validationFailed = Counter(label: "courier_validation_errors_total", dimensions: dimensions)
        cryptoFailed = Counter(label: "courier_crypto_errors_total", dimensions: dimensions)
    }

    /// Records a successful publish that took `nanoseconds`.
    public func recordPublish(nanoseconds: Int64) {
        publishCount.add(1, ordering: .relaxed)
        let micros = UInt64(max(0, nanoseconds) / 1000)
        publishLatencyTotal.add(micros, ordering: .relaxed)
        var current = publishLatencyMax.load(ordering: .relaxed)
        while micros > current {
            let (exchanged, original) = publishLatencyMax.compareExchange(
                expected: current, desired: micros, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        published.increment()
        publishTimer.recordNanoseconds(nanoseconds)
    }

    /// Records a failed publish.
    public func recordPublishError() {
        publishErrors.add(1, ordering: .relaxed)
        publishFailed.increment()
    }

    /// Records a created subscription.
    public func recordSubscribe() { subscribeCount.add(1, ordering: .relaxed) }
    /// Records a removed subscription.
    public func recordUnsubscribe() { unsubscribeCount.add(1, ordering: .relaxed) }

    /// Records an event handed to a subscriber, `nanoseconds` after it was created.
    public func recordConsume(latencyNanoseconds: Int64) {
        consumeCount.add(1, ordering: .relaxed)
        consumed.increment()
        consumeTimer.recordNanoseconds(max(0, latencyNanoseconds))
    }

    /// Records a dead-lettered event.
    public func recordDeadLetter() {
        dlqCount.add(1, ordering: .relaxed)
        deadLettered.increment()
    }

    /// Records a failed dead-letter hand-off.
    public func recordDeadLetterError() { dlqErrors.add(1, ordering: .relaxed) }

    /// Records an event rejected by its schema.
    public func recordValidationError() {
        validationErrors.add(1, ordering: .relaxed)
        validationFailed.increment()
    }

    /// Records an encrypted payload.
    public func recordEncrypt() { encryptCount.add(1, ordering: .relaxed) }
    /// Records a decrypted payload.
    public func recordDecrypt() { decryptCount.add(1, ordering: .relaxed) }
    /// Records a payload that failed to encrypt or decrypt.
    public func recordCryptoError() {
        cryptoErrors.add(1, ordering: .relaxed)
        cryptoFailed.increment()
    }

    /// The current counters.
    public func snapshot() -> Snapshot {
        Snapshot(
            publishCount: publishCount.load(ordering: .relaxed),
            publishErrors: publishErrors.load(ordering: .relaxed),
            publishLatencyMicrosTotal: publishLatencyTotal.load(ordering: .relaxed),
            publishLatencyMicrosMax: publishLatencyMax.load(ordering: .relaxed),
            subscribeCount: subscribeCount.load(ordering: .relaxed),
            unsubscribeCount: unsubscribeCount.load(ordering: .relaxed),
            consumeCount: consumeCount.load(ordering: .relaxed),
            dlqCount: dlqCount.load(ordering: .relaxed),
            dlqErrors: dlqErrors.load(ordering: .relaxed),
            validationErrors: validationErrors.load(ordering: .relaxed),
            encryptCount: encryptCount.load(ordering: .relaxed),
            decryptCount: decryptCount.load(ordering: .relaxed),
            cryptoErrors: cryptoErrors.load(ordering: .relaxed)
        )
    }
}
