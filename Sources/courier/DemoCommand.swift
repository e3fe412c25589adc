import ArgumentParser
import Courier

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a narrated end-to-end scenario (embedded memory provider by default)."
    )

    @OptionGroup var global: GlobalOptions

    #if NATS
    /// With --server the scenario runs on NATS JetStream instead of the embedded provider.
    @OptionGroup(title: "NATS JetStream (with --server)") var connection: ConnectionOptions
    #endif

    func run() async throws {
        global.bootstrapLogging()
        #if NATS
        if connection.server != nil {
            var configuration = connection.configuration()
            configuration.connectionName = "courier-demo"
            let provider = try await JetStreamProvider.connect(configuration)
            print("Courier demo on NATS JetStream at \(connection.resolvedServer) (stream \(configuration.stream))\n")
            do {
                try await DemoScenario(provider: provider, deadLetters: provider.deadLetters, say: { print($0) }).run()
            } catch {
                await provider.shutdown()
                throw error
            }
            await provider.shutdown()
            return
        }
        #endif
        let dlq = MemoryDlqHandler()
        var configuration = MemoryProvider.Configuration()
        configuration.deadLetterHandler = dlq
        let provider = MemoryProvider(configuration: configuration)
        print("Courier demo on the embedded memory provider (stream \(configuration.stream))\n")
        try await DemoScenario(provider: provider, deadLetters: dlq, say: { print($0) }).run()
        await provider.shutdown()
    }
}

/// The demo: publish on dotted subjects, consume durably with manual ack, nak and redeliver, term
/// into the dead-letter queue, then history and counts.
struct DemoScenario {
    let provider: any EventProvider
    let deadLetters: any DlqHandler
    let say: @Sendable (String) -> Void

    func run() async throws {
        let bus = EventBus(pipeline: provider)
        let consumer = "demo-billing-\(UInt32.random(in: 0...UInt32.max))"
        let ordersFilter = provider.categorySubject("orders")

        say("1. A durable consumer '\(consumer)' subscribes to \(ordersFilter) with manual ack")
        let subscription = try await provider.subscribeDurable(
            consumer: consumer,
            filter: ordersFilter,
            options: SubscribeOptions(
                maxDeliver: 3, ackWait: .seconds(5), deliverPolicy: .new, deadLetterHandler: deadLetters)
        )

        say("\n2. Publishing events on dotted subjects")
        let published: [(String, String, String, JSONValue)] = [
            ("market", "forex.eur", "EUR/USD 1.0842", ["pair": "EUR/USD", "rate": 1.0842]),
            ("orders", "created", "order o-1001 created", ["order": "o-1001", "total": 42.5]),
            ("orders", "created", "order o-1002 created", ["order": "o-1002", "total": 17]),
            ("orders", "created", "order o-1003 created", ["order": "o-1003", "total": -5]),
            ("market", "crypto.btc", "BTC/USD 97000", ["pair": "BTC/USD", "rate": 97000]),
        ]
        var ours: Set<String> = []
        for (category, topic, summary, payload) in published {
            let event = Event(
                subject: try provider.buildSubject(category: category, topic: topic),
                category: category,
                payload: payload,
                summary: summary,
                source: "demo"
            )
            let ack = try await bus.pipeline.publish(event)
            ours.insert(event.id)
            say("   #\(ack.sequence) \(event.subject)  \(summary)")
        }

        say("\n3. Consuming with manual decisions")
        let first = try await next(subscription)
        say("   received #\(first.sequence) \(first.event.summary) (delivery \(first.deliveryCount)) -> ack")
        try await first.ack()

        let second = try await next(subscription)
        say(
            "   received #\(second.sequence) \(second.event.summary) (delivery \(second.deliveryCount)) -> nak(delay: 500ms), payment service busy"
        )
        try await second.nak(delay: .milliseconds(500))

        let third = try await next(subscription)
        say(
            "   received #\(third.sequence) \(third.event.summary) (delivery \(third.deliveryCount)) -> term: negative total is invalid"
        )
        try await third.term(reason: "negative order total")

        let redelivered = try await next(subscription)
        say(
            "   redelivered #\(redelivered.sequence) \(redelivered.event.summary) (delivery \(redelivered.deliveryCount)) -> ack"
        )
        try await redelivered.ack()
        await subscription.close()

        say("\n4. Dead-letter queue")
        let letters = try await waitForLetters(1, from: ours)
        for letter in letters {
            say(
                "   \(letter.originalSubject) \(letter.event.summary): \(letter.reason) after \(letter.attempts) attempt(s)"
            )
        }

        say("\n5. History (newest 10, oldest first)")
        for event in try await bus.listEvents(limit: 10) where ours.contains(event.id) {
            say("   \(event.subject)  \(event.summary)")
        }

        say("\n6. Counts by category")
        let counts = try await bus.counts(limit: 1000)
        for (category, count) in counts.categories.sorted(by: { $0.key < $1.key }) {
            say("   \(category): \(count)")
        }
        say("   total: \(counts.total)")
        try? await provider.unsubscribe(consumer: consumer)
        say("\nDemo complete.")
    }

    private func next(_ subscription: EventSubscription) async throws -> PendingEvent {
        guard let pending = try await subscription.next(timeout: .seconds(10)) else {
            throw CourierError(
                .timeout, "demo: no delivery within 10 s on \(subscription.filter)", input: subscription.filter)
        }
        return pending
    }

    private func waitForLetters(_ count: Int, from ids: Set<String>) async throws -> [DeadLetterEvent] {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let letters = try await deadLetters.list(limit: 100).filter { ids.contains($0.event.id) }
            if letters.count >= count { return letters }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CourierError(.timeout, "demo: dead letter did not arrive within 10 s")
    }
}
