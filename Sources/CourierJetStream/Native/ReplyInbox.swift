#if NATS
internal import CNATS
import CourierCore

/// The wildcard reply subscription a publisher matches its replies on (`<inbox>.*`, the token
/// in the last subject token), shared by the per-message and the atomic-batch publishers.
enum ReplyInbox {
    /// A new unique inbox (`_INBOX.<nuid>`, as cnats' own requests use), or
    /// `_INBOX.<fallbackName>.<random>` when cnats cannot make one.
    static func make(fallbackName: String) -> String {
        var created: UnsafeMutablePointer<natsInbox>?
        if natsInbox_Create(&created) == NATS_OK, let created {
            defer { natsInbox_Destroy(created) }
            return String(cString: created)
        }
        var random = SystemRandomNumberGenerator()
        return "_INBOX.\(fallbackName).\(String(random.next() as UInt64, radix: 16))"
    }

    /// Subscribes `handler` to `<inbox>.*` (blocking). `owner`, the handler's closure, is
    /// retained until cnats says no callback will run any more; the subscription is never
    /// dropped as a slow consumer (the caller's window bounds what can arrive).
    static func subscribe(
        _ owner: AnyObject, connection: OpaquePointer, inbox: String, handler: natsMsgHandler, what: String
    ) throws -> OpaquePointer {
        var sub: OpaquePointer?
        let retained = Unmanaged.passRetained(owner).toOpaque()
        let status = natsConnection_Subscribe(&sub, connection, inbox + ".*", handler, retained)
        guard status == NATS_OK, let sub else {
            Unmanaged<AnyObject>.fromOpaque(retained).release()
            throw CourierError.nats(status, "cannot subscribe to \(what)", input: inbox, detail: natsLastErrorText())
        }
        natsSubscription_SetOnCompleteCB(sub, releaseOwner, retained)
        natsSubscription_SetPendingLimits(sub, -1, -1)
        return sub
    }

    /// Ends a subscription made by ``subscribe(_:connection:inbox:handler:what:)`` (blocking).
    static func unsubscribe(_ sub: OpaquePointer) {
        natsSubscription_Unsubscribe(sub)
        natsSubscription_Destroy(sub)
    }
}

/// Runs once a reply subscription delivers no more: balances the retain taken when it was made.
private let releaseOwner: natsOnCompleteCB = { closure in
    guard let closure else { return }
    Unmanaged<AnyObject>.fromOpaque(closure).release()
}
#endif
