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
/// once.
///
/// A forked child must not hand out the bytes its parent still holds: both would make the
/// same ids, and JetStream would drop the second event as a duplicate. A `pthread_atfork`
/// handler, registered when the pool is first filled, counts the fork in the child (an atomic
/// add, no lock), and a pool filled before the latest fork is filled again before use.
enum RandomPool {
    private static let pool = Mutex(RandomPoolState())
    /// Forks in this process's line, counted in the child.
    private static let forks = Atomic<UInt64>(0)
    /// Registers the fork handler, once.
    private static let forkHandler: Void = {
        #if canImport(Glibc) || canImport(Darwin)
        pthread_atfork(nil, nil) { RandomPool.forks.add(1, ordering: .relaxed) }
        #endif
    }()

    /// 16 random bytes that no earlier call returned, in this process or in a parent before
    /// a fork.
    static func next128() -> (UInt64, UInt64) {
        _ = forkHandler
        let forks = forks.load(ordering: .relaxed)
        return pool.withLock { $0.next128(forks: forks, fill: fill) }
    }

    /// Fills `buffer` from the kernel's generator.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
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

/// The bytes behind ``RandomPool``: a value, so a test can copy it as a fork copies memory.
package struct RandomPoolState {
    private var bytes = [UInt8](repeating: 0, count: 4096)
    private var offset = 4096
    /// The fork count when the bytes were read.
    private var filledAfterFork: UInt64 = 0

    package init() {}

    /// The next 16 bytes, after filling the pool with `fill` when it is used up or was filled
    /// before fork number `forks`.
    package mutating func next128(
        forks: UInt64, fill: (UnsafeMutableRawBufferPointer) -> Void
    ) -> (UInt64, UInt64) {
        if offset + 16 > bytes.count || filledAfterFork != forks {
            bytes.withUnsafeMutableBytes { fill($0) }
            offset = 0
            filledAfterFork = forks
        }
        defer { offset += 16 }
        return bytes.withUnsafeBytes { raw in
            (
                raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self),
                raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
            )
        }
    }
}
