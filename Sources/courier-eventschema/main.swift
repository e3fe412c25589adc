import CourierEventSchema
import Foundation

// courier-eventschema INPUT.eventschema.json OUTPUT.swift
//     the typed event of one schema file
// courier-eventschema --registrations OUTPUT.swift INPUT.eventschema.json...
//     `GeneratedEventSchemas`, registering every schema of a module
// Run by the EventSchemaPlugin build-tool plugin.
let usage = """
    usage: courier-eventschema INPUT.eventschema.json OUTPUT.swift
           courier-eventschema --registrations OUTPUT.swift INPUT.eventschema.json...

    """

func load(_ path: String) throws -> EventSchemaFile {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return try EventSchemaFile(json: data, source: URL(fileURLWithPath: path).lastPathComponent)
}

func write(_ source: String, to path: String) throws {
    try Data(source.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    if arguments.first == "--registrations", arguments.count >= 2 {
        let files = try arguments.dropFirst(2).map(load)
        try write(EventSchemaGenerator.registrationSource(for: files), to: arguments[1])
    } else if arguments.count == 2 {
        let name = URL(fileURLWithPath: arguments[0]).lastPathComponent
        try write(EventSchemaGenerator.swiftSource(for: try load(arguments[0]), sourceName: name), to: arguments[1])
    } else {
        FileHandle.standardError.write(Data(usage.utf8))
        exit(64)
    }
} catch {
    // "error:" makes SwiftPM show it as a build error.
    FileHandle.standardError.write(Data("courier-eventschema: error: \(error)\n".utf8))
    exit(1)
}
