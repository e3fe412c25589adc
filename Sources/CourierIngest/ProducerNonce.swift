import CourierCore

/// The identity an ``IngestBus`` stamps on its batches (the first part of every dedupe id).
///
/// - ``random``: a fresh random non-zero 64-bit value per bus.
/// - ``fixed(_:)``: a value you manage.
/// - ``persisted(path:)``: read from a file, created with a random value on first use, so a
///   restarted producer keeps its identity. The file also counts starts: each start's shard
///   sequences begin at `generation << 40`, so a restarted producer never reuses a dedupe id of
///   an earlier run (which a deduplicating store would otherwise discard).
public struct ProducerNonce: Sendable, Hashable {
    enum Source: Sendable, Hashable {
        case random
        case fixed(UInt64)
        case persisted(String)
    }

    let source: Source

    /// A fresh random nonce.
    public static let random = ProducerNonce(source: .random)

    /// A nonce you choose (must not be zero).
    public static func fixed(_ value: UInt64) -> ProducerNonce { ProducerNonce(source: .fixed(value)) }

    /// A nonce kept in the file at `path`.
    public static func persisted(path: String) -> ProducerNonce { ProducerNonce(source: .persisted(path)) }

    /// The nonce and the first shard sequence number of this start.
    func resolve() throws -> (nonce: UInt64, sequenceBase: UInt64) {
        switch source {
        case .random:
            return (Self.randomNonZero(), 0)
        case .fixed(let value):
            guard value != 0 else {
                throw CourierError(.invalidConfiguration, "the producer nonce must not be zero", input: "producerNonce")
            }
            return (value, 0)
        case .persisted(let path):
            var nonce = Self.randomNonZero()
            var generation: UInt64 = 0
            if let bytes = try FileStateStore.read(path) {
                let fields = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace)
                guard fields.count == 2, let stored = UInt64(fields[0], radix: 16), stored != 0,
                    let starts = UInt64(fields[1])
                else {
                    throw CourierError(
                        .invalidConfiguration,
                        "producer nonce file \(path) is not '<16 hex digits> <start count>'",
                        input: path
                    )
                }
                nonce = stored
                generation = starts + 1
            }
            guard generation < 1 << 23 else {
                throw CourierError(
                    .invalidConfiguration, "producer nonce file \(path) has counted too many starts", input: path)
            }
            try FileStateStore.atomicWrite(Array("\(Hex.encode64(nonce)) \(generation)\n".utf8), to: path)
            return (nonce, generation << 40)
        }
    }

    static func randomNonZero() -> UInt64 {
        var value: UInt64 = 0
        while value == 0 { value = UInt64.random(in: 1...UInt64.max) }
        return value
    }
}
