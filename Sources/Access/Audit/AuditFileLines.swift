#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file of the audit log that cannot be opened, read or written.
public struct AuditFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    init(path: String, operation: String, errno code: Int32) {
        self.init(path: path, reason: "\(operation): \(String(cString: strerror(code)))")
    }

    public var description: String { "\(path): \(reason)" }
}

/// One line of an audit file as a reader hands it out; `bytes` lives only for the call.
struct AuditFileLine {
    /// Without its newline. For an overlong line, only part of it.
    var bytes: UnsafeRawBufferPointer
    /// The line's real length in bytes, newline excluded.
    var length: Int
    /// False for a last line that no newline ends: a write cut short.
    var isTerminated: Bool
    /// Longer than the reader's limit: `bytes` holds only a part.
    var isOverlong: Bool
}

/// Reads an audit file a line at a time, front to back or back to front, in fixed-size chunks:
/// memory holds a chunk and at most one line whatever the size of the file. Lines longer than
/// `maximumLineLength` (entries are far shorter: the log bounds each field) are handed out as
/// overlong, not held.
struct AuditFileLines: ~Copyable {
    static let chunkSize = 64 * 1024
    static let defaultMaximumLineLength = 1 << 20

    let path: String
    let maximumLineLength: Int
    private let descriptor: Int32

    init(path: String, maximumLineLength: Int = Self.defaultMaximumLineLength) throws(AuditFileError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw AuditFileError(path: path, operation: "cannot open", errno: errno) }
        self.path = path
        self.maximumLineLength = maximumLineLength
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Calls `body` with each line and its number (from 1) until it returns false.
    func forEach(_ body: (_ number: Int, _ line: AuditFileLine) -> Bool) throws(AuditFileError) {
        var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
        var pending: [UInt8] = []  // the start of a line that the chunk read so far has not ended
        var pendingLength = 0
        var number = 0
        var offset: Int64 = 0
        while true {
            let count = try read(into: &chunk, at: offset)
            if count == 0 { break }
            offset += Int64(count)
            let keepGoing = chunk.withUnsafeBytes { raw -> Bool in
                var start = 0
                while let newline = Self.newline(in: raw, from: start, to: count) {
                    let piece = UnsafeRawBufferPointer(rebasing: raw[start..<newline])
                    start = newline + 1
                    number += 1
                    let stop: Bool
                    if pendingLength == 0 {
                        stop = !body(number, line(piece, length: piece.count, terminated: true))
                    } else {
                        let length = pendingLength + piece.count
                        append(piece, to: &pending)
                        stop = pending.withUnsafeBytes { !body(number, line($0, length: length, terminated: true)) }
                        pending.removeAll(keepingCapacity: true)
                        pendingLength = 0
                    }
                    if stop { return false }
                }
                let rest = UnsafeRawBufferPointer(rebasing: raw[start..<count])
                append(rest, to: &pending)
                pendingLength += rest.count
                return true
            }
            if !keepGoing { return }
        }
        if pendingLength > 0 {
            _ = pending.withUnsafeBytes { body(number + 1, line($0, length: pendingLength, terminated: false)) }
        }
    }

    /// Calls `body` with each line from the last to the first until it returns false: newest first
    /// without reading the rest of the file. A last line without a newline comes first, marked
    /// unterminated; the empty "line" after a final newline is not handed out.
    func forEachBackward(_ body: (_ line: AuditFileLine) -> Bool) throws(AuditFileError) {
        var end = try size()
        var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
        var pending: [UInt8] = []  // the end of a line whose start is not read yet, or its last bytes when overlong
        var pendingLength = 0
        var isLast = true
        while end > 0 {
            let start = max(0, end - Int64(Self.chunkSize))
            let count = Int(end - start)
            guard try read(into: &chunk, at: start, count: count) == count else {
                throw AuditFileError(path: path, reason: "the file got shorter while it was read")
            }
            end = start
            var data = Array(chunk[0..<count])
            data.append(contentsOf: pending)
            var lineEnd = data.count
            var lineLength = pendingLength
            var stopped = false
            data.withUnsafeBytes { raw in
                var scanEnd = count  // newlines in `pending` were handled already
                while let newline = Self.lastNewline(in: raw, before: scanEnd) {
                    lineLength += scanEnd - newline - 1
                    let piece = UnsafeRawBufferPointer(rebasing: raw[(newline + 1)..<lineEnd])
                    if !(isLast && lineLength == 0) {
                        if !body(line(piece, length: lineLength, terminated: !isLast)) { stopped = true; return }
                    }
                    isLast = false
                    lineEnd = newline
                    scanEnd = newline
                    lineLength = 0
                }
                lineLength += scanEnd
            }
            if stopped { return }
            // What precedes the first newline of this chunk belongs to a line that starts earlier.
            // An overlong line keeps only its bytes nearest that start: it is not read anyway.
            pending = Array(data[0..<min(lineEnd, maximumLineLength + 1)])
            pendingLength = lineLength
        }
        if pendingLength > 0 || !isLast {
            _ = pending.withUnsafeBytes { body(line($0, length: pendingLength, terminated: !isLast)) }
        }
    }

    private static func newline(in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        guard start < end, let found = memchr(bytes.baseAddress! + start, 0x0A, end - start) else { return nil }
        return bytes.baseAddress!.distance(to: UnsafeRawPointer(found))
    }

    private static func lastNewline(in bytes: UnsafeRawBufferPointer, before end: Int) -> Int? {
        guard end > 0 else { return nil }
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var index = end
        while index > 0 {
            index -= 1
            if base[index] == 0x0A { return index }
        }
        return nil
    }

    func size() throws(AuditFileError) -> Int64 {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw AuditFileError(path: path, operation: "cannot read", errno: errno) }
        return Int64(status.st_size)
    }

    private func line(_ bytes: UnsafeRawBufferPointer, length: Int, terminated: Bool) -> AuditFileLine {
        AuditFileLine(bytes: bytes, length: length, isTerminated: terminated, isOverlong: length > maximumLineLength)
    }

    /// Keeps at most `maximumLineLength` bytes of a line being assembled.
    private func append(_ bytes: UnsafeRawBufferPointer, to pending: inout [UInt8]) {
        let room = maximumLineLength + 1 - pending.count
        if room > 0 { pending.append(contentsOf: bytes.prefix(room)) }
    }

    private func read(into chunk: inout [UInt8], at offset: Int64, count: Int? = nil) throws(AuditFileError) -> Int {
        let wanted = count ?? chunk.count
        var total = 0
        while total < wanted {
            let got = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + total, wanted - total, off_t(offset) + off_t(total)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw AuditFileError(path: path, operation: "cannot read", errno: errno)
            }
            if got == 0 { break }
            total += got
        }
        return total
    }
}
