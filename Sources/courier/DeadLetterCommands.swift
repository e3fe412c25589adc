#if NATS
import ArgumentParser
import Courier

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List and replay dead letters kept in the dead-letter stream.",
        discussion: """
            Dead letters live in a stream of their own (<stream>_DLQ on <prefix>-dlq.>), outside the \
            subjects ordinary subscriptions read: they are kept with their reason, attempts, consumer \
            and original subject and sequence until replayed or until the stream's retention removes them.
            """,
        subcommands: [DeadLetterListCommand.self, DeadLetterReplayCommand.self]
    )
}

struct DeadLetterListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Print the newest dead letters, oldest first.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "How many letters.")
    var limit: Int = 50

    @Flag(name: .long, help: "Print each letter as one JSON object.")
    var json = false

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        global.bootstrapLogging()
        let provider = try await connection.connect()
        do {
            let queue = provider.deadLetterQueue
            let letters = try await queue.stored(limit: limit)
            if !json { emit("\(letters.count) dead letter(s) in stream \(queue.stream)") }
            for stored in letters {
                let letter = stored.letter
                if json {
                    var object = try JSONValue(encoding: letter)
                    if case .object(var fields) = object {
                        fields["dlqSequence"] = .int(Int64(stored.sequence))
                        object = .object(fields)
                    }
                    emit(object.description)
                } else {
                    emit(
                        "#\(stored.sequence) \(letter.originalSubject) event \(letter.event.id): \(letter.reason) "
                            + "(attempts \(letter.attempts), consumer \(letter.consumer ?? "-")"
                            + "\(letter.streamSequence.map { ", stream sequence \($0)" } ?? ""))")
                }
            }
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
    }
}

struct DeadLetterReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Publish dead-lettered events again on their original subjects, then remove the letters.",
        discussion: """
            Each replayed event keeps its id and carries courier_replayed_from in its metadata; its \
            dedupe id comes from the letter, so replaying one letter twice stores the event once.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "Replay only the letter at this dead-letter stream sequence.")
    var sequence: UInt64?

    @Option(name: .long, help: "Replay the oldest of the newest N letters (without --sequence).")
    var limit: Int = 50

    @Flag(name: .long, help: "Keep the letters in the dead-letter stream after replaying them.")
    var keep = false

    func run() async throws {
        global.bootstrapLogging()
        let provider = try await connection.connect()
        do {
            let queue = provider.deadLetterQueue
            var letters = try await queue.stored(limit: sequence == nil ? limit : .max)
            if let sequence {
                letters = letters.filter { $0.sequence == sequence }
                guard !letters.isEmpty else {
                    throw CourierError(
                        .notFound, "no dead letter at sequence \(sequence) of stream \(queue.stream)",
                        input: String(sequence))
                }
            }
            for stored in letters {
                let ack = try await queue.replay(stored, keep: keep)
                emit(
                    "replayed #\(stored.sequence) \(stored.letter.event.id) to \(stored.letter.originalSubject) "
                        + "as sequence \(ack.sequence)\(ack.duplicate ? " (duplicate)" : "")")
            }
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
    }
}
#endif
