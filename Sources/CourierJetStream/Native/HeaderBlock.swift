#if NATS
internal import CNATS
import CourierCore

#if canImport(Glibc)
import Glibc
#endif

/// The header block of a NATS message as the protocol carries it: `NATS/1.0`, a `Name: value`
/// line per header, an empty line; every line ends in CR LF.
///
/// Courier writes it itself, into the same buffer as the payload, so a published message is
/// one allocation in cnats (``makeNATSMessage(subject:reply:bytes:headerLength:)``), not a
/// header table built with `natsMsgHeader_Set` and encoded again by every publish.
enum HeaderBlock {
    /// Where a message stands in an atomic batch: the batch's id, the message's 1-based
    /// position, and whether it commits the batch (the last one).
    typealias AtomicBatchPosition = (id: String, sequence: Int, commits: Bool)

    /// Appends the block for `headers`, then `Nats-Msg-Id: <messageID>` and, when given,
    /// `Nats-Expected-Last-Sequence` and the atomic batch headers (`Nats-Batch-Id`,
    /// `Nats-Batch-Sequence`, `Nats-Batch-Commit` on the last one).
    ///
    /// - Throws: ``CourierError/Code/invalidEvent`` naming a header whose name or value would
    ///   break the block (see ``check(_:_:subject:)``); nothing is appended then.
    static func write(
        _ headers: [(String, String)], messageID: MessageID, expectedLastSequence: UInt64?, subject: String,
        atomicBatch: AtomicBatchPosition? = nil, into out: inout [UInt8]
    ) throws {
        try check(headers, messageID: messageID, subject: subject)
        JSONWriter.writeRaw("NATS/1.0\r\n", into: &out)
        for (name, value) in headers where !isDedupeHeader(name) { line(name, value, into: &out) }
        JSONWriter.writeRaw("Nats-Msg-Id: ", into: &out)
        messageID.write(into: &out)
        JSONWriter.writeRaw("\r\n", into: &out)
        if let expectedLastSequence {
            JSONWriter.writeRaw("Nats-Expected-Last-Sequence: ", into: &out)
            JSONWriter.writeInt(Int64(truncatingIfNeeded: expectedLastSequence), into: &out)
            JSONWriter.writeRaw("\r\n", into: &out)
        }
        if let atomicBatch {
            JSONWriter.writeRaw("Nats-Batch-Id: ", into: &out)
            out.append(contentsOf: atomicBatch.id.utf8)
            JSONWriter.writeRaw("\r\nNats-Batch-Sequence: ", into: &out)
            JSONWriter.writeInt(Int64(atomicBatch.sequence), into: &out)
            JSONWriter.writeRaw("\r\n", into: &out)
            if atomicBatch.commits { JSONWriter.writeRaw("Nats-Batch-Commit: 1\r\n", into: &out) }
        }
        JSONWriter.writeRaw("\r\n", into: &out)
    }

    /// The length of the block ``write(_:messageID:expectedLastSequence:subject:into:)`` appends.
    static func length(_ headers: [(String, String)], messageID: MessageID, expectedLastSequence: UInt64?) -> Int {
        var length = 10 + 13 + messageID.utf8Count + 2 + 2  // NATS/1.0, Nats-Msg-Id, the empty line
        for (name, value) in headers where !isDedupeHeader(name) {
            length += name.utf8.count + 2 + value.utf8.count + 2
        }
        if let expectedLastSequence {
            length += 29 + JSONWriter.size(ofInt: Int64(truncatingIfNeeded: expectedLastSequence)) + 2
        }
        return length
    }

    /// ``check(_:_:subject:)`` for every header of `message`, its dedupe id included.
    static func check(_ message: OutgoingMessage) throws {
        try check(message.headers, messageID: message.dedupeID, subject: message.subject)
    }

    /// ``check(_:_:subject:)`` for `headers` (those the block writes) and the dedupe id.
    private static func check(_ headers: [(String, String)], messageID: MessageID, subject: String) throws {
        for (name, value) in headers where !isDedupeHeader(name) { try check(name, value, subject: subject) }
        // The index is digits: only the prefix can hold a byte the block cannot carry.
        try check("Nats-Msg-Id", messageID.prefix, subject: subject)
    }

    /// Refuses a header the block cannot carry as it is: a name that is empty or has a byte
    /// outside visible ASCII or a colon, or a value with CR, LF or NUL (which would end the
    /// line early and let the rest read as another header).
    static func check(_ name: String, _ value: String, subject: String) throws {
        let nameIsToken =
            !name.isEmpty
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
        guard nameIsToken else {
            throw CourierError(
                .invalidEvent,
                "header name '\(name)' of the message for '\(subject)' is empty or has a space, control character, colon or non-ASCII byte",
                input: name)
        }
        guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
            throw CourierError(
                .invalidEvent,
                "header '\(name)' of the message for '\(subject)' has a line break or NUL in its value",
                input: name)
        }
    }

    /// The headers written from the message's own fields: a copy in `headers` is left out, so
    /// the fields win, as `natsMsgHeader_Set` made them win before.
    private static func isDedupeHeader(_ name: String) -> Bool {
        name == "Nats-Msg-Id" || name == "Nats-Expected-Last-Sequence"
    }

    private static func line(_ name: String, _ value: String, into out: inout [UInt8]) {
        out.append(contentsOf: name.utf8)
        JSONWriter.writeRaw(": ", into: &out)
        out.append(contentsOf: value.utf8)
        JSONWriter.writeRaw("\r\n", into: &out)
    }
}

/// A `natsMsg` (the caller owns it) on `subject` with `reply`, holding `bytes`: a header block of
/// `headerLength` bytes (``HeaderBlock``) and then the payload. One allocation, one copy.
func makeNATSMessage(
    subject: String, reply: UnsafePointer<CChar>?, bytes: [UInt8], headerLength: Int
) throws -> OpaquePointer {
    var msg: OpaquePointer?
    let status = subject.withCString { subjectText in
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                natsMsg_create(
                    &msg, subjectText, Int32(subject.utf8.count), reply, reply.map { Int32(strlen($0)) } ?? 0,
                    chars.baseAddress, Int32(chars.count), Int32(headerLength))
            }
        }
    }
    guard status == NATS_OK, let msg else {
        throw CourierError.nats(
            status, "cannot create a message for '\(subject)'", input: subject, detail: natsLastErrorText())
    }
    return msg
}

/// A `natsMsg` for `message` with its headers, its dedupe id and expected last sequence (and
/// its place in an atomic batch, if any), and `reply` (the caller owns it). `scratch` is
/// working space, reused across calls.
func makeNATSMessage(
    _ message: OutgoingMessage, reply: UnsafePointer<CChar>?, atomicBatch: HeaderBlock.AtomicBatchPosition? = nil,
    scratch: inout [UInt8]
) throws -> OpaquePointer {
    scratch.removeAll(keepingCapacity: true)
    try HeaderBlock.write(
        message.headers, messageID: message.dedupeID, expectedLastSequence: message.expectedLastSequence,
        subject: message.subject, atomicBatch: atomicBatch, into: &scratch)
    let headerLength = scratch.count
    scratch.append(contentsOf: message.payload)
    return try makeNATSMessage(subject: message.subject, reply: reply, bytes: scratch, headerLength: headerLength)
}
#endif
