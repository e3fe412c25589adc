/// Options for one publish.
public struct PublishOptions: Sendable, Hashable {
    /// The dedupe id. A second publish with the same id inside the provider's duplicate window is
    /// not stored again and returns the original sequence. `nil` uses the event id, so retrying the
    /// same event never duplicates it.
    public var messageID: String?
    /// When set, the publish succeeds only if the stream's last sequence equals this value
    /// (optimistic concurrency). A mismatch throws ``CourierError/Code/wrongLastSequence``.
    public var expectedLastSequence: UInt64?
    /// How long to wait for the provider's acknowledgement; `nil` uses the provider's default.
    public var timeout: Duration?

    /// Creates publish options.
    public init(messageID: String? = nil, expectedLastSequence: UInt64? = nil, timeout: Duration? = nil) {
        self.messageID = messageID
        self.expectedLastSequence = expectedLastSequence
        self.timeout = timeout
    }
}

/// What a provider answers to a publish.
public struct PublishAck: Sendable, Hashable, Codable {
    /// The stream sequence of the stored event (of the original, for a duplicate).
    public var sequence: UInt64
    /// The stream that stored it.
    public var stream: String
    /// Whether the publish was recognised as a duplicate and not stored again.
    public var duplicate: Bool

    /// Creates an acknowledgement.
    public init(sequence: UInt64, stream: String, duplicate: Bool = false) {
        self.sequence = sequence
        self.stream = stream
        self.duplicate = duplicate
    }
}

/// Where a new consumer starts reading.
public struct DeliverPolicy: Sendable, Hashable, Codable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable, Codable {
        case all, last, new, lastPerSubject
        case startSequence(UInt64)
        case startTime(unixNanoseconds: Int64)
    }

    package let kind: Kind

    /// Every stored event, oldest first.
    public static let all = DeliverPolicy(kind: .all)
    /// The last stored event matching the filter, then new ones.
    public static let last = DeliverPolicy(kind: .last)
    /// Only events published after the consumer is created.
    public static let new = DeliverPolicy(kind: .new)
    /// The last stored event of every subject matching the filter, then new ones.
    public static let lastPerSubject = DeliverPolicy(kind: .lastPerSubject)
    /// Events from stream sequence `sequence` on.
    public static func startSequence(_ sequence: UInt64) -> DeliverPolicy {
        DeliverPolicy(kind: .startSequence(sequence))
    }
    /// Events stored at or after `unixMilliseconds` (milliseconds since the Unix epoch).
    public static func startTime(unixMilliseconds: Int64) -> DeliverPolicy {
        DeliverPolicy(kind: .startTime(unixNanoseconds: unixMilliseconds * 1_000_000))
    }
    /// Events stored at or after `unixNanoseconds` (nanoseconds since the Unix epoch).
    public static func startTime(unixNanoseconds: Int64) -> DeliverPolicy {
        DeliverPolicy(kind: .startTime(unixNanoseconds: unixNanoseconds))
    }

    public var description: String {
        switch kind {
        case .all: "all"
        case .last: "last"
        case .new: "new"
        case .lastPerSubject: "lastPerSubject"
        case .startSequence(let s): "startSequence(\(s))"
        case .startTime(let ns): "startTime(\(ns)ns)"
        }
    }
}

/// How a subscription consumes: redelivery, flow control and where it starts.
///
/// The defaults suit a worker that acknowledges each event: a 30 s ack wait, at most 1 000
/// unacknowledged deliveries in flight, and five delivery attempts before the event is
/// dead-lettered. Redelivery is always bounded: poison messages are never redelivered forever.
/// A provider's own bound (JetStream's server-side `MaxDeliver`) is ``maxDeliver`` plus
/// ``deadLetterHandOffAttempts``: the extra deliveries retry a dead-letter hand-off that failed,
/// with the delays of ``deadLetterHandOffDelay(afterFailures:)``. If every hand-off fails the
/// event stays stored and the consumer moves on; it is never terminated unless a dead-letter
/// store took it.
public struct SubscribeOptions: Sendable {
    /// How many times an event is delivered before it is dead-lettered (at least 1).
    public var maxDeliver: Int
    /// Redelivery delays after an ack-wait expiry: the n-th redelivery waits `backoff[n-1]`
    /// (the last entry repeats). Empty uses ``ackWait``. Applies to expiries only, never to `nak`.
    public var backoff: [Duration]
    /// The most unacknowledged deliveries outstanding at once.
    public var maxAckPending: Int
    /// How long a delivery may stay unacknowledged before it is redelivered.
    public var ackWait: Duration
    /// Where a new consumer starts; `nil` is ``DeliverPolicy/all`` for a durable consumer and
    /// ``DeliverPolicy/new`` for an ephemeral subscription.
    public var deliverPolicy: DeliverPolicy?
    /// Where exhausted or terminated deliveries go; `nil` uses the provider's handler.
    /// Not persisted with a subscription.
    public var deadLetterHandler: (any DlqHandler)?

