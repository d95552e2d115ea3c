#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One file of the console, ready to serve.
public struct ConsoleAsset: Sendable {
    public let path: String
    public let contentType: String
    public let body: [UInt8]
    /// A strong validator of the content: a browser revalidates and gets 304 while it holds it.
    public let etag: String
}

/// The console's files: embedded in the binary (a gateway is one executable), or read from a
/// folder on every request while the console itself is being developed.
public final class ConsoleAssets: Sendable {
    private enum Source: Sendable {
        case embedded([String: ConsoleAsset])
        case directory(String)
    }

    private let source: Source

    /// The files built into this binary.
    public static let embedded = ConsoleAssets(source: .embedded(EmbeddedConsole.decode()))

    private init(source: Source) {
        self.source = source
    }

    /// Serves the files under `directory`, read anew on each request (edit, reload).
    public init(directory: String) {
        self.source = .directory(directory.hasSuffix("/") ? String(directory.dropLast()) : directory)
    }

    /// How many files are embedded (0 when serving from a folder).
    public var embeddedCount: Int {
        if case .embedded(let files) = source { return files.count }
        return 0
    }

    /// The file at `path` (relative to the console's root, such as `js/app.js`); nil when there
    /// is none. A path that would leave the root is never found.
    public func asset(at path: String) -> ConsoleAsset? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty, !parts.contains(where: { $0 == ".." || $0 == "." || $0.hasPrefix(".") }) else { return nil }
        let clean = parts.joined(separator: "/")
        switch source {
        case .embedded(let files):
            return files[clean]
        case .directory(let root):
            guard let data = FileManager.default.contents(atPath: root + "/" + clean) else { return nil }
            return ConsoleAsset.make(path: clean, body: Array(data))
        }
    }
}

extension ConsoleAsset {
    static func make(path: String, body: [UInt8]) -> ConsoleAsset {
        ConsoleAsset(path: path, contentType: Self.contentType(of: path), body: body, etag: "\"\(Self.fingerprint(body))\"")
    }

    static func contentType(of path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let suffix = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch suffix {
        case "html": return "text/html; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "json": return "application/json"
        case "txt": return "text/plain; charset=utf-8"
        default: return "application/octet-stream"
        }
    }

    /// FNV-1a over the bytes, in hex: enough to tell two versions of a file apart.
    static func fingerprint(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits + "-\(bytes.count)"
    }
}

/// The files the build embedded (`encodedFiles` is generated from the Assets folder).
enum EmbeddedConsole {
    static func decode() -> [String: ConsoleAsset] {
        var files: [String: ConsoleAsset] = [:]
        for (path, base64) in encodedFiles {
            guard let data = Data(base64Encoded: base64) else { continue }
            files[path] = ConsoleAsset.make(path: path, body: Array(data))
        }
        return files
    }
}
