import Foundation
import PackagePlugin

/// Embeds the console's files (`Assets/` of the target) in the binary: a gateway is one
/// executable, and its console must not depend on where a resource bundle was copied.
///
/// The files are listed here, and the generator embeds exactly those: what the build declares
/// as inputs is what ends up in the binary, so adding or removing a file reruns the step.
@main
struct EmbedConsoleAssets: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let assets = target.directoryURL.appending(path: "Assets").standardizedFileURL
        var inputs: [URL] = []
        if let walker = FileManager.default.enumerator(at: assets, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let file as URL in walker where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                let relative = String(file.standardizedFileURL.path.dropFirst(assets.path.count + 1))
                // Editor and system leftovers are not part of the console.
                if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) || relative.hasSuffix("~") { continue }
                inputs.append(file.standardizedFileURL)
            }
        }
        inputs.sort { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedConsoleAssets.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) console assets",
                executable: try context.tool(named: "ConsoleAssetsGenerator").url,
                arguments: [assets.path, output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
