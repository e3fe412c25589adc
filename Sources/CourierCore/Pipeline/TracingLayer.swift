import ServiceContextModule
import Tracing

/// Distributed tracing: a `publish <subject>` span around each publish, whose context travels
/// in the event's metadata (and, on JetStream, in W3C headers), and a `consume <subject>` span
/// from each delivery until the handler's ack, nak or term. Without a bootstrapped instrument it
/// costs one check per call (``EventTracing/isActive``).
struct TracingLayer: ProviderLayer {
    let base: any EventProvider

    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        guard EventTracing.isActive else { return try await base.publish(event, options: options) }
        // A task with a trace continues it; otherwise the event's own context (a re-published
        // event) does.
        let parent = ServiceContext.current ?? event.traceContext
        return try await withSpan("publish \(event.subject)", context: parent, ofKind: .producer) { span in
            EventTracing.describe(span, event: event, system: base.name, operation: "publish")
            return try await base.publish(event.carryingTraceContext(span.context), options: options)
        }
    }

    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        guard EventTracing.isActive else { return await base.publishBatch(events, timeout: timeout) }
        // One span for the batch; every event carries its context.
        let parent = ServiceContext.current ?? .topLevel
        return await withSpan("publish batch", context: parent, ofKind: .producer) { span in
            span.attributes["messaging.system"] = base.name
            span.attributes["messaging.batch.message_count"] = events.count
            return await base.publishBatch(events.map { $0.carryingTraceContext(span.context) }, timeout: timeout)
        }
    }

    func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        traced(try await base.subscribe(filter, options: options))
    }

    func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        traced(try await base.subscribeDurable(consumer: consumer, filter: filter, options: options))
    }

    /// The consume span is the parent of whatever the handler does with the event (its context
    /// replaces the publisher's in the delivered event's metadata) and lasts until the decision.
    private func traced(_ subscription: EventSubscription) -> EventSubscription {
        let system = base.name
        return subscription.mapDeliveries { pending in
            guard EventTracing.isActive else { return pending }
            let event = pending.event
            let span = startSpan("consume \(event.subject)", context: event.traceContext, ofKind: .consumer)
            EventTracing.describe(span, event: event, system: system, operation: "process")
            span.attributes["messaging.courier.delivery_count"] = Int(pending.deliveryCount)
            span.attributes["messaging.courier.sequence"] = Int(truncatingIfNeeded: pending.sequence)
            return pending.tracing(span, event: event.carryingTraceContext(span.context))
        }
    }
}
