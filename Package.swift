// swift-tools-version: 6.1

import PackageDescription

// MARK: - Traits

/// Every optional layer of Courier sits behind one trait. All of them are on by default; a build with
/// `--disable-default-traits` is the provider-agnostic core alone and links no C library.
let traits: Set<Trait> = [
    .trait(
        name: "NATS",
        description: "JetStreamProvider and JetStreamAdapter over the NATS C client (Debian libnats-dev 3.4.1)."
    ),
    .trait(
        name: "Encryption",
        description: "AES-256-GCM payload encryption with a runtime key ring, through OpenSSL's libcrypto."
    ),
    .trait(
        name: "CloudEvents",
        description: "CloudEvents v1.0: the event type, JSON format, batch format and NATS protocol binding."
    ),
    .trait(
        name: "Routing",
        description: "Broker/Trigger routing of events into sinks with retries, backoff and dead-lettering."
    ),
    .default(enabledTraits: ["NATS", "Encryption", "CloudEvents", "Routing"]),
]

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "courier",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Courier", targets: ["Courier"]),
        .library(name: "CourierTesting", targets: ["CourierTesting"]),
        .executable(name: "courier", targets: ["courier"]),
        .executable(name: "courier-eventschema", targets: ["courier-eventschema"]),
        .plugin(name: "EventSchemaPlugin", targets: ["EventSchemaPlugin"]),
        .plugin(name: "CourierDevServer", targets: ["CourierDevServer"]),
    ],
    traits: traits,
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // The `courier` tool only: `courier route --metrics-listen` serves Prometheus text from the
        // swift-metrics Courier records (swift-prometheus) over FlyingFox, an HTTP server with no
        // package dependencies (plain sockets and Swift concurrency; no SwiftNIO to build). Its
        // proxy handler imports FoundationNetworking, so the tool links libcurl on Linux; the
        // libraries never do.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox.git", from: "0.27.1"),
        // The `courier` tool only: `courier bench pub|sub|pubsub` reports latency percentiles
        // from an HDR histogram (bounded memory at any message count).
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // Documentation only: `swift package generate-documentation --target Courier`.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: C libraries, each reached only through a trait-gated dependency
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        // MARK: Core (no C, no optional dependency)
        .target(
            name: "CourierCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: The ingest core (no C)
        .target(
            name: "CourierIngest",
            dependencies: [
                "CourierCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: Layers
        .target(
            name: "CourierJetStream",
            dependencies: [
                "CourierCore", "CourierIngest",
                .target(name: "CNATS", condition: .when(traits: ["NATS"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "CourierCrypto",
            dependencies: [
                "CourierCore",
                .target(name: "COpenSSL", condition: .when(traits: ["Encryption"])),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "CourierCloudEvents",
            dependencies: [
                "CourierCore",
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "CourierRouting",
            dependencies: [
                "CourierCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "Courier",
            dependencies: [
                "CourierCore", "CourierIngest",
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
                .target(name: "CourierCrypto", condition: .when(traits: ["Encryption"])),
                .target(name: "CourierCloudEvents", condition: .when(traits: ["CloudEvents"])),
                .target(name: "CourierRouting", condition: .when(traits: ["Routing"])),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "CourierTesting",
            dependencies: [
                "CourierCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "courier",
            dependencies: [
                "Courier",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                // `courier route`'s metrics endpoint, built only with the route command's traits.
                .product(name: "Metrics", package: "swift-metrics", condition: .when(traits: ["Routing"])),
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["Routing"])),
                .product(name: "FlyingFox", package: "FlyingFox", condition: .when(traits: ["Routing"])),
                .product(name: "FlyingSocks", package: "FlyingFox", condition: .when(traits: ["Routing"])),
            ],
            swiftSettings: strictSwift
        ),

        // MARK: Plugins and the schema generator they run
        .target(name: "CourierEventSchema", swiftSettings: strictSwift),
        .executableTarget(
            name: "courier-eventschema", dependencies: ["CourierEventSchema"], swiftSettings: strictSwift),
        .plugin(name: "EventSchemaPlugin", capability: .buildTool(), dependencies: ["courier-eventschema"]),
        .plugin(
            name: "CourierDevServer",
            capability: .command(
                intent: .custom(
                    verb: "courier-dev-server",
                    description: "Start, stop or show a local nats-server -js for development")
            )
        ),

        // MARK: Tests
        .testTarget(
            name: "CourierEventSchemaTests",
            dependencies: ["CourierEventSchema", "CourierCore", "CourierTesting"],
            swiftSettings: strictSwift,
            plugins: [.plugin(name: "EventSchemaPlugin")]
        ),
        .testTarget(
            name: "CourierCoreTests",
            dependencies: [
                "CourierCore", "CourierTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierIngestTests",
            dependencies: [
                "CourierCore", "CourierIngest", "CourierTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierJetStreamTests",
            dependencies: [
                "CourierCore", "CourierIngest", "CourierTesting",
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierCloudEventsTests",
            dependencies: [
                "CourierCore", "CourierTesting",
                .target(name: "CourierCloudEvents", condition: .when(traits: ["CloudEvents"])),
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
            ],
            exclude: ["Vectors"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierRoutingTests",
            dependencies: [
                "CourierCore", "CourierTesting", "courier",
                .target(name: "CourierRouting", condition: .when(traits: ["Routing"])),
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierPipelineTests",
            dependencies: [
                "CourierCore", "CourierIngest", "CourierTesting",
                .target(name: "CourierJetStream", condition: .when(traits: ["NATS"])),
                .target(name: "CourierCrypto", condition: .when(traits: ["Encryption"])),
                .target(name: "CourierCloudEvents", condition: .when(traits: ["CloudEvents"])),
                .target(name: "CourierRouting", condition: .when(traits: ["Routing"])),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierCLITests",
            dependencies: ["CourierCore", "CourierTesting", "courier"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "CourierCryptoTests",
            dependencies: [
                "CourierCore", "CourierTesting",
                .target(name: "CourierCrypto", condition: .when(traits: ["Encryption"])),
            ],
            swiftSettings: strictSwift
        ),
    ]
)
