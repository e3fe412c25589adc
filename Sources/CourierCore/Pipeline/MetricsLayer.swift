/// Counts publishes (with their duration), failures, subscriptions, deliveries and dead letters in
/// an ``EventMetrics`` (also reported through swift-metrics).
struct MetricsLayer: ProviderLayer {
    let base: any EventProvider
    let metrics: EventMetrics

    var deadLetters: any DlqHandler { CountingDlqHandler(base: base.deadLetters, metrics: metrics) }

    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        let started = ContinuousClock.now
        do {
            let ack = try await base.publish(event, options: options)
            metrics.recordPublish(nanoseconds: (ContinuousClock.now - started).nanoseconds)
            return ack
        } catch {
            metrics.recordPublishError()
            throw error
        }
    }

    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        let started = ContinuousClock.now
        let results = await base.publishBatch(events, timeout: timeout)
        let each = (ContinuousClock.now - started).nanoseconds / Int64(max(1, events.count))
        for result in results {
            if case .success = result { metrics.recordPublish(nanoseconds: each) } else { metrics.recordPublishError() }
        }
        return results
    }

    func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        counted(try await base.subscribe(filter, options: countedLetters(options)))
    }

    func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        counted(try await base.subscribeDurable(consumer: consumer, filter: filter, options: countedLetters(options)))
    }

    func unsubscribe(consumer: String) async throws {
        try await base.unsubscribe(consumer: consumer)
        metrics.recordUnsubscribe()
    }

    private func countedLetters(_ options: SubscribeOptions) -> SubscribeOptions {
        var options = options
        options.deadLetterHandler = CountingDlqHandler(
            base: options.deadLetterHandler ?? base.deadLetters, metrics: metrics)
        return options
    }

    private func counted(_ subscription: EventSubscription) -> EventSubscription {
        metrics.recordSubscribe()
        let metrics = self.metrics
        return subscription.mapDeliveries { pending in
            metrics.recordConsume(latencyNanoseconds: (Event.currentTimestamp() - pending.event.timestamp) * 1_000_000)
            return pending
        }
    }
}

/// Counts dead letters in an ``EventMetrics`` on their way to the real handler.
struct CountingDlqHandler: DlqHandler {
    let base: any DlqHandler
    let metrics: EventMetrics

    func handle(_ letter: DeadLetterEvent) async throws {
        do {
            try await base.handle(letter)
            metrics.recordDeadLetter()
        } catch {
            metrics.recordDeadLetterError()
            throw error
        }
    }

    func list(limit: Int) async throws -> [DeadLetterEvent] { try await base.list(limit: limit) }
    func count() async throws -> Int { try await base.count() }
}
