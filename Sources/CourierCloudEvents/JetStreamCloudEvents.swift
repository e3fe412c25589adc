#if CloudEvents && NATS
public import CourierCore
public import CourierJetStream

/// A CloudEvent delivered by a JetStream subscription, awaiting a decision.
public struct PendingCloudEvent: Sendable {
    /// The event.
    public let cloudEvent: CloudEvent
    /// The message it arrived in (subject, headers, sequence, delivery count, and the decisions).
    public let message: PendingMessage

    /// Marks it processed.
    public func ack() async throws { try await message.ack() }
    /// Asks for redelivery; after `maxDeliver` attempts it is dead-lettered instead.
    public func nak(delay: Duration? = nil) async throws { try await message.nak(delay: delay) }
    /// Stops delivery for good; with a reason, dead-letters it.
    public func term(reason: String? = nil) async throws { try await message.term(reason: reason) }
}

/// A JetStream subscription yielding CloudEvents in either content mode (detected per message
/// from `Content-Type`). A message that is not a valid CloudEvent is dead-lettered with the
/// reason and never handed out.
public struct CloudEventSubscription: Sendable {
    let messages: MessageSubscription

    /// The next CloudEvent; `nil` once closed.
    public func next() async throws -> PendingCloudEvent? {
        while let message = await messages.next() {
            do {
                return PendingCloudEvent(
                    cloudEvent: try NATSBinding.decode(headers: message.headers, payload: message.payload),
                    message: message)
            } catch let error as CourierError {
                try await message.term(reason: "not a valid CloudEvent: \(error.message)")
            }
        }
        return nil
    }

    /// The next CloudEvent, or `nil` when none arrives within `timeout`.
    public func next(timeout: Duration) async throws -> PendingCloudEvent? {
        let deadline = ContinuousClock.now + timeout
        while case let remaining = deadline - ContinuousClock.now, remaining > .zero,
            let message = await messages.next(timeout: remaining)
        {
            do {
                return PendingCloudEvent(
                    cloudEvent: try NATSBinding.decode(headers: message.headers, payload: message.payload),
                    message: message)
            } catch let error as CourierError {
                try await message.term(reason: "not a valid CloudEvent: \(error.message)")
            }
        }
        return nil
    }

    /// Stops delivery.
    public func close() async { await messages.close() }
}

extension EventPipeline {
    /// Publishes `cloudEvent` with the CloudEvents NATS binding in `mode` (for consumers that
    /// read CloudEvents off the wire), after the pipeline's validation; see
    /// `JetStreamProvider/publish(_:mode:subject:options:)`.
    ///
    /// - Throws: `invalidConfiguration` when the pipeline is not over a JetStream provider, or
    ///   when it encrypts: the binding puts the data on the wire as it is, so an encrypting
    ///   pipeline refuses it (`EventProvider/publish(_:options:)` stores the CloudEvent as an
    ///   encrypted event instead).
    @discardableResult
    public func publish(
        _ cloudEvent: CloudEvent,
        mode: CloudEventMode,
        subject: String? = nil,
        options: PublishOptions = PublishOptions()
    ) async throws -> PublishAck {
        guard let jetstream = base as? JetStreamProvider else {
            throw CourierError(
                .invalidConfiguration, "the CloudEvents NATS binding needs a pipeline over the JetStream provider",
                input: base.name)
        }
        guard layers.encryptor == nil else {
            throw CourierError(
                .invalidConfiguration,
                "this pipeline encrypts payloads, but the CloudEvents NATS binding (\(mode)) sends the data as it is; publish(_:options:) stores the CloudEvent as an encrypted event instead",
                input: "encryption")
        }
        _ = try prepareForProvider(try Event(cloudEvent: cloudEvent, prefix: subjectPrefix))
        let started = ContinuousClock.now
        do {
            let ack = try await jetstream.publish(cloudEvent, mode: mode, subject: subject, options: options)
            layers.metrics?.recordPublish(nanoseconds: (ContinuousClock.now - started).nanoseconds)
            return ack
        } catch {
            layers.metrics?.recordPublishError()
            throw error
        }
    }
}

extension JetStreamProvider {
    /// Publishes `cloudEvent` in `mode` and waits for the stream's acknowledgement. This is the
    /// raw level: no pipeline layer applies (`EventPipeline/publish(_:mode:subject:options:)`
    /// is the same through the pipeline).
    ///
    /// The subject is `subject`, else the event's `subject` attribute when it is a valid subject
    /// under the provider's prefix, else `<prefix>.cloudevents.<type>` (type made subject-safe).
    /// The dedupe id is `options.messageID`, else the event id.
    @discardableResult
    public func publish(
        _ cloudEvent: CloudEvent,
        mode: CloudEventMode,
        subject: String? = nil,
        options: PublishOptions = PublishOptions()
    ) async throws -> PublishAck {
        let encoded = try NATSBinding.encode(cloudEvent, mode: mode)
        let target = try subject ?? Event(cloudEvent: cloudEvent, prefix: subjectPrefix).subject
        let results = try await publish(
            messages: [
                OutgoingMessage(
                    subject: target,
                    payload: encoded.payload,
                    headers: encoded.headers,
                    messageID: options.messageID ?? cloudEvent.id,
                    expectedLastSequence: options.expectedLastSequence
                )
            ],
            timeout: options.timeout ?? Self.defaultPublishTimeout
        )
        return try results[0].get()
    }

    /// A subscription yielding CloudEvents: to the durable consumer `consumer`, or ephemeral when
    /// `nil`.
    public func subscribeCloudEvents(
        consumer: String?,
        filter: String,
        options: SubscribeOptions = SubscribeOptions()
    ) async throws -> CloudEventSubscription {
        CloudEventSubscription(
            messages: try await subscribeMessages(consumer: consumer, filter: filter, options: options))
    }
}
#endif
