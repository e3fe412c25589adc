/// Finds the bytes a JSON string must escape (`"`, `\` and control bytes) eight at a time.
/// Most strings hold none, and looking at one byte at a time is the slow part of writing and
/// reading them.
enum JSONScan {
    /// From `start`, the end of the run of whole 8-byte words that surely hold no `"`, `\` or
    /// byte under 0x20, and whether any byte of that run is 0x80 or more (not ASCII). A word
    /// that may hold one ends the run; the caller goes on a byte at a time from `end`.
    @inline(__always)
    static func plainWords(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (end: Int, nonASCII: Bool) {
        guard let base = bytes.baseAddress else { return (start, false) }
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var offset = start
        var high: UInt64 = 0
        while offset + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self)
            // `(x - ones * n) & ~x & highs` is nonzero exactly when some byte of x is under n
            // (n ≤ 0x80). The quote and backslash tests look for a zero byte after an xor.
            let below = (word &- ones &* 0x20) & ~word & highs
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let special = below | ((quote &- ones) & ~quote & highs) | ((backslash &- ones) & ~backslash & highs)
            if special != 0 { break }
            high |= word & highs
            offset += 8
        }
        return (offset, high != 0)
    }
}
