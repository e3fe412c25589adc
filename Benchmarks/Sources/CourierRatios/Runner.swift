import Foundation

/// One comparison: a baseline and the Courier code doing the same work, measured alternately
/// in the same process against the same server, each sample in operations per second.
struct Pair {
    let name: String
    let baseline: String
    let courier: String
    /// The ratio the issue asks for, shown next to the figure.
    let target: Double?
    let measureBaseline: () async throws -> Double
    let measureCourier: () async throws -> Double
}

/// The outcome of one pair over several rounds.
struct PairResult {
    let pair: Pair
    let baselineSamples: [Double]
    let courierSamples: [Double]

    var baselineMedian: Double { median(baselineSamples) }
    var courierMedian: Double { median(courierSamples) }
    var ratio: Double { courierMedian / baselineMedian }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1
        ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Operations per second for `count` operations taking `elapsed`.
func rate(_ count: Int, _ elapsed: Duration) -> Double {
    let (seconds, attoseconds) = elapsed.components
    return Double(count) / (Double(seconds) + Double(attoseconds) / 1e18)
}

/// Times `body` (which performs `count` operations) and returns operations per second.
///
/// Two aids for profiling one side (`--side courier`), both off unless set:
/// - `COURIER_BENCH_PERF_FIFO`: a `perf record --control fifo:PATH -D -1` control pipe, enabled
///   only for the timed part, so set-up and pre-filling stay out of the profile;
/// - `COURIER_BENCH_CPU=1`: prints the process's CPU time per operation over the timed part
///   (every thread: Courier's, cnats', Swift's pool), which is steadier than throughput on a
///   shared machine.
func timed(_ count: Int, _ body: () async throws -> Void) async rethrows -> Double {
    Profiling.perf("enable")
    let cpuBefore = Profiling.processCPU()
    let started = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - started
    let cpu = Profiling.processCPU() - cpuBefore
    Profiling.perf("disable")
    if Profiling.reportsCPU {
        FileHandle.standardError.write(
            Data(String(format: "cpu per operation: %.3f µs\n", cpu * 1e6 / Double(count)).utf8))
    }
    return rate(count, elapsed)
}

/// Runs a C baseline's timed call with the same profiling aids as ``timed(_:_:)``: `body`
/// returns its own elapsed seconds (or a negative number on failure), which this passes on.
func profiled(_ count: Int, _ body: () -> Double) -> Double {
    Profiling.perf("enable")
    let cpuBefore = Profiling.processCPU()
    let elapsed = body()
    let cpu = Profiling.processCPU() - cpuBefore
    Profiling.perf("disable")
    if Profiling.reportsCPU {
        FileHandle.standardError.write(
            Data(String(format: "baseline cpu per operation: %.3f µs\n", cpu * 1e6 / Double(count)).utf8))
    }
    return elapsed
}

/// The profiling aids of ``timed(_:_:)``.
enum Profiling {
    static let reportsCPU = ProcessInfo.processInfo.environment["COURIER_BENCH_CPU"] == "1"
    static let perfControl: FileHandle? = ProcessInfo.processInfo.environment["COURIER_BENCH_PERF_FIFO"]
        .flatMap { FileHandle(forWritingAtPath: $0) }

    /// Sends `command` to perf's control pipe, when there is one.
    static func perf(_ command: String) {
        perfControl?.write(Data((command + "\n").utf8))
    }

    /// The CPU time every thread of this process has used, in seconds.
    static func processCPU() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// Which sides of a pair run: both, or one alone (to profile or count instructions of one).
enum Sides: String {
    case both, baseline, courier
}

/// Runs every pair (or those whose name contains one of `only`) `rounds` times, alternating
/// which side goes first.
func run(
    _ pairs: [Pair], rounds: Int, only: [String] = [], sides: Sides = .both, log: (String) -> Void
) async throws -> [PairResult] {
    var results: [PairResult] = []
    for pair in pairs where only.isEmpty || only.contains(where: { pair.name.contains($0) }) {
        var baseline: [Double] = []
        var courier: [Double] = []
        for round in 0..<rounds {
            switch sides {
            case .baseline: baseline.append(try await pair.measureBaseline())
            case .courier: courier.append(try await pair.measureCourier())
            case .both where round % 2 == 0:
                baseline.append(try await pair.measureBaseline())
                courier.append(try await pair.measureCourier())
            case .both:
                courier.append(try await pair.measureCourier())
                baseline.append(try await pair.measureBaseline())
            }
        }
        let result = PairResult(pair: pair, baselineSamples: baseline, courierSamples: courier)
        log(
            String(
                format: "%@: baseline %.0f/s, Courier %.0f/s, ratio %.2f×", pair.name, result.baselineMedian,
                result.courierMedian, result.ratio))
        results.append(result)
    }
    return results
}

/// A markdown table of results.
func markdown(_ results: [PairResult], title: String) -> String {
    var lines = [
        "### \(title)", "",
        "| Benchmark | Baseline | Baseline ops/s | Courier | Courier ops/s | Ratio | Target |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for result in results {
        let target = result.pair.target.map { String(format: "≥ %.2f×", $0) } ?? "—"
        lines.append(
            String(
                format: "| %@ | %@ | %.0f | %@ | %.0f | **%.2f×** | %@ |",
                result.pair.name, result.pair.baseline, result.baselineMedian, result.pair.courier,
                result.courierMedian,
                result.ratio, target
            )
        )
    }
    return lines.joined(separator: "\n")
}
