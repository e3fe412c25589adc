#if NATS
import CourierCore

/// A JetStream message with its headers, delivered without decoding it as an `Event`
/// (for CloudEvents in binary mode, or any other payload).
public struct PendingMessage: Sendable {
    /// The subject it was published on.
    public let subject: String
    /// Its headers, keys lowercased (header names match case-insensitively).
    public let headers: [String: String]
    /// Its payload.
    public let payload: [UInt8]
    /// Its stream sequence.
    public let sequence: UInt64
    /// How many times it has been delivered, 1 for the first delivery.
    public let deliveryCount: Int
    /// The stream that stores it.
    public let stream: String
    private let handle: DeliveryHandle

    init(
        subject: String,
        headers: [String: String],
        payload: [UInt8],
        sequence: UInt64,
        deliveryCount: Int,
        stream: String,
        handle: DeliveryHandle
    ) {
        self.subject = subject
        self.headers = headers
        self.payload = payload
        self.sequence = sequence
        self.deliveryCount = deliveryCount
        self.stream = stream
        self.handle = handle
    }

    /// Marks the message processed.
    public func ack() async throws { try await handle.finalize(.ack) }
    /// Asks for redelivery; after `maxDeliver` attempts it is dead-lettered instead.
    public func nak(delay: Duration? = nil) async throws { try await handle.finalize(.nak(delay: delay)) }
    /// Restarts the ack-wait timer.
    public func inProgress() async throws { try await handle.finalize(.inProgress) }
    /// Stops delivery for good; with a reason, dead-letters it with its raw bytes.
    public func term(reason: String? = nil) async throws { try await handle.finalize(.term(reason: reason)) }
}

/// A subscription delivering ``PendingMessage``s.
public struct MessageSubscription: Sendable {
    let source: JetStreamSubscription

    /// The next message; `nil` once closed or when the task is cancelled.
    public func next() async -> PendingMessage? { await source.nextMessage() }

    /// The next message, or `nil` when none arrives within `timeout`.
    public func next(timeout: Duration) async -> PendingMessage? {
        await withTaskGroup(of: PendingMessage?.self) { group in
            group.addTask { await source.nextMessage() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var delivered: PendingMessage?
            var first = true
            while let outcome = await group.next() {
                if first {
                    group.cancelAll()
                    first = false
                }
                if let outcome { delivered = outcome }
            }
            return delivered
        }
    }

    /// Stops delivery.
    public func close() async { await source.close() }
}
#endif
