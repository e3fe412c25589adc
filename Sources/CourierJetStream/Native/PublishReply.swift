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

#endif
