#if NATS
import CourierCore
/// A message to publish: subject, bytes, headers and its dedupe id.
public struct OutgoingMessage: Sendable {
    /// The subject.
    public var subject: String
    /// The message body.
    public var payload: [UInt8]
    /// Extra headers (the dedupe and expected-sequence headers are added from the fields below).
    public var headers: [(String, String)]
    /// The `Nats-Msg-Id`: retrying with the same id never stores the message twice.
    public var messageID: String {
        get { dedupeID.text }
        set { dedupeID = MessageID(newValue) }
    }
    /// When set, the stream's last sequence must equal this value.
    public var expectedLastSequence: UInt64?
    /// The dedupe id as the header block writes it.
    var dedupeID: MessageID

    /// Creates an outgoing message.
    public init(
        subject: String,
        payload: [UInt8],
        headers: [(String, String)] = [],
        messageID: String,
        expectedLastSequence: UInt64? = nil
    ) {
        self.init(
            subject: subject, payload: payload, headers: headers, dedupeID: MessageID(messageID),
            expectedLastSequence: expectedLastSequence)
    }

    init(
        subject: String, payload: [UInt8], headers: [(String, String)] = [], dedupeID: MessageID,
        expectedLastSequence: UInt64? = nil
    ) {
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.dedupeID = dedupeID
        self.expectedLastSequence = expectedLastSequence
    }
}

/// A `Nats-Msg-Id`: a text, optionally followed by a decimal index. An ingest batch's ids share
/// one prefix and differ by index, so its messages carry them without a string each (the
/// header block writes the digits).
struct MessageID: Sendable {
    let prefix: String
    let index: Int?

    init(_ text: String) {
        prefix = text
        index = nil
    }

    init(prefix: String, index: Int) {
        self.prefix = prefix
        self.index = index
    }

    /// The whole id.
    var text: String { index.map { prefix + String($0) } ?? prefix }

    /// The id's length in bytes.
    var utf8Count: Int { prefix.utf8.count + (index.map { JSONWriter.size(ofInt: Int64($0)) } ?? 0) }

    /// Appends the id.
    func write(into out: inout [UInt8]) {
        out.append(contentsOf: prefix.utf8)
        if let index { JSONWriter.writeInt(Int64(index), into: &out) }
    }
}
#endif
