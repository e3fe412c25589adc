#if NATS
/// The JetStream provider's lifecycle — running, shutting down, closed — as a state machine in
/// the style of swift-kafka-client's `KafkaConsumer.StateMachine`: each transition happens under
/// the provider's lock and returns what the caller must do, which the caller then does outside
/// the lock (closing subscriptions, draining publishes, closing the connection).
struct ProviderStateMachine {
    private struct WeakSubscription {
        weak var subscription: JetStreamSubscription?
    }

    private enum State {
        /// Accepting calls; the subscriptions it opened and that are still open.
        case running([ObjectIdentifier: WeakSubscription])
        /// `shutdown` began: every call fails with `shutdown`, in-flight publishes drain.
        case shuttingDown
        /// The connection is closed.
        case closed
    }

    private var state = State.running([:])

    /// Whether calls are accepted.
    var isRunning: Bool {
        if case .running = state { return true }
        return false
    }

    /// What to do with a subscription that was just opened.
    enum RegisterAction {
        /// Keep it: shutdown will close it.
        case keep
        /// Shutdown began while it was being opened: close it now.
        case close
    }

    mutating func register(_ subscription: JetStreamSubscription) -> RegisterAction {
        guard case .running(var open) = state else { return .close }
        open[ObjectIdentifier(subscription)] = WeakSubscription(subscription: subscription)
        state = .running(open)
        return .keep
    }

    /// The subscriptions open right now.
    var openSubscriptions: [JetStreamSubscription] {
        guard case .running(let open) = state else { return [] }
        return open.values.compactMap(\.subscription)
    }

    mutating func unregister(_ subscription: JetStreamSubscription) {
        guard case .running(var open) = state else { return }
        open[ObjectIdentifier(subscription)] = nil
        state = .running(open)
    }

    /// What shutting down takes.
    enum ShutdownAction {
        /// Drain publishes, close these subscriptions, close the connection, then
        /// ``finishShutdown()``.
        case drain(closing: [JetStreamSubscription])
        /// Another call is shutting down or already did: nothing to do.
        case none
    }

    mutating func beginShutdown() -> ShutdownAction {
        guard case .running(let open) = state else { return .none }
        state = .shuttingDown
        return .drain(closing: open.values.compactMap(\.subscription))
    }

    mutating func finishShutdown() {
        state = .closed
    }
}
#endif
