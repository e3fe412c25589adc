/// The 32-bit FNV-1a hash, for short stable tags derived from text (sanitised consumer names,
/// routed-event ids): the same in every process and release.
package enum FNV1a {
    /// The hash of `text`'s UTF-8 bytes as 8 lowercase hex digits.
    package static func hex32(_ text: String) -> String {
        var hash: UInt32 = 0x811C_9DC5
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash &*= 0x0100_0193
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
