#if CloudEvents
public import CourierCore

extension EventProvider {
    /// Publishes `cloudEvent` as a Courier event through this provider — through every layer when
    /// it is an `EventPipeline` (validated, encrypted, traced, counted) — and returns where it
    /// was stored. The event keeps the CloudEvent's id, which is also its dedupe id unless
    /// `options` names one; subscribers get it back with `PendingEvent/cloudEvent`.
    ///
    /// - Throws: `invalidCloudEvent` for a CloudEvent that does not convert, or the pipeline's
    ///   and provider's errors.
    @discardableResult
    public func publish(_ cloudEvent: CloudEvent, options: PublishOptions = PublishOptions()) async throws
        -> PublishAck
    {
        let event = try Event(cloudEvent: cloudEvent, prefix: subjectPrefix)
        var options = options
        if options.messageID == nil { options.messageID = cloudEvent.id }
        return try await publish(event, options: options)
    }
}

extension PendingEvent {
    /// The delivered event as a CloudEvent (the lossless conversion of `CloudEvent(event:)`).
    public var cloudEvent: CloudEvent { CloudEvent(event: event) }
}
#endif
