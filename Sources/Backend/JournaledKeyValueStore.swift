#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import Synchronization

/// An in-memory `KeyValueStore` that survives a restart of its process: every write is appended
/// to a journal file (and flushed to the disk) before it is acknowledged, and the journal is
/// replayed when the store opens. Opening also compacts the journal to one line per live key.
///
/// For the embedded backend's durable state (workflow definitions and executions) — a low write
/// rate where a `fdatasync` per write is affordable. Versions and expiry are those of the
/// in-memory store after the replay: a key keeps its value and its remaining time to live, but
/// may get a new version number.
public final class JournaledKeyValueStore: KeyValueStore {
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let memory: InMemoryKeyValueStore
    private let path: String
    private let descriptor = Mutex<Int32>(-1)

    /// Opens (or creates) the journal at `path` and replays it.
    public init(path: String, clock: any BackendClock = SystemClock()) throws {
        self.path = path
        self.memory = InMemoryKeyValueStore(clock: clock)
        replay()
        try compact()
    }

    deinit {
        let fd = descriptor.withLock { $0 }
        if fd >= 0 { close(fd) }
    }

    // MARK: KeyValueStore

    public func get(_ key: String, namespace: String) async throws -> KeyValueEntry? {
        try await memory.get(key, namespace: namespace)
    }

    public func set(_ key: String, to value: ByteBuffer, ttl: Duration?, namespace: String) async throws -> KeyValueWrite {
        let write = try await memory.set(key, to: value, ttl: ttl, namespace: namespace)
        try append(.set(namespace: namespace, key: key, value: value, expiresAt: write.expiresAt))
        return write
    }

    public func delete(_ key: String, namespace: String) async throws -> Bool {
        let deleted = try await memory.delete(key, namespace: namespace)
        if deleted { try append(.delete(namespace: namespace, key: key)) }
        return deleted
    }

    public func compareAndSet(
        _ key: String, expectedVersion: Int64, to value: ByteBuffer, ttl: Duration?, namespace: String
    ) async throws -> CompareAndSetOutcome {
        let outcome = try await memory.compareAndSet(key, expectedVersion: expectedVersion, to: value, ttl: ttl, namespace: namespace)
        if case .stored(let write) = outcome { try append(.set(namespace: namespace, key: key, value: value, expiresAt: write.expiresAt)) }
        return outcome
    }

    public func list(namespace: String, prefix: String, after cursor: String?, limit: Int) async throws -> KeyValuePage {
        try await memory.list(namespace: namespace, prefix: prefix, after: cursor, limit: limit)
    }

    // MARK: The journal

    private enum Record {
        case set(namespace: String, key: String, value: ByteBuffer, expiresAt: Timestamp?)
        case delete(namespace: String, key: String)

        /// One line: `S <ns> <key> <expiry or -> <value>` or `D <ns> <key>`, each field
        /// hex-encoded so that any bytes fit.
        var line: String {
            switch self {
            case .set(let namespace, let key, let value, let expiresAt):
                let expiry = expiresAt.map { String($0.millisecondsSinceEpoch) } ?? "-"
                return "S \(Self.hex(Array(namespace.utf8))) \(Self.hex(Array(key.utf8))) \(expiry) \(Self.hex(Array(value.readableBytesView)))\n"
            case .delete(let namespace, let key):
                return "D \(Self.hex(Array(namespace.utf8))) \(Self.hex(Array(key.utf8)))\n"
            }
        }

        init?(line: Substring) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            switch (fields.first, fields.count) {
            case ("S", 5):
                guard let namespace = Self.unhex(fields[1]), let key = Self.unhex(fields[2]), let value = Self.unhex(fields[4]) else { return nil }
                let expiresAt = Int64(fields[3]).map { Timestamp(millisecondsSinceEpoch: $0) }
                self = .set(namespace: String(decoding: namespace, as: UTF8.self), key: String(decoding: key, as: UTF8.self),
                            value: ByteBuffer(bytes: value), expiresAt: expiresAt)
            case ("D", 3):
                guard let namespace = Self.unhex(fields[1]), let key = Self.unhex(fields[2]) else { return nil }
                self = .delete(namespace: String(decoding: namespace, as: UTF8.self), key: String(decoding: key, as: UTF8.self))
            default:
                return nil
            }
        }

        private static let digits = Array("0123456789abcdef".utf8)

        static func hex(_ bytes: [UInt8]) -> String {
            guard !bytes.isEmpty else { return "_" }
            var out = [UInt8]()
            out.reserveCapacity(bytes.count * 2)
            for byte in bytes {
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0x0f)])
            }
            return String(decoding: out, as: UTF8.self)
        }

        static func unhex(_ text: Substring) -> [UInt8]? {
            if text == "_" { return [] }
            let utf8 = Array(text.utf8)
            guard utf8.count % 2 == 0 else { return nil }
            var out = [UInt8]()
            out.reserveCapacity(utf8.count / 2)
            var index = 0
            while index < utf8.count {
                guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
                out.append(high << 4 | low)
                index += 2
            }
            return out
        }

        private static func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            default: nil
            }
        }
    }

    private func replay() {
        guard let bytes = Self.readAll(path) else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let now = memory.clock.now()
        // A torn last line (a crash mid-write) is skipped: its write was never acknowledged.
        for line in text.split(separator: "\n") {
            switch Record(line: line) {
            case .set(let namespace, let key, let value, let expiresAt)?:
                if let expiresAt, expiresAt <= now {
                    memory.forget(key, namespace: namespace)
                } else {
                    memory.restore(key, value: value, expiresAt: expiresAt, namespace: namespace)
                }
            case .delete(let namespace, let key)?:
                memory.forget(key, namespace: namespace)
            case nil:
                continue
            }
        }
    }

    /// Rewrites the journal as one line per live key (written aside, then renamed over it).
    private func compact() throws {
        let fresh = path + ".compacting"
        var lines = ""
        for (namespace, entries) in memory.snapshot() {
            for entry in entries {
                lines += Record.set(namespace: namespace, key: entry.key, value: entry.value, expiresAt: entry.expiresAt).line
            }
        }
        let fd = open(fresh, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OpenError(description: "cannot write \(fresh): \(String(cString: strerror(errno)))") }
        let written = lines.utf8.withContiguousStorageIfAvailable { Self.writeAll(fd, $0) } ?? Self.writeAll(fd, Array(lines.utf8))
        guard written, fsync(fd) == 0 else {
            close(fd)
            throw OpenError(description: "cannot write \(fresh): \(String(cString: strerror(errno)))")
        }
        close(fd)
        guard rename(fresh, path) == 0 else { throw OpenError(description: "cannot replace \(path): \(String(cString: strerror(errno)))") }
        let journal = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard journal >= 0 else { throw OpenError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        descriptor.withLock { $0 = journal }
    }

    private func append(_ record: Record) throws {
        let bytes = Array(record.line.utf8)
        try descriptor.withLock { fd in
            guard Self.writeAll(fd, bytes), fdatasync(fd) == 0 else {
                throw BackendUnavailable(reason: "cannot write the journal \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return bytes
    }

    private static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let written = array.withUnsafeBytes { write(fd, $0.baseAddress! + offset, array.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}
