/// One layer of an ``EventPipeline``: an ``EventProvider`` around another one that changes some of
/// its calls (validates, encrypts, traces, counts) and passes everything else through unchanged.
/// A layer never knows which layers surround it.
protocol ProviderLayer: EventProvider {
    /// The provider (or layer) this one wraps.
    var base: any EventProvider { get }
}

extension ProviderLayer {
    var name: String { base.name }
    var subjectPrefix: String { base.subjectPrefix }
    var deadLetters: any DlqHandler { base.deadLetters }

    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        try await base.publish(event, options: options)
    }

    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        await base.publishBatch(events, timeout: timeout)
    }

    func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        try await base.subscribe(filter, options: options)
    }

    func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        try await base.subscribeDurable(consumer: consumer, filter: filter, options: options)
    }

    func history(filter: String?, limit: Int) async throws -> [Event] {
        try await base.history(filter: filter, limit: limit)
    }

    func unsubscribe(consumer: String) async throws { try await base.unsubscribe(consumer: consumer) }
    func info() async throws -> ProviderInfo { try await base.info() }
    func health() async -> Bool { await base.health() }
    func buildSubject(category: String, topic: String) throws -> String {
        try base.buildSubject(category: category, topic: topic)
    }
    func categorySubject(_ category: String) -> String { base.categorySubject(category) }
    func shutdown() async { await base.shutdown() }
}

extension Result where Failure == CourierError {
    /// `self`, or `error` for a batch entry whose event a layer refused before publishing.
    static func refused(_ error: any Error) -> Result<Success, CourierError> {
        .failure(error as? CourierError ?? CourierError(.providerError, "\(error)"))
    }
}

/// Publishes the events a layer accepted and puts each refused event's error at its index.
func publishAccepted(
    _ events: [Event], timeout: Duration?, through base: any EventProvider,
    _ transform: (Event) throws -> Event
) async -> [Result<PublishAck, CourierError>] {
    var results = [Result<PublishAck, CourierError>?](repeating: nil, count: events.count)
    var accepted: [Event] = []
    var positions: [Int] = []
    accepted.reserveCapacity(events.count)
    for (index, event) in events.enumerated() {
        do {
            accepted.append(try transform(event))
            positions.append(index)
        } catch {
            results[index] = .refused(error)
        }
    }
    let published = await base.publishBatch(accepted, timeout: timeout)
    for (position, result) in zip(positions, published) { results[position] = result }
    return results.map { $0! }
}
