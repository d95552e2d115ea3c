import Foundation

// Writes a Swift file that holds the given files, base64-encoded in one string literal each:
// string literals compile in a blink where byte-array literals of the same size take minutes.
// Usage: ConsoleAssetsGenerator ROOT OUTPUT.swift FILE... (each FILE under ROOT; it is served
// under its path relative to ROOT).

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    FileHandle.standardError.write(Data("usage: ConsoleAssetsGenerator ROOT OUTPUT.swift FILE...\n".utf8))
    exit(2)
}
let root = URL(fileURLWithPath: arguments[1]).standardizedFileURL.path
let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")
var files: [(path: String, data: Data)] = []
for argument in arguments.dropFirst(3) {
    let full = URL(fileURLWithPath: argument).standardizedFileURL.path
    guard full.hasPrefix(root + "/") else {
        FileHandle.standardError.write(Data("ConsoleAssetsGenerator: \(full) is not under \(root)\n".utf8))
        exit(1)
    }
    let relative = String(full.dropFirst(root.count + 1))
    // The name goes into a string literal and a URL as it is: keep it to plain characters.
    guard relative.unicodeScalars.allSatisfy({ allowed.contains($0) }) else {
        FileHandle.standardError.write(Data("ConsoleAssetsGenerator: \(relative): a console file's name may hold only letters, digits, '.', '_', '-' and '/'\n".utf8))
        exit(1)
    }
    files.append((relative, try Data(contentsOf: URL(fileURLWithPath: full))))
}
files.sort { $0.path < $1.path }
var source = "// Generated at build time from the console's Assets folder; not edited by hand.\n\n"
source += "extension EmbeddedConsole {\n    static let encodedFiles: [(path: String, base64: String)] = [\n"
for file in files {
    source += "        (\"\(file.path)\", \"\(file.data.base64EncodedString())\"),\n"
}
source += "    ]\n}\n"
try source.write(to: URL(fileURLWithPath: arguments[2]), atomically: true, encoding: .utf8)
