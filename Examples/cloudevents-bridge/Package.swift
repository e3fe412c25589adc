// swift-tools-version: 6.1

import PackageDescription

let package = Package(
    name: "cloudevents-bridge",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "courier", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "CloudEventsBridgeExample",
            dependencies: [
                .product(name: "Courier", package: "courier")
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
