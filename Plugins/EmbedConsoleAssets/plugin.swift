import Foundation
import PackagePlugin

/// Embeds the console's files (`Assets/` of the target) in the binary: a gateway is one
/// executable, and its console must not depend on where a resource bundle was copied.
@main
struct EmbedConsoleAssets: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let assets = target.directoryURL.appending(path: "Assets")
        var inputs: [URL] = []
        if let walker = FileManager.default.enumerator(at: assets, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let file as URL in walker where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                inputs.append(file)
            }
        }
        inputs.sort { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedConsoleAssets.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) console assets",
                executable: try context.tool(named: "ConsoleAssetsGenerator").url,
                arguments: [assets.path, output.path],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
