// swift-tools-version: 6.1

import PackageDescription

let package = Package(
    name: "publisher",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "courier", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "PublisherExample",
            dependencies: [
                .product(name: "Courier", package: "courier")
            ],
            swiftSettings: [.swiftLanguageMode(.v6)],
            // Generates the typed `OrderCreated` event from OrderCreated.eventschema.json.
            plugins: [.plugin(name: "EventSchemaPlugin", package: "courier")]
        )
    ]
)
