public import Instrumentation
import ServiceContextModule
import Synchronization
public import Tracing

/// How Courier carries distributed-tracing context with an event.
///
/// The bootstrapped instrument (`InstrumentationSystem.bootstrap(_:)`, e.g. swift-otel's W3C
/// propagator) injects the context into the event's `metadata`, which travels with the event on
/// every provider. W3C trace context (`traceparent`, `tracestate`) is also mirrored into NATS
/// message headers by the JetStream provider and into the CloudEvents distributed-tracing
/// extension by the CloudEvents layer, so a trace continues from publisher to subscriber to sink.
///
/// Spans a pipeline built with ``EventPipeline/traced()`` starts: `publish <subject>` (producer)
/// around each publish, `consume <subject>` (consumer) from each delivery until its ack, nak or
/// term, and
/// `route <subject>` in the broker, with OpenTelemetry messaging attributes.
public enum EventTracing {
    /// Whether an instrument or tracer has been bootstrapped. Without one, Courier skips span
    /// and context work entirely, so untraced applications pay one type check per operation.
    public static var isActive: Bool {
        !(InstrumentationSystem.instrument is NoOpInstrument)
    }

    /// The W3C trace-context keys mirrored into NATS headers and CloudEvents extensions.
    public static let propagatedKeys = ["traceparent", "tracestate"]

    /// Sets the OpenTelemetry messaging attributes of a span about `event`.
    public static func describe(_ span: any Span, event: Event, system: String, operation: String) {
        span.attributes["messaging.system"] = system
        span.attributes["messaging.operation"] = operation
        span.attributes["messaging.destination.name"] = event.subject
        span.attributes["messaging.message.id"] = event.id
        if !event.eventType.isEmpty { span.attributes["courier.event.type"] = event.eventType }
    }
}

extension Event {
    /// The trace context this event carries, extracted from its metadata by the bootstrapped
    /// instrument (a top-level context when it carries none). Continue a trace in a handler with
    /// `withSpan("handle", context: event.traceContext) { … }`.
    public var traceContext: ServiceContext {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(metadata, into: &context, using: MetadataCarrier())
        return context
    }

    /// A copy of the event carrying `context` in its metadata (as the bootstrapped instrument
    /// injects it), replacing any trace context it carried before.
    public func carryingTraceContext(_ context: ServiceContext) -> Event {
        var copy = self
        InstrumentationSystem.instrument.inject(context, into: &copy.metadata, using: MetadataCarrier())
        return copy
    }

    /// The W3C trace-context entries of the metadata, as message headers.
    public var traceHeaders: [(String, String)] {
        guard !metadata.isEmpty else { return [] }
        return EventTracing.propagatedKeys.compactMap { key in metadata[key].map { (key, $0) } }
    }
}

/// Reads and writes trace-context entries of an event's metadata.
struct MetadataCarrier: Injector, Extractor {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }

    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}

/// Wraps a delivery's handle so that its `consume` span lasts until the handler's decision:
/// `ack`, `nak` or `term` ends it (recording the decision), `inProgress` adds an event. A delivery
/// dropped undecided (its subscription closed) ends the span when the handle goes away.
final class TracedDelivery: DeliveryBackend {
    private let base: DeliveryHandle
    private let span: any Span
    private let ended = Atomic<Bool>(false)

    init(base: DeliveryHandle, span: any Span) {
        self.base = base
        self.span = span
    }

    var sequence: UInt64 { base.sequence }

    func send(_ action: AckAction) async throws {
        let decision: String
        switch action {
        case .inProgress:
            span.addEvent("in progress")
            try await base.finalize(action)
            return
        case .ack, .doubleAck: decision = "ack"
        case .nak: decision = "nak"
        case .term: decision = "term"
        }
        span.attributes["courier.delivery.decision"] = decision
        do {
            try await base.finalize(action)
        } catch {
            span.recordError(error)
            end()
            throw error
        }
        if decision == "term" { span.setStatus(SpanStatus(code: .error, message: "terminated")) }
        end()
    }

    private func end() {
        if !ended.exchange(true, ordering: .acquiringAndReleasing) { span.end() }
    }

    deinit {
        if !ended.load(ordering: .acquiring) {
            span.attributes["courier.delivery.decision"] = "none"
            span.end()
        }
    }
}
