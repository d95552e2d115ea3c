import Foundation

// Writes a Swift file that holds every file under a folder, base64-encoded in one string
// literal each: string literals compile in a blink where byte-array literals of the same size
// take minutes. Usage: ConsoleAssetsGenerator ASSETS_FOLDER OUTPUT.swift

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: ConsoleAssetsGenerator ASSETS_FOLDER OUTPUT.swift\n".utf8))
    exit(2)
}
let root = URL(fileURLWithPath: arguments[1]).standardizedFileURL
var files: [(path: String, data: Data)] = []
if let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) {
    for case let file as URL in walker where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
        let full = file.standardizedFileURL.path
        let relative = String(full.dropFirst(root.path.count + 1))
        // Editor and system leftovers are not part of the console.
        if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) || relative.hasSuffix("~") { continue }
        // The name goes into a string literal and a URL as it is: keep it to plain characters.
        guard relative.unicodeScalars.allSatisfy({ CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/").contains($0) }) else {
            FileHandle.standardError.write(Data("ConsoleAssetsGenerator: \(relative): a console file's name may hold only letters, digits, '.', '_', '-' and '/'\n".utf8))
            exit(1)
        }
        files.append((relative, try Data(contentsOf: file)))
    }
}
files.sort { $0.path < $1.path }
var source = "// Generated at build time from the console's Assets folder; not edited by hand.\n\n"
source += "extension EmbeddedConsole {\n    static let encodedFiles: [(path: String, base64: String)] = [\n"
for file in files {
    source += "        (\"\(file.path)\", \"\(file.data.base64EncodedString())\"),\n"
}
source += "    ]\n}\n"
try source.write(to: URL(fileURLWithPath: arguments[2]), atomically: true, encoding: .utf8)
