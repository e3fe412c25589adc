#if NATS
import CourierCore
import Testing

@testable import CourierJetStream

/// The header block Courier writes itself for every published message. No server needed; the
/// integration tests send these blocks to real servers.
@Suite("NATS header block")
struct HeaderBlockTests {
    static func block(
        _ headers: [(String, String)], id: MessageID = MessageID("evt-1"), expected: UInt64? = nil
    ) throws -> String {
        var out: [UInt8] = []
        try HeaderBlock.write(headers, messageID: id, expectedLastSequence: expected, subject: "events.a.b", into: &out)
        #expect(out.count == HeaderBlock.length(headers, messageID: id, expectedLastSequence: expected))
        return String(decoding: out, as: UTF8.self)
    }

    @Test("the block: version line, a line per header, the dedupe headers from the message's fields, an empty line")
    func layout() throws {
        #expect(try Self.block([]) == "NATS/1.0\r\nNats-Msg-Id: evt-1\r\n\r\n")
        #expect(
            try Self.block([("traceparent", "00-ab-cd-01"), ("ce-type", "a b")], expected: 42)
                == "NATS/1.0\r\ntraceparent: 00-ab-cd-01\r\nce-type: a b\r\nNats-Msg-Id: evt-1\r\n"
                + "Nats-Expected-Last-Sequence: 42\r\n\r\n")
        // A dedupe header among the extra headers is left out: the message's own fields win.
        #expect(
            try Self.block([("Nats-Msg-Id", "other"), ("Nats-Expected-Last-Sequence", "7")], expected: 3)
                == "NATS/1.0\r\nNats-Msg-Id: evt-1\r\nNats-Expected-Last-Sequence: 3\r\n\r\n")
        #expect(try Self.block([], id: MessageID("é")) == "NATS/1.0\r\nNats-Msg-Id: é\r\n\r\n")
    }

    @Test("an ingest dedupe id is its batch's prefix and the event's index, written without a string of its own")
    func indexedID() throws {
        for (index, text) in [(0, "0"), (7, "7"), (999, "999"), (Int.max, "\(Int.max)")] {
            let id = MessageID(prefix: "00ff00ff00ff00ff:1:4096:", index: index)
            #expect(id.text == "00ff00ff00ff00ff:1:4096:" + text)
            #expect(id.utf8Count == id.text.utf8.count)
            #expect(try Self.block([], id: id) == "NATS/1.0\r\nNats-Msg-Id: \(id.text)\r\n\r\n")
        }
        var message = OutgoingMessage(
            subject: "events.a.b", payload: [], dedupeID: MessageID(prefix: "p:", index: 12))
        #expect(message.messageID == "p:12")
        message.messageID = "other"
        #expect(message.dedupeID.index == nil && message.messageID == "other")
    }

    @Test("atomic batch headers: id and position on every message, the commit on the last")
    func atomicBatch() throws {
        for (commits, commitLine) in [(false, ""), (true, "Nats-Batch-Commit: 1\r\n")] {
            var out: [UInt8] = []
            try HeaderBlock.write(
                [], messageID: MessageID("m-7"), expectedLastSequence: nil, subject: "events.a.b",
                atomicBatch: (id: "n.3", sequence: 7, commits: commits), into: &out)
            #expect(
                String(decoding: out, as: UTF8.self)
                    == "NATS/1.0\r\nNats-Msg-Id: m-7\r\nNats-Batch-Id: n.3\r\nNats-Batch-Sequence: 7\r\n\(commitLine)\r\n"
            )
        }
    }

    @Test(
        "a value with a line break or NUL, or a name that is not a token, is refused naming the header",
        arguments: [
            ("traceparent", "00-ab\r\nNats-Msg-Id: forged"), ("traceparent", "a\nb"), ("tracestate", "a\u{0}b"),
            ("", "v"), ("bad name", "v"), ("bad:name", "v"), ("naïve", "v"), ("tab\tname", "v"),
        ])
    func refused(name: String, value: String) throws {
        var out: [UInt8] = []
        let error = #expect(throws: CourierError.self) {
            try HeaderBlock.write(
                [(name, value)], messageID: MessageID("evt-1"), expectedLastSequence: nil, subject: "s", into: &out)
        }
        #expect(error?.code == .invalidEvent)
        #expect(error?.input == name)
        #expect(out.isEmpty, "nothing is written when a header is refused")
    }

    @Test("a dedupe id with a line break is refused too")
    func refusedID() {
        var out: [UInt8] = []
        let error = #expect(throws: CourierError.self) {
            try HeaderBlock.write(
                [], messageID: MessageID("evt\r\nx"), expectedLastSequence: nil, subject: "s", into: &out)
        }
        #expect(error?.input == "Nats-Msg-Id")
    }
}
#endif
