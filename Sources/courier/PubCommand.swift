#if NATS
import ArgumentParser
import Courier

struct PubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub",
        abstract: "Publish events to <prefix>.<category>.<topic> on JetStream and print their sequences."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The category (one subject token).")
    var category: String

    @Argument(help: "The topic (one or more dotted tokens).")
    var topic: String

    @Option(name: .long, help: "The payload as JSON.")
    var payload: String = "{}"

    @Option(name: .long, help: "A one-line summary.")
    var summary: String = ""

    @Option(name: .long, help: "The producer name.")
    var source: String = "courier-cli"

    @Option(name: .long, help: "The event type (validated schema name); empty for untyped.")
    var type: String = ""

    @Option(name: .long, help: "The event type version.")
    var version: Int = 1

    @Option(name: .long, help: "Dedupe id (Nats-Msg-Id); with --count the same id is used for every copy.")
    var msgID: String?

    @Option(name: .long, help: "How many events to publish.")
    var count: Int = 1

    @Flag(name: .long, help: "Print one JSON object per event with sequence and duplicate.")
    var json = false

    #if Encryption
    @Option(name: .long, help: "Encrypt payloads with the key in this file (AES-256-GCM).")
    var encryptKey: String?
    #endif

    #if CloudEvents
    @Option(name: .long, help: "Publish as a CloudEvent in this NATS content mode: binary or structured.")
    var cloudevent: String?
    #endif

    func validate() throws {
        #if CloudEvents
        if let cloudevent, CloudEventMode(named: cloudevent) == nil {
            throw ValidationError("--cloudevent must be 'binary' or 'structured', got '\(cloudevent)'")
        }
        #endif
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard version >= 1 else { throw ValidationError("--version must be at least 1") }
    }

    func run() async throws {
        global.bootstrapLogging()
        let body: JSONValue
        do {
            body = try JSONValue(parsing: payload)
        } catch let error as CourierError {
            throw CourierError(.invalidJSON, "--payload is not valid JSON: \(error.message)", input: payload)
        }
        // Validate the subject before connecting.
        let events = try (0..<count).map { _ in
            try Event(
                prefix: connection.prefix,
                category: category,
                topic: topic,
                eventType: type,
                version: version,
                payload: body,
                summary: summary,
                source: source
            )
        }
        let provider = try await connection.connect()
        var pipeline = EventPipeline(base: provider)
        #if Encryption
        if let encryptKey {
            pipeline = pipeline.encrypting(
                AESGCMEncryptor(keyRing: try KeyRing([EncryptionKey.load(file: encryptKey)])))
        }
        #endif
        do {
            for event in events {
                let ack: PublishAck
                #if CloudEvents
                if let mode = cloudevent.flatMap(CloudEventMode.init(named:)) {
                    ack = try await pipeline.publish(
                        CloudEvent(event: event), mode: mode, options: PublishOptions(messageID: msgID))
                } else {
                    ack = try await pipeline.publish(event, options: PublishOptions(messageID: msgID))
                }
                #else
                ack = try await pipeline.publish(event, options: PublishOptions(messageID: msgID))
                #endif
                if json {
                    emit(
                        #"{"sequence":\#(ack.sequence),"duplicate":\#(ack.duplicate),"id":"\#(event.id)","subject":"\#(event.subject)"}"#
                    )
                } else {
                    emit("\(ack.sequence)\(ack.duplicate ? " (duplicate)" : "") \(event.subject)")
                }
            }
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
    }
}
#endif
