import ArgumentParser
import Courier
import Logging

@main
struct CourierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "courier",
        abstract: "Publish, consume, inspect and route Courier events.",
        discussion: """
            Without --server, commands that need a provider use the embedded memory provider. With \
            --server (or NATS_URL) they use NATS JetStream.
            """,
        version: "0.1.0",
        subcommands: CommandRegistry.all
    )
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
    }

    func bootstrapLogging() {
        LoggingBootstrap.once(level: Logger.Level(rawValue: logLevel) ?? .warning)
    }
}

/// Installs a stderr log handler once per process.
enum LoggingBootstrap {
    nonisolated(unsafe) private static var done = false

    static func once(level: Logger.Level) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
