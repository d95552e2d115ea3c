#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore

/// The writing end of an audit file: where its chain stands (last sequence and hash) and the
/// appends that extend it. Used by the log's writer only, one batch at a time.
///
/// Opening continues the chain of an existing file from its last entry. A last line that no
/// newline ends is a write a crash cut short; it is cut off (with a warning) so the next entry
/// starts on a line of its own. A last complete line that is not an entry stops the open: the
/// chain cannot be continued from it, and writing on would bury the problem.
struct AuditChainFile: ~Copyable {
    let path: String
    private var descriptor: Int32
    private(set) var lastSequence: UInt64 = 0
    private(set) var lastHash = AuditEntry.firstPreviousHash
    /// The bytes known to hold whole entries: a failed append is cut back to this.
    private var size: Int64

    init(path: String, logger: Logger) throws(AuditFileError) {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw AuditFileError(path: path, operation: "cannot open for appending", errno: errno) }
        let tail: Tail
        do {
            tail = try Self.readTail(path: path)
        } catch {
            close(descriptor)
            throw error
        }
        var size = tail.size
        if tail.tornBytes > 0 {
            logger.warning(
                "audit log: the last line was cut short (a crash mid-write); removing its \(tail.tornBytes) bytes and continuing after the last whole entry",
                metadata: ["file": "\(path)", "last.sequence": "\(tail.last?.sequence ?? 0)"]
            )
            size -= Int64(tail.tornBytes)
            guard ftruncate(descriptor, off_t(size)) == 0 else {
                let code = errno
                close(descriptor)
                throw AuditFileError(path: path, operation: "cannot cut off the incomplete last line", errno: code)
            }
        }
        self.path = path
        self.descriptor = descriptor
        self.size = size
        if let last = tail.last {
            lastSequence = last.sequence
            lastHash = last.hash
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Chains `events` after the last entry and appends them with one write. On failure the file
    /// is cut back to its last whole entry and the chain stays where it was.
    mutating func append(_ events: ArraySlice<AuditEvent>, clock: () -> AuditTime, syncToDisk: Bool) throws(AuditFileError) -> [AuditEntry] {
        var entries: [AuditEntry] = []
        entries.reserveCapacity(events.count)
        var buffer = ByteBuffer()
        var sequence = lastSequence
        var previousHash = lastHash
        for event in events {
            sequence += 1
            let entry = AuditEntry(sequence: sequence, time: clock(), event: event, previousHash: previousHash)
            entry.writeLine(to: &buffer)
            previousHash = entry.hash
            entries.append(entry)
        }
        do throws(AuditFileError) {
            try writeAll(buffer)
            if syncToDisk, fsync(descriptor) != 0 { throw AuditFileError(path: path, operation: "cannot sync", errno: errno) }
        } catch {
            // Part of the batch may have reached the file: a later entry must not follow a torn line.
            _ = ftruncate(descriptor, off_t(size))
            throw error
        }
        size += Int64(buffer.readableBytes)
        lastSequence = sequence
        lastHash = previousHash
        return entries
    }

    /// Syncs and closes; later appends fail.
    mutating func closeFile() {
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        _ = close(descriptor)
        descriptor = -1
    }

    private func writeAll(_ buffer: ByteBuffer) throws(AuditFileError) {
        guard descriptor >= 0 else { throw AuditFileError(path: path, reason: "the audit log is closed") }
        let failure: Int32? = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return written < 0 ? errno : EIO
                }
            }
            return nil
        }
        if let failure { throw AuditFileError(path: path, operation: "cannot append", errno: failure) }
    }

    // MARK: Where an existing file's chain stands

    private struct Tail {
        var size: Int64
        var tornBytes: Int
        var last: AuditEntry?
    }

    private static func readTail(path: String) throws(AuditFileError) -> Tail {
        let lines = try AuditFileLines(path: path)
        var tail = Tail(size: try lines.size(), tornBytes: 0, last: nil)
        var problem: String?
        try lines.forEachBackward { line in
            if !line.isTerminated {
                tail.tornBytes = line.length
                return true
            }
            if line.isOverlong {
                problem = "its last whole line is \(line.length) bytes long: not an audit entry"
                return false
            }
            do {
                tail.last = try AuditLineReading.entry(from: line.bytes)
            } catch {
                problem = "its last whole line is not an audit entry (\(error))"
            }
            return false
        }
        if let problem {
            throw AuditFileError(
                path: path,
                reason: "\(problem); the chain cannot be continued: check the file with `switchboard audit verify` and move it aside"
            )
        }
        return tail
    }
}
