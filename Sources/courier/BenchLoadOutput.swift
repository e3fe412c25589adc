import Courier
import Foundation
import Histogram
import Synchronization

// MARK: - Output

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

struct BenchSummary {
    let kind: BenchKind
    let load: BenchLoadOptions
    let target: String
    let wireBytes: Int
    let publishSeconds: Double?
    let subscribeSeconds: Double?
    let latency: Histogram<UInt64>?
    let latencyUnit: String

    static let percentiles: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]

    var publishRate: Double? { publishSeconds.map { Double(load.msgs) / max($0, 1e-9) } }
    /// Messages received per second by all subscribers together.
    var subscribeRate: Double? { subscribeSeconds.map { Double(load.msgs * load.subs) / max($0, 1e-9) } }

    func text() -> String {
        var lines = [
            "\(kind.rawValue) against \(target): \(load.msgs) msgs of \(load.size) B payload (\(wireBytes) B events)"
        ]
        if let rate = publishRate, let seconds = publishSeconds {
            lines.append(
                String(
                    format: "Pub stats: %@ msgs/s ~ %.2f MB/s (%d publisher%@, mode %@, %.3f s)", grouped(rate),
                    rate * Double(wireBytes) / 1e6, load.pubs, load.pubs == 1 ? "" : "s", load.mode, seconds))
        }
        if let latency, latency.totalCount > 0 {
            let values = Self.percentiles.map { "\($0.0) \(formatNanos(latency.valueAtPercentile($0.1)))" }
            lines.append("  publish latency \(latencyUnit): " + values.joined(separator: ", "))
        }
        if let rate = subscribeRate, let seconds = subscribeSeconds {
            lines.append(
                String(
                    format: "Sub stats: %@ msgs/s ~ %.2f MB/s (%d subscriber%@ × %d msgs, manual ack, %.3f s)",
                    grouped(rate), rate * Double(wireBytes) / 1e6, load.subs, load.subs == 1 ? "" : "s", load.msgs,
                    seconds))
        }
        return lines.joined(separator: "\n")
    }

    func json() -> JSONValue {
        var object: [String: JSONValue] = [
            "kind": .string(kind.rawValue), "target": .string(target), "msgs": .int(Int64(load.msgs)),
            "size": .int(Int64(load.size)), "eventBytes": .int(Int64(wireBytes)), "pubs": .int(Int64(load.pubs)),
            "subs": .int(Int64(load.subs)), "mode": .string(load.mode),
        ]
        if let rate = publishRate, let seconds = publishSeconds {
            object["publish"] = [
                "seconds": .double(seconds), "msgsPerSecond": .double(rate.rounded()),
                "megabytesPerSecond": .double((rate * Double(wireBytes) / 1e4).rounded() / 100),
            ]
        }
        if let latency, latency.totalCount > 0 {
            var values: [String: JSONValue] = [
                "unit": .string(latencyUnit), "samples": .int(Int64(latency.totalCount)),
            ]
            for (name, percentile) in Self.percentiles {
                values[name + "Nanoseconds"] = .int(Int64(latency.valueAtPercentile(percentile)))
            }
            object["publishLatency"] = .object(values)
        }
        if let rate = subscribeRate, let seconds = subscribeSeconds {
            object["subscribe"] = [
                "seconds": .double(seconds), "msgsPerSecond": .double(rate.rounded()),
                "megabytesPerSecond": .double((rate * Double(wireBytes) / 1e4).rounded() / 100),
            ]
        }
        return .object(object)
    }
}

func grouped(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var out = ""
    for (index, character) in digits.enumerated() {
        if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(character)
    }
    return out
}

func formatNanos(_ nanos: UInt64) -> String {
    switch nanos {
    case ..<10_000: String(format: "%.2f µs", Double(nanos) / 1e3)
    case ..<10_000_000: String(format: "%.0f µs", Double(nanos) / 1e3)
    default: String(format: "%.1f ms", Double(nanos) / 1e6)
    }
}

/// A live progress bar on standard error: published and received against the totals, and the rate.
final class BenchProgress: Sendable {
    private let kind: BenchKind
    private let total: Int
    private let received: Int
    private let counters: BenchCounters
    private let enabled: Bool
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(kind: BenchKind, total: Int, received: Int, counters: BenchCounters, enabled: Bool) {
        self.kind = kind
        self.total = total
        self.received = received
        self.counters = counters
        self.enabled = enabled
    }

    func start() {
        guard enabled else { return }
        let started = ContinuousClock.now
        let running = Task.detached { [kind, total, received, counters] in
            var last = false
            while !last {
                try? await Task.sleep(for: .milliseconds(200))
                last = Task.isCancelled  // one more line with the final counts, then stop
                let seconds = max((ContinuousClock.now - started).seconds, 0.001)
                let published = counters.published.load(ordering: .relaxed)
                let got = counters.received.load(ordering: .relaxed)
                let done = (kind == .sub ? 0 : published) + got
                let whole = (kind == .sub ? 0 : total) + received
                let fraction = whole > 0 ? min(1, Double(done) / Double(whole)) : 1
                let width = 30
                let filled = Int(fraction * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                var line = String(format: "\r[%@] %3.0f%% ", bar, fraction * 100)
                if kind != .sub { line += "pub \(published)/\(total) \(grouped(Double(published) / seconds))/s " }
                if kind != .pub { line += "sub \(got)/\(received) \(grouped(Double(got) / seconds))/s " }
                FileHandle.standardError.write(Data(line.utf8))
            }
        }
        task.withLock { $0 = running }
    }

    /// Stops the bar and ends its line once it wrote its last update.
    func stop() async {
        guard enabled, let running = task.withLock({ $0 }) else { return }
        running.cancel()
        await running.value
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
