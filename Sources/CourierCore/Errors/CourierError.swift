/// The one error type Courier throws.
///
/// Every failure carries a ``Code`` (what kind of failure), a human-readable message that names the
/// offending input, the input itself where there is one, and whether retrying the same operation can
/// succeed (``isRetryable``). Codes are static members rather than enum cases so new ones can be added
/// without breaking exhaustive switches in user code.
///
/// ```swift
/// do {
///     try await bus.pipeline.publish(event)
/// } catch let error as CourierError where error.code == .invalidSubject {
///     logger.warning("rejected", metadata: ["subject": "\(error.input ?? "")"])
/// }
/// ```
public struct CourierError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let raw: String
        private init(_ raw: String) { self.raw = raw }

        /// A subject is empty, has an empty token, whitespace, or a wildcard where none is allowed.
        public static let invalidSubject = Code("invalidSubject")
        /// A subscription filter is malformed (for example `>` not in the last position).
        public static let invalidFilter = Code("invalidFilter")
        /// A document is not valid JSON, or not the shape the reader expects.
        public static let invalidJSON = Code("invalidJSON")
        /// An event violates the envelope rules (empty id, version 0, …).
        public static let invalidEvent = Code("invalidEvent")
        /// A payload is larger than the provider or server accepts.
        public static let payloadTooLarge = Code("payloadTooLarge")
        /// `expectedLastSequence` did not match the stream's last sequence.
        public static let wrongLastSequence = Code("wrongLastSequence")
        /// A named thing (consumer, stream, key, schema, trigger) does not exist.
        public static let notFound = Code("notFound")
        /// A name is already taken.
        public static let alreadyExists = Code("alreadyExists")
        /// An operation did not finish within its deadline.
        public static let timeout = Code("timeout")
        /// The server could not be reached, or the connection was lost.
        public static let connectionFailed = Code("connectionFailed")
        /// Credentials or certificates were rejected.
        public static let authenticationFailed = Code("authenticationFailed")
        /// A delivery was already acknowledged, nak'ed or terminated.
        public static let alreadyFinalized = Code("alreadyFinalized")
        /// The subscription, provider or bus was closed.
        public static let closed = Code("closed")
        /// A configuration value is invalid or incompatible with existing state.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// An event does not satisfy its registered schema.
        public static let validationFailed = Code("validationFailed")
        /// A payload could not be encrypted.
        public static let encryptionFailed = Code("encryptionFailed")
        /// A payload could not be decrypted (unknown key, bad encoding, tag mismatch).
        public static let decryptionFailed = Code("decryptionFailed")
        /// A key is malformed or unknown.
        public static let invalidKey = Code("invalidKey")
        /// A CloudEvent violates the CloudEvents v1.0 specification.
        public static let invalidCloudEvent = Code("invalidCloudEvent")
        /// A bounded buffer is full and the configured policy rejects the item.
        public static let backpressure = Code("backpressure")
        /// A component was shut down and no longer accepts work.
        public static let shutdown = Code("shutdown")
        /// A sink or handler failed to accept a delivery.
        public static let deliveryFailed = Code("deliveryFailed")
        /// Reading or writing local state failed.
        public static let storageFailed = Code("storageFailed")
        /// The store has no room left for the event right now (disk, memory or account limits of
        /// the server). Retryable: room may be freed.
        public static let insufficientStorage = Code("insufficientStorage")
        /// The server or library reported an error that fits no other code.
        public static let providerError = Code("providerError")
        /// A failure that may pass (an adapter asks to be retried).
        public static let transient = Code("transient")
        /// A failure that will not pass (an adapter asks not to be retried).
        public static let fatal = Code("fatal")

        public var description: String { raw }
    }

    /// The kind of failure.
    public var code: Code
    /// What went wrong, naming the input.
    public var message: String
    /// The offending input (a subject, a field name, a URL, …), when there is one.
    public var input: String?
    /// Whether repeating the same operation may succeed.
    public var isRetryable: Bool

    /// Creates an error. An `input` longer than ``longInputThreshold`` characters is kept as
    /// ``abbreviated(_:)`` describes it.
    public init(_ code: Code, _ message: String, input: String? = nil, isRetryable: Bool = false) {
        self.code = code
        self.message = message
        self.input = input.map { $0.utf8.count > Self.longInputThreshold ? Self.abbreviated($0) : $0 }
        self.isRetryable = isRetryable
    }

    /// Inputs longer than this many bytes are named by a prefix and their length.
    public static let longInputThreshold = 128

    /// How an error names `input`: the input itself, or for a long one its first 64 characters
    /// followed by `…` and its length in bytes, so a 6 000-character subject never fills a log.
    public static func abbreviated(_ input: String) -> String {
        let length = input.utf8.count
        guard length > longInputThreshold else { return input }
        return "\(input.prefix(64))… (\(length) bytes)"
    }

    public var description: String { "CourierError.\(code): \(message)" }
}

extension CourierError {
    /// An invalid published subject.
    public static func invalidSubject(_ subject: String, _ reason: String) -> CourierError {
        CourierError(.invalidSubject, "invalid subject '\(abbreviated(subject))': \(reason)", input: subject)
    }

    /// An invalid subscription filter.
    public static func invalidFilter(_ filter: String, _ reason: String) -> CourierError {
        CourierError(.invalidFilter, "invalid filter '\(abbreviated(filter))': \(reason)", input: filter)
    }

    /// A delivery that was already finalised.
    static func alreadyFinalized(sequence: UInt64, by action: String) -> CourierError {
        CourierError(
            .alreadyFinalized,
            "delivery of stream sequence \(sequence) was already finalised by \(action)",
            input: String(sequence)
        )
    }
}
