// swift-tools-version: 6.1

import PackageDescription

let package = Package(
    name: "routing",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "courier", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "RoutingExample",
            dependencies: [
                .product(name: "Courier", package: "courier")
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
