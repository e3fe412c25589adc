#if NATS
import CourierJetStream
import Testing

@Suite("Delivery metadata from the acknowledgement subject")
struct AckMetadataTests {
    static func parse(_ subject: String) -> AckMetadata? {
        Array(subject.utf8).withUnsafeBufferPointer { AckMetadata(utf8: $0) }
    }

    @Test("both subject forms give delivery count, sequences, time and pending")
    func forms() throws {
        let old = try #require(Self.parse("$JS.ACK.EVENTS.worker.3.1042.977.1700000000123456789.12"))
        #expect(old.deliveryCount == 3)
        #expect(old.streamSequence == 1042)
        #expect(old.consumerSequence == 977)
        #expect(old.timestamp == 1_700_000_000_123_456_789)
        #expect(old.pending == 12)
        let new = try #require(Self.parse("$JS.ACK.hub.ACCHASH.EVENTS.worker.1.7.7.1700000000000000000.0"))
        #expect(new.deliveryCount == 1 && new.streamSequence == 7 && new.pending == 0)
        let suffixed = try #require(Self.parse("$JS.ACK.hub.ACCHASH.EVENTS.worker.2.8.9.1700000000000000000.5.r4nd"))
        #expect(suffixed.deliveryCount == 2 && suffixed.streamSequence == 8 && suffixed.consumerSequence == 9)
        #expect(suffixed.pending == 5)
        let largest = try #require(Self.parse("$JS.ACK.EVENTS.worker.1.18446744073709551615.1.0.0"))
        #expect(largest.streamSequence == UInt64.max)
        let emptySuffix = try #require(Self.parse("$JS.ACK.hub.ACCHASH.EVENTS.worker.4.8.9.1700000000000000000.5."))
        #expect(emptySuffix.deliveryCount == 4 && emptySuffix.pending == 5)
    }

    @Test("a subject that is not a well-formed acknowledgement subject gives nothing")
    func refused() {
        for subject in [
            "$JS.ACK.EVENTS.worker.3.1042.977.1700000000123456789",  // a token short
            "$JS.ACK.EVENTS.worker.3.10x2.977.1700000000123456789.12",  // not a number
            "$JS.ACK.EVENTS.worker.3..977.1700000000123456789.12",  // an empty number
            "$JS.NAK.EVENTS.worker.3.1042.977.1700000000123456789.12",  // not ACK
            "_INBOX.a.b.c.d.e.f.g.h",
            "$JS.ACK.EVENTS.worker.99999999999999999999.1.1.1.0",  // delivery count past UInt64
            "$JS.ACK.EVENTS.worker.3.1042.977.18446744073709551616.12",  // a timestamp past UInt64
            "$JS.ACK.EVENTS.worker.3.1042.977.1700000000123456789.000000000000000000012",  // 21 digits
            "$JSxACK.EVENTS.worker.3.1042.977.1700000000123456789.12",  // not `$JS.ACK.`
            "$JS.ACKxEVENTS.worker.3.1042.977.1700000000123456789.12.x",
            "$JS.ACK.hub.ACCHASH.EVENTS.worker.2.8.9.1700000000000000000.5.r4nd.more",  // 13 tokens
            "$JS.ACK.hub.ACCHASH.EVENTS.worker.2.8.9.1700000000000000000.x.r4nd",
            "$JS.ACK.",
            "",
        ] {
            #expect(Self.parse(subject) == nil, "\(subject)")
        }
    }
}
#endif
