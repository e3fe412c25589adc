import Courier
import Foundation

/// Writes one line to standard output and flushes it (output may be piped).
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The wire JSON of an event as text.
func wireText(_ event: Event) -> String {
    String(decoding: event.wireJSON(), as: UTF8.self)
}
