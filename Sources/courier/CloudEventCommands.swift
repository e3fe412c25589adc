#if CloudEvents
import ArgumentParser
import Courier
import Foundation

struct CloudEventCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ce",
        abstract: "Validate and convert CloudEvents (JSON format) read from standard input.",
        subcommands: [Validate.self, Encode.self, Decode.self]
    )

    static func readStandardInput() -> [UInt8] {
        Array(FileHandle.standardInput.readDataToEndOfFile())
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a CloudEvent (or a batch, a JSON array) against the CloudEvents 1.0 rules.",
            discussion:
                "Exits 0 and prints 'valid' for a valid document; exits 1 with the error naming the attribute otherwise."
        )

        func run() throws {
            let input = readStandardInput()
            do {
                if case .array = try JSONValue(parsing: input) {
                    let events = try CloudEventJSON.decodeBatch(input)
                    print("valid batch of \(events.count) CloudEvent(s)")
                } else {
                    let event = try CloudEventJSON.decode(input)
                    print("valid CloudEvent \(event.id) of type \(event.type)")
                }
            } catch let error as CourierError {
                FileHandle.standardError.write(Data("invalid: \(error.message)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn a Courier event (wire JSON) into a structured-mode CloudEvent (JSON format)."
        )

        func run() throws {
            let event = try Event(wireJSON: readStandardInput())
            print(String(decoding: try CloudEventJSON.encode(CloudEvent(event: event)), as: UTF8.self))
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn a structured-mode CloudEvent (JSON format) into a Courier event (wire JSON)."
        )

        @Option(name: .long, help: "Subject prefix for events whose subject attribute is not a Courier subject.")
        var prefix: String = "events"

        func run() throws {
            let cloudEvent = try CloudEventJSON.decode(readStandardInput())
            print(String(decoding: try Event(cloudEvent: cloudEvent, prefix: prefix).wireJSON(), as: UTF8.self))
        }
    }
}
#endif
