// swift-tools-version: 6.1

import PackageDescription

let package = Package(
    name: "service-group",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "courier", path: "../.."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "ServiceGroupExample",
            dependencies: [
                .product(name: "Courier", package: "courier"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
