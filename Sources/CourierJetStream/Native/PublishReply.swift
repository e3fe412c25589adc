#if NATS
internal import CNATS
import CourierCore

/// A JetStream publish acknowledgement: `{"stream":"S","seq":5}`, with `"duplicate":true` when
/// the id was stored before, or `{"error":{"code":…,"err_code":…,"description":…}}`.
enum PublishReply: Equatable {
    case stored(PublishAck)
    case refused(code: Int, description: String)

    /// Parses `bytes`; nil when they are not an acknowledgement. `stream` is the expected
    /// stream name, reused instead of a new string when the reply names it.
    init?(parsing bytes: UnsafeBufferPointer<UInt8>, stream: String) {
        var reader = JSONReader(bytes)
        var name: String?
        var sequence: UInt64?
        var duplicate = false
        var refusal: (Int, String)?
        do {
            try reader.readObjectWithRawKeys { reader, key in
                if key.equals("stream") {
                    name = try reader.readString(reusing: stream)
                } else if key.equals("seq") {
                    guard case .int(let value) = try reader.readNumber(), value >= 0 else {
                        throw reader.error("a sequence must be a non-negative integer")
                    }
                    sequence = UInt64(value)
                } else if key.equals("duplicate") {
                    duplicate = try reader.readValue().boolValue ?? false
                } else if key.equals("error") {
                    let error = try reader.readValue()
                    refusal = (
                        Int(error["err_code"]?.intValue ?? 0),
                        error["description"]?.stringValue ?? "refused"
                    )
                } else {
                    try reader.skipValue()
                }
            }
            try reader.expectEnd()
        } catch {
            return nil
        }
        if let (code, description) = refusal {
            self = .refused(code: code, description: description)
        } else if let name, let sequence {
            self = .stored(PublishAck(sequence: sequence, stream: name, duplicate: duplicate))
        } else {
            return nil
        }
    }
}

/// A `natsMsg` for `message` with its headers and `reply` subject (the caller owns it).
func makeNATSMessage(_ message: OutgoingMessage, reply: UnsafePointer<CChar>? = nil) throws -> OpaquePointer {
    try makeNATSMessage(subject: message.subject, payload: message.payload, headers: message.headers, reply: reply)
}

/// A `natsMsg` with a copy of `payload` and `headers` (the caller owns it).
func makeNATSMessage(
    subject: String, payload: [UInt8], headers: [(String, String)], reply: UnsafePointer<CChar>? = nil
) throws -> OpaquePointer {
    var msg: OpaquePointer?
    let status = payload.withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { chars in
            // withCString: an implicit String-to-pointer conversion copies the string first.
            subject.withCString { natsMsg_Create(&msg, $0, reply, chars.baseAddress, Int32(chars.count)) }
        }
    }
    guard status == NATS_OK, let msg else {
        throw CourierError.nats(
            status, "cannot create a message for '\(subject)'", input: subject, detail: natsLastErrorText())
    }
    for (name, value) in headers {
        let headerStatus = name.withCString { name in value.withCString { natsMsgHeader_Add(msg, name, $0) } }
        guard headerStatus == NATS_OK else {
            natsMsg_Destroy(msg)
            throw CourierError.nats(
                headerStatus, "cannot set header '\(name)'", input: name, detail: natsLastErrorText())
        }
    }
    return msg
}

#endif
