import Foundation
import PackagePlugin

/// Generates a typed Swift event (a `TypedEvent` struct with its `EventSchema`) from every
/// `*.eventschema.json` file of the target it is applied to.
@main
struct EventSchemaPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        guard let module = target as? any SourceModuleTarget else { return [] }
        let generator = try context.tool(named: "courier-eventschema")
        let suffix = ".eventschema.json"
        return module.sourceFiles.filter { $0.url.lastPathComponent.hasSuffix(suffix) }.map { file in
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
    }
}
