/// Checks every typed event against its schema before it is published; an event that breaks
/// its schema is refused with ``CourierError/Code/validationFailed`` and never stored.
struct ValidationLayer: ProviderLayer {
    let base: any EventProvider
    let registry: any SchemaRegistry
    let metrics: EventMetrics?

    private func validated(_ event: Event) throws -> Event {
        do {
            try registry.validate(event)
            return event
        } catch {
            metrics?.recordValidationError()
            throw error
        }
    }

    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        try await base.publish(validated(event), options: options)
    }

    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        await publishAccepted(events, timeout: timeout, through: base, validated)
    }
}
