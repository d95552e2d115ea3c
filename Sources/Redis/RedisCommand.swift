import CSwitchboardHiredis
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One argument of a command: binary-safe bytes, writable as a string or integer literal.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: ByteBuffer

    public init(_ bytes: ByteBuffer) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = ByteBuffer(string: string) }
    public init(_ bytes: [UInt8]) { self.bytes = ByteBuffer(bytes: bytes) }
    public init(_ integer: Int) { self.bytes = ByteBuffer(string: String(integer)) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }
}

/// Encodes commands as RESP multi-bulk requests with hiredis's `redisFormatCommandArgv`.
public enum RESPCommandEncoder {
    /// Appends `arguments` as one command to `buffer`.
    public static func encode(_ arguments: [RedisArgument], into buffer: inout ByteBuffer) throws {
        guard !arguments.isEmpty else { throw RedisError(.invalidCommand, "a command needs at least its name") }
        let total = arguments.reduce(0) { $0 + $1.bytes.readableBytes }
        // hiredis wants an argv of pointers; lay the arguments out in one block so they stay put.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { storage.deallocate() }
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        pointers.reserveCapacity(arguments.count)
        lengths.reserveCapacity(arguments.count)
        var offset = 0
        for argument in arguments {
            let count = argument.bytes.readableBytes
            argument.bytes.withUnsafeReadableBytes { bytes in
                if count > 0 { (storage.baseAddress! + offset).copyMemory(from: bytes.baseAddress!, byteCount: count) }
            }
            pointers.append(UnsafePointer((storage.baseAddress! + offset).assumingMemoryBound(to: CChar.self)))
            lengths.append(count)
            offset += count
        }
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
        defer { free(target) }
        guard length > 0, let target else {
            throw RedisError(.invalidCommand, "redisFormatCommandArgv failed for \(arguments.count) arguments")
        }
        buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }

    /// `arguments` as one encoded command.
    public static func encode(_ arguments: [RedisArgument]) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try encode(arguments, into: &buffer)
        return buffer
    }
}
