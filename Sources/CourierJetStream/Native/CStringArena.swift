#if NATS
#if canImport(Glibc)
import Glibc
#endif

/// C copies of Swift strings that live as long as the arena: for filling cnats config structs.
final class CStringArena {
    private var owned: [UnsafeMutablePointer<CChar>] = []

    init() {}

    /// A C copy of `string`, valid until the arena is released.
    func c(_ string: String) -> UnsafePointer<CChar> {
        let copy = strdup(string)!
        owned.append(copy)
        return UnsafePointer(copy)
    }

    /// A C copy of `string`, or `nil`.
    func optional(_ string: String?) -> UnsafePointer<CChar>? {
        string.map { c($0) }
    }

    /// A C array of C strings, valid until the arena is released.
    func array(_ strings: [String]) -> UnsafeMutablePointer<UnsafePointer<CChar>?> {
        let pointer = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(1, strings.count))
        for (i, string) in strings.enumerated() { pointer[i] = c(string) }
        arrays.append(pointer)
        return pointer
    }

    /// A C array of 64-bit integers, valid until the arena is released.
    func int64s(_ values: [Int64]) -> UnsafeMutablePointer<Int64> {
        let pointer = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, values.count))
        for (i, value) in values.enumerated() { pointer[i] = value }
        integers.append(pointer)
        return pointer
    }

    private var arrays: [UnsafeMutablePointer<UnsafePointer<CChar>?>] = []
    private var integers: [UnsafeMutablePointer<Int64>] = []

    deinit {
        owned.forEach { free($0) }
        arrays.forEach { $0.deallocate() }
        integers.forEach { $0.deallocate() }
    }
}
#endif
