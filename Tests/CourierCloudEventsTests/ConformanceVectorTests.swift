#if CloudEvents
import CourierCloudEvents
import CourierCore
import Foundation
import Testing

/// The CloudEvents project's JSON-format conformance vectors (Vectors/, Apache-2.0, see
/// Vectors/SOURCE.md): every valid event decodes to its golden event, every invalid one is
/// rejected with an error naming an attribute.
@Suite("CloudEvents JSON conformance vectors")
struct ConformanceVectorTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let id: String
        let sampleID: String?
        let document: JSONValue
        var testDescription: String { id }
    }

    static func vectors(_ file: String, key: String) -> [Vector] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors/\(file)")
        guard let data = try? Data(contentsOf: url), let root = try? JSONValue(parsing: data),
            let tests = root["tests"]?.arrayValue
        else { return [] }
        return tests.compactMap { test in
            guard let id = test["id"]?.stringValue, let document = test[key] else { return nil }
            return Vector(id: id, sampleID: test["sampleId"]?.stringValue, document: document)
        }
    }

    static let validEvents = vectors("valid-events.json", key: "event")
    static let invalidEvents = vectors("invalid-events.json", key: "event")
    static let validBatches = vectors("valid-batches.json", key: "batch")
    static let invalidBatches = vectors("invalid-batches.json", key: "batch")

    /// The golden events of FORMAT-README.md, built in code.
    static func golden(_ sample: String) -> CloudEvent? {
        let minimal = CloudEvent(id: "minimal", source: "https://cloudevents.io", type: "io.cloudevents.test")
        var event = minimal
        switch sample {
        case "minimal": return minimal
        case "minimalWithTime":
            event.id = "minimalWithTime"
            event.time = try? CloudEventTime(rfc3339: "2018-04-05T17:31:00Z")
        case "minimalWithRelativeSource":
            event.id = "minimalWithRelativeSource"
            event.source = "#fragment"
        case "allCore":
            event.id = "allCore"
            event.datacontenttype = "text/plain"
            event.dataschema = "https://cloudevents.io/dataschema"
            event.subject = "tests"
            event.time = try? CloudEventTime(rfc3339: "2018-04-05T17:31:00Z")
        case "simpleTextData":
            event.id = "simpleTextData"
            event.datacontenttype = "text/plain"
            event.data = .text("Simple text")
        case "allExtensionTypes":
            event.id = "allExtensionTypes"
            event.extensions = [
                "extinteger": .integer(10), "extboolean": .boolean(true), "extstring": .string("text"),
                "extbinary": .binary([77, 97]),
                "exttimestamp": .timestamp(try! CloudEventTime(rfc3339: "2023-03-31T15:12:00Z")),
                "exturi": .uri("https://cloudevents.io"), "exturiref": .uriReference("//authority/path"),
            ]
        default: return nil
        }
        return event
    }

    /// Equality as the conformance rules define it: the JSON format carries no extension types,
    /// so extensions compare by their canonical strings; times compare as instants.
    static func sameEvent(_ a: CloudEvent, _ b: CloudEvent) -> Bool {
        var a = a
        var b = b
        a.extensions = a.extensions.mapValues { .string($0.canonicalString) }
        b.extensions = b.extensions.mapValues { .string($0.canonicalString) }
        return a == b
    }

    @Test("the vector files are present and complete")
    func vectorsLoad() {
        #expect(Self.validEvents.count == 10)
        #expect(Self.invalidEvents.count == 25)
        #expect(Self.validBatches.count == 5)
        #expect(Self.invalidBatches.count == 3)
    }

    @Test("valid events decode to their golden events and round-trip", arguments: validEvents)
    func valid(_ vector: Vector) throws {
        let event = try CloudEventJSON.decode(vector.document.jsonBytes())
        let golden = try #require(Self.golden(vector.sampleID ?? ""), "golden sample \(vector.sampleID ?? "?")")
        #expect(Self.sameEvent(event, golden), "decoded \(event) vs golden \(golden)")
        let again = try CloudEventJSON.decode(try CloudEventJSON.encode(event))
        #expect(again == event)
    }

    @Test("invalid events are rejected, naming an attribute", arguments: invalidEvents)
    func invalid(_ vector: Vector) throws {
        let error = #expect(throws: CourierError.self) { try CloudEventJSON.decode(vector.document.jsonBytes()) }
        #expect(error?.code == .invalidCloudEvent)
        #expect(error?.input?.isEmpty == false)
        #expect(error?.message.contains("'\(error?.input ?? "?")'") == true, "\(error?.message ?? "")")
    }

    @Test("valid batches decode", arguments: validBatches)
    func validBatch(_ vector: Vector) throws {
        let events = try CloudEventJSON.decodeBatch(vector.document.jsonBytes())
        #expect(events.count == vector.document.arrayValue?.count)
        #expect(try CloudEventJSON.decodeBatch(try CloudEventJSON.encodeBatch(events)) == events)
    }

    @Test("invalid batches are rejected", arguments: invalidBatches)
    func invalidBatch(_ vector: Vector) {
        let error = #expect(throws: CourierError.self) { try CloudEventJSON.decodeBatch(vector.document.jsonBytes()) }
        #expect(error?.code == .invalidCloudEvent)
    }
}
#endif
