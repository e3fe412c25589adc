import CourierCore
public import ServiceLifecycle

extension IngestBus: Service {
    /// Runs until graceful shutdown (or cancellation), then shuts the bus down: producers are
    /// refused from then on, every ring is drained into the adapter, the adapter is flushed and
    /// shut down. The final ``stats`` show whether anything was lost (they say so when
    /// ``Configuration/shutdownDeadline`` forced a lossy stop).
    ///
    /// ```swift
    /// let group = ServiceGroup(services: [ingest], gracefulShutdownSignals: [.sigterm], logger: logger)
    /// try await group.run()
    /// ```
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown(deadline: configuration.shutdownDeadline)
    }
}