    /// How many times a dead-letter hand-off that failed is tried again before the consumer
    /// gives up on the event (which stays stored) and moves on.
    public static let deadLetterHandOffAttempts = 10

    /// The wait before trying a failed dead-letter hand-off again: 1 s, doubling per failure,
    /// at most 60 s (about five minutes over ``deadLetterHandOffAttempts`` attempts).
    public static func deadLetterHandOffDelay(afterFailures failures: Int) -> Duration {
        min(.seconds(1) * (1 << min(max(failures - 1, 0), 6)), .seconds(60))
    }

    /// The provider-side delivery bound: ``maxDeliver`` plus the hand-off retries.
    public var deliveryLimit: Int { maxDeliver + Self.deadLetterHandOffAttempts }

    /// Creates subscribe options.
    public init(
        maxDeliver: Int = 5,
        backoff: [Duration] = [],
        maxAckPending: Int = 1000,
        ackWait: Duration = .seconds(30),
        deliverPolicy: DeliverPolicy? = nil,
        deadLetterHandler: (any DlqHandler)? = nil
    ) {
        self.maxDeliver = maxDeliver
        self.backoff = backoff
        self.maxAckPending = maxAckPending
        self.ackWait = ackWait
        self.deliverPolicy = deliverPolicy
        self.deadLetterHandler = deadLetterHandler
    }

    /// Checks the values, naming the first invalid one.
    public func validate() throws {
        guard maxDeliver >= 1, maxDeliver <= 1_000_000 else {
            throw CourierError(
                .invalidConfiguration, "maxDeliver must be between 1 and 1000000, got \(maxDeliver)",
                input: "maxDeliver")
        }
        guard maxAckPending >= 1 else {
            throw CourierError(
                .invalidConfiguration, "maxAckPending must be at least 1, got \(maxAckPending)", input: "maxAckPending")
        }
        guard ackWait > .zero else {
            throw CourierError(.invalidConfiguration, "ackWait must be positive, got \(ackWait)", input: "ackWait")
        }
        if let bad = backoff.first(where: { $0 <= .zero }) {
            throw CourierError(.invalidConfiguration, "backoff delays must be positive, got \(bad)", input: "backoff")
        }
        if !backoff.isEmpty, backoff.count > maxDeliver {
            throw CourierError(
                .invalidConfiguration,
                "backoff has \(backoff.count) delays but maxDeliver is \(maxDeliver); it may have at most maxDeliver",
                input: "backoff"
            )
        }
    }

    /// The wait before delivery number `deliveryCount + 1` when delivery `deliveryCount` expires.
    package func expiryWait(afterDelivery deliveryCount: Int) -> Duration {
        guard !backoff.isEmpty else { return ackWait }
        return backoff[min(max(deliveryCount - 1, 0), backoff.count - 1)]
    }
}

extension SubscribeOptions: Codable {
    private enum CodingKeys: String, CodingKey {
        case maxDeliver, backoffMilliseconds, maxAckPending, ackWaitMilliseconds, deliverPolicy
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            // Files written when `maxDeliver` could be unlimited (null) get the default bound.
            maxDeliver: try c.decodeIfPresent(Int.self, forKey: .maxDeliver) ?? 5,
            backoff: (try c.decodeIfPresent([Int64].self, forKey: .backoffMilliseconds) ?? []).map {
                .milliseconds($0)
            },
            maxAckPending: try c.decodeIfPresent(Int.self, forKey: .maxAckPending) ?? 1000,
            ackWait: .milliseconds(try c.decodeIfPresent(Int64.self, forKey: .ackWaitMilliseconds) ?? 30_000),
            deliverPolicy: try c.decodeIfPresent(DeliverPolicy.self, forKey: .deliverPolicy)
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(maxDeliver, forKey: .maxDeliver)
        try c.encode(backoff.map(\.milliseconds), forKey: .backoffMilliseconds)
        try c.encode(maxAckPending, forKey: .maxAckPending)
        try c.encode(ackWait.milliseconds, forKey: .ackWaitMilliseconds)
        try c.encodeIfPresent(deliverPolicy, forKey: .deliverPolicy)
    }
}
