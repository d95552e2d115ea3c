import ArgumentParser
import JSONRPC
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How `switchboard serve` writes its log on standard error.
enum LogFormat: String, CaseIterable, ExpressibleByArgument {
    /// `2026-03-02T09:14:05.123+0000 info switchboard: agent=time#1 [Gateway] message`
    case text
    /// `{"ts":"2026-03-02T09:14:05.123Z","level":"info","label":"switchboard","message":"…","agent":"time#1"}`
    case json

    /// A log handler factory for `LoggingSystem.bootstrap`.
    func makeHandler(level: Logger.Level) -> @Sendable (String) -> any LogHandler {
        { label in
            var handler = LineLogHandler(label: label, format: self)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes each event as one line on standard error, in one of the two formats: the text of
/// swift-log's `StreamLogHandler` with milliseconds in the timestamp, or a JSON object with `ts`
/// (ISO 8601, UTC, milliseconds), `level`, `label`, `message`, then the metadata as members
/// (`agent`, `connection`, `peer`, …), keys sorted.
struct LineLogHandler: LogHandler {
    static let fixedMembers: Set<String> = ["ts", "level", "label", "message"]

    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider

    init(label: String, format: LogFormat) {
        self.label = label
        self.format = format
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let members = LogMetadata.merged(base: metadata, provider: metadataProvider, event: event).sorted { $0.key < $1.key }
        switch format {
        case .text: StandardErrorLines.write(textLine(event, members))
        case .json: StandardErrorLines.write(jsonLine(event, members))
        }
    }

    private func textLine(_ event: LogEvent, _ members: [(key: String, value: Logger.Metadata.Value)]) -> ByteBuffer {
        var line = "\(LogTimestamp.now().local) \(event.level) \(label):"
        for (key, value) in members { line += " \(key)=\(value)" }
        line += " [\(event.source)] \(event.message)\n"
        return ByteBuffer(string: line)
    }

    private func jsonLine(_ event: LogEvent, _ members: [(key: String, value: Logger.Metadata.Value)]) -> ByteBuffer {
        var line = ByteBuffer()
        line.writeStaticString("{\"ts\":")
        line.writeJSONString(LogTimestamp.now().iso8601UTC)
        line.writeStaticString(",\"level\":")
        line.writeJSONString(event.level.rawValue)
        line.writeStaticString(",\"label\":")
        line.writeJSONString(label)
        line.writeStaticString(",\"message\":")
        line.writeJSONString(event.message.description)
        for (key, value) in members {
            line.writeStaticString(",")
            // Metadata never overwrites the four fixed members: a key "message" becomes "metadata.message".
            line.writeJSONString(Self.fixedMembers.contains(key) ? "metadata.\(key)" : key)
            line.writeStaticString(":")
            Self.json(value).write(to: &line)
        }
        line.writeStaticString("}\n")
        return line
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let elements): .array(elements.map(json))
        case .dictionary(let members): .object(members.mapValues(json))
        }
    }
}

/// The metadata of one log event: the handler's, the provider's, the event's, and its error.
enum LogMetadata {
    static func merged(base: Logger.Metadata, provider: Logger.MetadataProvider?, event: LogEvent) -> Logger.Metadata {
        var metadata = base
        if let provided = provider?.get(), !provided.isEmpty { metadata.merge(provided) { _, new in new } }
        if let explicit = event.metadata, !explicit.isEmpty { metadata.merge(explicit) { _, new in new } }
        if let error = event.error {
            metadata["error.message"] = "\(error)"
            metadata["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        return metadata
    }
}

/// Writes log lines to standard error, each with one `write(2)` under one lock for the process:
/// lines from several threads never interleave (a pipe promises that only up to PIPE_BUF bytes).
enum StandardErrorLines {
    private static let lock = Mutex(())

    static func write(_ line: ByteBuffer) {
        line.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            lock.withLock { _ in
                var offset = 0
                while offset < bytes.count {
                    let written = Glibc.write(2, base + offset, bytes.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0 && errno == EINTR {
                        continue
                    } else {
                        return  // stderr is gone; a log line is not worth failing for
                    }
                }
            }
        }
    }
}

/// The wall-clock time of a log line, to the millisecond.
struct LogTimestamp {
    var seconds: time_t
    var milliseconds: Int

    static func now() -> LogTimestamp {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return LogTimestamp(seconds: now.tv_sec, milliseconds: Int(now.tv_nsec / 1_000_000))
    }

    /// `2026-03-02T09:14:05.123Z`
    var iso8601UTC: String {
        var time = seconds
        var parts = tm()
        gmtime_r(&time, &parts)
        return Self.format(parts, "%Y-%m-%dT%H:%M:%S") + "." + millisecondDigits + "Z"
    }

    /// `2026-03-02T10:14:05.123+0100`: local time, as `StreamLogHandler` writes it.
    var local: String {
        var time = seconds
        var parts = tm()
        localtime_r(&time, &parts)
        return Self.format(parts, "%Y-%m-%dT%H:%M:%S") + "." + millisecondDigits + Self.format(parts, "%z")
    }

    private var millisecondDigits: String {
        let digits = String(milliseconds)
        return String(repeating: "0", count: 3 - digits.count) + digits
    }

    private static func format(_ parts: tm, _ pattern: String) -> String {
        var parts = parts
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, pattern, &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
