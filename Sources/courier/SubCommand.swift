#if NATS
import ArgumentParser
import Courier

struct SubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sub",
        abstract: "Subscribe to a subject filter on JetStream and print each event.",
        discussion: """
            Without --durable the subscription is ephemeral and sees new events only. With --durable \
            it reads the named durable consumer (created on first use, from the first stored event) \
            and resumes where it left off next time.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Subject filter, NATS wildcards allowed (events.orders.>).")
    var filter: String

    @Option(name: .long, help: "Durable consumer name.")
    var durable: String?

    @Flag(name: .long, help: "Acknowledge each event only after it was printed (at-least-once).")
    var manualAck = false

    @Option(name: .long, help: "Exit after this many events.")
    var count: Int?

    @Option(name: .long, help: "Exit after this many seconds.")
    var timeout: Double?

    @Flag(name: .long, help: "Print each event as one line of wire JSON.")
    var json = false

    #if Encryption
    @OptionGroup var keys: KeyOptions
    #endif

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        global.bootstrapLogging()
        let provider = try await connection.connect()
        let subscription: EventSubscription
        do {
            let pipeline = try layered(provider)
            subscription =
                if let durable {
                    try await pipeline.subscribeDurable(consumer: durable, filter: filter)
                } else {
                    try await pipeline.subscribe(filter)
                }
        } catch {
            await provider.shutdown()
            throw error
        }
        let deadline = timeout.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
        var received = 0
        do {
            while count.map({ received < $0 }) ?? true {
                let remaining = deadline.map { $0 - ContinuousClock.now } ?? .seconds(3600)
                guard remaining > .zero, let pending = try await subscription.next(timeout: remaining) else { break }
                if !manualAck { try await pending.ack() }
                print(pending)
                if manualAck { try await pending.ack() }
                received += 1
            }
        } catch {
            await subscription.close()
            await provider.shutdown()
            throw error
        }
        await subscription.close()
        await provider.shutdown()
    }

    private func layered(_ provider: JetStreamProvider) throws -> EventPipeline {
        #if Encryption
        try keys.pipeline(over: provider)
        #else
        EventPipeline(base: provider)
        #endif
    }

    private func print(_ pending: PendingEvent) {
        if json {
            emit(wireText(pending.event))
        } else {
            let event = pending.event
            emit("#\(pending.sequence) [\(pending.deliveryCount)] \(event.subject) \(event.summary) \(event.payload)")
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Print the newest stored events (of one category), oldest first."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Only this category.")
    var category: String?

    @Option(name: .long, help: "How many events.")
    var limit: Int = 20

    @Flag(name: .long, help: "Print each event as one line of wire JSON.")
    var json = false

    #if Encryption
    @OptionGroup var keys: KeyOptions
    #endif

    func run() async throws {
        global.bootstrapLogging()
        let provider = try await connection.connect()
        do {
            #if Encryption
            let pipeline = try keys.pipeline(over: provider)
            #else
            let pipeline = EventPipeline(base: provider)
            #endif
            let events = try await EventBus(pipeline: pipeline).listEvents(category: category, limit: limit)
            for event in events {
                emit(json ? wireText(event) : "\(event.subject) \(event.summary) \(event.payload)")
            }
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
    }
}

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Print stream and connection facts."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() async throws {
        global.bootstrapLogging()
        let provider = try await connection.connect()
        let info: ProviderInfo
        do {
            info = try await provider.info()
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
        if json {
            emit(try JSONValue(encoding: info).description)
        } else {
            emit("provider:  \(info.provider) (\(info.state))")
            emit("stream:    \(info.stream) capturing \(info.subjectPrefix).>")
            emit(
                "messages:  \(info.messages) (\(info.bytes) bytes), sequences \(info.firstSequence)…\(info.lastSequence)"
            )
            emit("consumers: \(info.consumers)")
            if let replicaSet = info.replicaSet {
                emit(
                    "cluster:   \(replicaSet.cluster ?? "?"), leader \(replicaSet.leader ?? "none (electing)"), \(replicaSet.followers.count + 1) replicas"
                )
                for follower in replicaSet.followers {
                    let state = follower.offline ? "offline" : follower.current ? "current" : "catching up"
                    emit(
                        "  replica \(follower.name): \(state), lag \(follower.lag), seen \(Double(follower.lastSeenNanoseconds) / 1e9) s ago"
                    )
                }
            }
            for (key, value) in info.details.sorted(by: { $0.key < $1.key }) { emit("\(key): \(value)") }
        }
    }
}
#endif
