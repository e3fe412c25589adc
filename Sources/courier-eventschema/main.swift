import CourierEventSchema
import Foundation

// courier-eventschema INPUT.eventschema.json OUTPUT.swift
// Run by the EventSchemaPlugin build-tool plugin for each schema file of a target.
let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 2, let input = arguments.first, let output = arguments.last else {
    FileHandle.standardError.write(Data("usage: courier-eventschema INPUT.eventschema.json OUTPUT.swift\n".utf8))
    exit(64)
}
do {
    let data = try Data(contentsOf: URL(fileURLWithPath: input))
    let name = URL(fileURLWithPath: input).lastPathComponent
    let file = try EventSchemaFile(json: data, source: name)
    let source = EventSchemaGenerator.swiftSource(for: file, sourceName: name)
    try Data(source.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
} catch {
    // "error:" makes SwiftPM show it as a build error pointing at the schema file.
    FileHandle.standardError.write(Data("\(input): error: \(error)\n".utf8))
    exit(1)
}
