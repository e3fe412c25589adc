// swift-tools-version: 6.1

import Foundation
import PackageDescription

/// The root package is referenced by path; SwiftPM names a path dependency after its directory,
/// which depends on where the repository was cloned.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

// Courier's benchmarks: package-benchmark targets that measure Courier and, in the same run, the
// baselines its ratios are taken against (raw cnats C, openssl speed, a linear trigger scan).
// Run them with ./run.sh, which starts the nats-server they share and writes BENCHMARKS.md figures.
let package = Package(
    name: "CourierBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .target(
            name: "CNATSBaseline",
            linkerSettings: [.linkedLibrary("nats")]
        ),
        // Paired runs, baseline and Courier alternating, reported as ratios of medians.
        .executableTarget(
            name: "CourierRatios",
            dependencies: [
                "CNATSBaseline",
                .product(name: "Courier", package: root),
                .product(name: "CourierTesting", package: root),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // package-benchmark suites: percentiles and allocation counts.
        .executableTarget(
            name: "CourierBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Courier", package: root),
            ],
            path: "Benchmarks/CourierBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
