import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Random bytes for event ids, read from the kernel 4 KiB at a time.
///
/// `SystemRandomNumberGenerator` makes one `getrandom` call per 8 bytes, so each id cost two
/// system calls, more than the rest of creating an event. The pool holds 256 ids' worth of
/// bytes from one `arc4random_buf` call (glibc's reads `getrandom`) and hands out each byte
/// once. A forked child would share the pool's unused bytes with its parent; Courier never
/// forks (`Process` spawns), and ids made after an `exec` come from a fresh pool.
enum RandomPool {
    private struct Pool {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var offset = 4096
    }

    private static let pool = Mutex(Pool())

    /// 16 random bytes no earlier call returned.
    static func next128() -> (UInt64, UInt64) {
        pool.withLock { pool in
            if pool.offset + 16 > pool.bytes.count {
                pool.bytes.withUnsafeMutableBytes { fill($0) }
                pool.offset = 0
            }
            defer { pool.offset += 16 }
            return pool.bytes.withUnsafeBytes { raw in
                (
                    raw.loadUnaligned(fromByteOffset: pool.offset, as: UInt64.self),
                    raw.loadUnaligned(fromByteOffset: pool.offset + 8, as: UInt64.self)
                )
            }
        }
    }

    private static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        #if canImport(Glibc) || canImport(Darwin)
        arc4random_buf(buffer.baseAddress!, buffer.count)
        #else
        var generator = SystemRandomNumberGenerator()
        for offset in stride(from: 0, to: buffer.count, by: 8) {
            buffer.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self)
        }
        #endif
    }
}
