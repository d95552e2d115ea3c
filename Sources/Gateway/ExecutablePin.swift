import Agents
import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A template's `sha256` and `scriptSha256`: the program an agent runs must be the one the
/// operator vetted. A binary replaced on `PATH`, or a script edited in place, is refused before
/// it runs rather than handed the agent's credentials and the gateway's traffic.
///
/// The file is hashed just before it is started; one swapped in between the two is not caught.
enum ExecutablePin {
    /// Why a pinned template is not started. Retrying does not help: the file or the
    /// configuration must change.
    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    /// Checks `executable` (the command as resolved on `PATH`) and, when pinned, the template's
    /// script against their pins.
    static func verify(_ template: AgentTemplate, executable: String) throws(Mismatch) {
        if let pinned = template.executableSHA256 {
            try check(executable, kind: "executable", pinned: pinned)
        }
        if let pinned = template.scriptSHA256 {
            guard let script = script(of: template) else {
                throw Mismatch(description: "the template pins scriptSha256 but none of its arguments names a file")
            }
            try check(script, kind: "script", pinned: pinned)
        }
    }

    /// The first argument naming a regular file, relative to the agent's working directory: the
    /// script of `python3 -u agent.py`.
    static func script(of template: AgentTemplate) -> String? {
        let directory = template.workingDirectory ?? FileManager.default.currentDirectoryPath
        for argument in template.arguments where !argument.isEmpty {
            let path = argument.hasPrefix("/") ? argument : "\(directory)/\(argument)"
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue { return path }
        }
        return nil
    }

    private static func check(_ path: String, kind: String, pinned: String) throws(Mismatch) {
        let actual: String
        do {
            actual = try sha256(ofFile: path)
        } catch {
            throw Mismatch(description: "\(kind) \(path) cannot be read to check its sha256: \(error)")
        }
        guard actual == pinned.lowercased() else {
            throw Mismatch(description: "\(kind) \(path) has sha256 \(actual), the template pins \(pinned.lowercased())")
        }
    }

    struct ReadError: Error, CustomStringConvertible {
        var description: String
    }

    /// The file's SHA-256 in lower-case hex, read a megabyte at a time.
    static func sha256(ofFile path: String) throws(ReadError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(description: String(cString: strerror(errno))) }
        defer { close(fd) }
        var hasher = SHA256()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(description: String(cString: strerror(errno)))
            }
            chunk.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
        return hasher.finalize().map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }
}
