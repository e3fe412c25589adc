// swift-tools-version: 6.1

import PackageDescription

let package = Package(
    name: "ingest-firehose",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "courier", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "IngestFirehoseExample",
            dependencies: [
                .product(name: "Courier", package: "courier")
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
