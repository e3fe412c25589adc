/// Durable consumer names as every provider stores them.
///
/// NATS forbids `.`, `*`, `>` and whitespace in durable names (a3s-event 0.3 broke on a subscriber
/// id of `orders.worker`). Courier keeps `[A-Za-z0-9_-]` as is and replaces anything else with
/// `_`; when something was replaced it appends `-` and an 8-digit FNV-1a hash of the original, so
/// `a.b` and `a_b` stay distinct. The result is the same in every process and release.
public enum ConsumerName {
    /// The longest name kept before it is shortened with a hash.
    public static let maximumLength = 64

    /// The stored form of `name`.
    ///
    /// - Throws: ``CourierError/Code/invalidConfiguration`` when `name` is empty.
    public static func sanitize(_ name: String) throws -> String {
        guard !name.isEmpty else {
            throw CourierError(.invalidConfiguration, "a durable consumer name must not be empty", input: name)
        }
        var changed = false
        var out = ""
        out.reserveCapacity(name.utf8.count)
        for scalar in name.unicodeScalars {
            switch scalar.value {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F, 0x2D:
                out.unicodeScalars.append(scalar)
            default:
                out.append("_")
                changed = true
            }
        }
        if out.utf8.count > maximumLength {
            out = String(out.prefix(maximumLength - 9))
            changed = true
        }
        return changed ? out + "-" + FNV1a.hex32(name) : out
    }

    /// The durable name for one filter of a bus subscriber: `<subscriber>_<filter>` sanitised.
    public static func forSubscriber(_ subscriberID: String, filter: String) throws -> String {
        try sanitize("\(subscriberID)_\(filter)")
    }
}
