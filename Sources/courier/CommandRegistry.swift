import ArgumentParser

/// The subcommands compiled into this build (some need a trait).
enum CommandRegistry {
    static var all: [any ParsableCommand.Type] {
        var commands: [any ParsableCommand.Type] = [DemoCommand.self, BenchCommand.self]
        commands += natsCommands
        #if Encryption
        commands.append(KeygenCommand.self)
        #endif
        #if CloudEvents
        commands.append(CloudEventCommand.self)
        #endif
        #if NATS && Routing
        commands.append(RouteCommand.self)
        #endif
        return commands
    }

    #if NATS
    static let natsCommands: [any ParsableCommand.Type] = [
        PubCommand.self, SubCommand.self, HistoryCommand.self, InfoCommand.self, DeadLetterCommand.self,
    ]
    #else
    static let natsCommands: [any ParsableCommand.Type] = []
    #endif
}
