#if NATS
/// A message to publish: subject, bytes, headers and its dedupe id.
public struct OutgoingMessage: Sendable {
    /// The subject.
    public var subject: String
    /// The message body.
    public var payload: [UInt8]
    /// Extra headers (the dedupe and expected-sequence headers are added from the fields below).
    public var headers: [(String, String)]
    /// The `Nats-Msg-Id`: retrying with the same id never stores the message twice.
    public var messageID: String
    /// When set, the stream's last sequence must equal this value.
    public var expectedLastSequence: UInt64?

    /// Creates an outgoing message.
    public init(
        subject: String,
        payload: [UInt8],
        headers: [(String, String)] = [],
        messageID: String,
        expectedLastSequence: UInt64? = nil
    ) {
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.messageID = messageID
        self.expectedLastSequence = expectedLastSequence
    }
}
#endif
