import Foundation
import PackagePlugin

/// Generates a typed Swift event (a `TypedEvent` struct with its `EventSchema`) from every
/// `*.eventschema.json` file of the target it is applied to, and `GeneratedEventSchemas`, whose
/// `register(in:)` registers all of them with a schema registry.
@main
struct EventSchemaPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        guard let module = target as? any SourceModuleTarget else { return [] }
        let generator = try context.tool(named: "courier-eventschema")
        let suffix = ".eventschema.json"
        let schemas = module.sourceFiles.filter { $0.url.lastPathComponent.hasSuffix(suffix) }
        guard !schemas.isEmpty else { return [] }
        // One command per schema file, so editing one regenerates one type …
        var commands: [Command] = schemas.map { file in
            let name = String(file.url.lastPathComponent.dropLast(suffix.count))
            let output = context.pluginWorkDirectoryURL.appendingPathComponent("\(name).swift")
            return .buildCommand(
                displayName: "Generating \(name).swift from \(file.url.lastPathComponent)",
                executable: generator.url,
                arguments: [file.url.path, output.path],
                inputFiles: [file.url],
                outputFiles: [output]
            )
        }
        // … and one for `GeneratedEventSchemas`, which registers them all.
        let registrations = context.pluginWorkDirectoryURL.appendingPathComponent("GeneratedEventSchemas.swift")
        commands.append(
            .buildCommand(
                displayName: "Generating GeneratedEventSchemas.swift from \(schemas.count) schema file(s)",
                executable: generator.url,
                arguments: ["--registrations", registrations.path] + schemas.map(\.url.path),
                inputFiles: schemas.map(\.url),
                outputFiles: [registrations]
            )
        )
        return commands
    }
}
