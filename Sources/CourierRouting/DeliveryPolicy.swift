#if Routing
import CourierCore

/// How a trigger retries a failing sink before dead-lettering the event.
public struct DeliveryPolicy: Sendable, Hashable, Codable {
    /// Retries after the first attempt.
    public var retries: Int
    /// The wait before each retry.
    public var backoff: Backoff
    /// How long one attempt may take; `nil` is unbounded.
    public var attemptTimeout: Duration?

    /// Creates a policy. The default: 3 retries, exponential backoff from 100 ms up to 10 s,
    /// 30 s per attempt.
    public init(
        retries: Int = 3, backoff: Backoff = .exponential(base: .milliseconds(100), maximum: .seconds(10)),
        attemptTimeout: Duration? = .seconds(30)
    ) {
        self.retries = retries
        self.backoff = backoff
        self.attemptTimeout = attemptTimeout
    }

    /// Checks the values, naming the first invalid one.
    public func validate() throws {
        guard retries >= 0 else {
            throw CourierError(.invalidConfiguration, "retries must not be negative, got \(retries)", input: "retries")
        }
        if let attemptTimeout, attemptTimeout <= .zero {
            throw CourierError(.invalidConfiguration, "attemptTimeout must be positive", input: "attemptTimeout")
        }
        try backoff.validate()
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case retries, backoff, attemptTimeoutMilliseconds }

    /// Decodes a policy; absent fields take the defaults, unknown keys are rejected.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "delivery")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        retries = try c.decodeIfPresent(Int.self, forKey: .retries) ?? 3
        backoff =
            try c.decodeIfPresent(Backoff.self, forKey: .backoff)
            ?? .exponential(base: .milliseconds(100), maximum: .seconds(10))
        // Absent: the 30 s default; null: unbounded.
        if !c.contains(.attemptTimeoutMilliseconds) {
            attemptTimeout = .seconds(30)
        } else if try c.decodeNil(forKey: .attemptTimeoutMilliseconds) {
            attemptTimeout = nil
        } else {
            attemptTimeout = .milliseconds(try c.decode(Int64.self, forKey: .attemptTimeoutMilliseconds))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(retries, forKey: .retries)
        try c.encode(backoff, forKey: .backoff)
        if let attemptTimeout {
            try c.encode(attemptTimeout.milliseconds, forKey: .attemptTimeoutMilliseconds)
        } else {
            try c.encodeNil(forKey: .attemptTimeoutMilliseconds)
        }
    }
}

/// Retry spacing: linear (`base × n`) or exponential (`base × 2ⁿ⁻¹`), capped at a maximum.
public struct Backoff: Sendable, Hashable, Codable {
    let exponential: Bool
    /// The first delay.
    public let base: Duration
    /// The longest delay.
    public let maximum: Duration

    /// `base × n` before retry n, at most `maximum`.
    public static func linear(base: Duration, maximum: Duration) -> Backoff {
        Backoff(exponential: false, base: base, maximum: maximum)
    }

    /// `base × 2ⁿ⁻¹` before retry n, at most `maximum`.
    public static func exponential(base: Duration, maximum: Duration) -> Backoff {
        Backoff(exponential: true, base: base, maximum: maximum)
    }

    /// The wait before retry `retry` (1 for the first retry).
    public func delay(beforeRetry retry: Int) -> Duration {
        let n = max(1, retry)
        let delay = exponential ? base * (1 << min(n - 1, 30)) : base * n
        return min(delay, maximum)
    }

    func validate() throws {
        guard base >= .zero, maximum >= base else {
            throw CourierError(.invalidConfiguration, "backoff needs 0 ≤ base ≤ maximum", input: "backoff")
        }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case kind, baseMilliseconds, maximumMilliseconds }

    /// Decodes a backoff; absent fields take the defaults, unknown keys are rejected.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "backoff")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? "exponential"
        guard kind == "linear" || kind == "exponential" else {
            throw CourierError(
                .invalidConfiguration, "backoff kind must be 'linear' or 'exponential', got '\(kind)'",
                input: "backoff.kind")
        }
        self.init(
            exponential: kind == "exponential",
            base: .milliseconds(try c.decodeIfPresent(Int64.self, forKey: .baseMilliseconds) ?? 100),
            maximum: .milliseconds(try c.decodeIfPresent(Int64.self, forKey: .maximumMilliseconds) ?? 10_000)
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(exponential ? "exponential" : "linear", forKey: .kind)
        try c.encode(base.milliseconds, forKey: .baseMilliseconds)
        try c.encode(maximum.milliseconds, forKey: .maximumMilliseconds)
    }

    private init(exponential: Bool, base: Duration, maximum: Duration) {
        self.exponential = exponential
        self.base = base
        self.maximum = maximum
    }
}
#endif
