import JSONRPC
import NIOCore
import NIOEmbedded
import Transport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The framing and JSON path a peer's bytes take, checked against properties that must hold for
/// any input:
///
/// - Framing does not depend on how the bytes were cut: the same input delivered whole and in
///   pieces of random sizes gives the same frames (lines, and oversize lines with the same length,
///   head and tail).
/// - Nothing a line holds is held past the limit: a line frame is never longer than the limit.
/// - Every decoded message can be answered: an error reply written under its id decodes back as a
///   response with that id, byte for byte; an id read from an oversize line round-trips the same.
/// - Params, results and error data decode to values that re-encode as valid JSON.
///
/// A violated property traps, which the fuzzer reports as a crash with the input that caused it.
enum FramingFuzz {
    /// The first input byte picks the line limit (small, so that oversize lines are common), the
    /// second seeds the cutting; the rest is the stream.
    static func check(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 2 else { return }
        let limit = 16 + Int(input[0]) * 8
        var seed = UInt64(input[1]) &+ 1
        let stream = UnsafeRawBufferPointer(rebasing: input[2...])

        let whole = frames(of: stream, limit: limit) { remaining in remaining }
        let pieces = frames(of: stream, limit: limit) { remaining in
            // xorshift: cheap, deterministic per input.
            seed ^= seed << 13
            seed ^= seed >> 7
            seed ^= seed << 17
            return 1 + Int(seed % UInt64(min(remaining, 3 * limit)))
        }
        precondition(whole == pieces, "framing depends on how the input was cut")

        for frame in whole {
            switch frame {
            case .line(let line):
                precondition(line.readableBytes <= limit, "a line frame longer than the limit")
                checkLine(line)
            case .oversize(let oversize):
                precondition(oversize.length > limit, "an oversize frame within the limit")
                precondition(oversize.head.readableBytes <= OversizeLine.keptBytes)
                precondition(oversize.tail.readableBytes <= OversizeLine.keptBytes)
                let message = OversizeMessage(head: oversize.head, tail: oversize.tail)
                if let id = message.id { checkAnswerable(id) }
            }
        }
        // The decoder must also hold for lines of any length when the limit is generous.
        checkLine(ByteBuffer(bytes: stream))
    }

    /// The frames the decoder gives for `stream` delivered in pieces whose sizes `nextPiece`
    /// chooses (given how many bytes remain), then end of input.
    private static func frames(
        of stream: UnsafeRawBufferPointer,
        limit: Int,
        nextPiece: (Int) -> Int
    ) -> [LineFrame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maximumLineLength: limit)))
        var frames: [LineFrame] = []
        func drain() {
            while let frame = try! channel.readInbound(as: LineFrame.self) { frames.append(frame) }
        }
        var offset = 0
        while offset < stream.count {
            let count = nextPiece(stream.count - offset)
            try! channel.writeInbound(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + count)])))
            drain()
            offset += count
        }
        _ = try! channel.finish()
        drain()
        return frames
    }

    private static func checkLine(_ line: ByteBuffer) {
        switch MessageDecoder().decode(line: line) {
        case .blank, .emptyBatch, .batchTooLarge, .parseError:
            break
        case .single(let entry):
            checkEntry(entry)
        case .batch(let entries):
            entries.forEach(checkEntry)
        }
    }

    private static func checkEntry(_ entry: DecodedEntry) {
        switch entry {
        case .invalid(let id, _):
            if let id { checkAnswerable(id) }
        case .message(.request(let request)):
            checkAnswerable(request.id)
            if let params = request.params { checkValue(params) }
        case .message(.notification(let notification)):
            if let params = notification.params { checkValue(params) }
        case .message(.response(let response)):
            if let id = response.id { checkAnswerable(id) }
            switch response.outcome {
            case .result(let result): checkValue(result)
            case .error(let error): if let data = error.data { checkEncodes(data) }
            }
        }
    }

    /// An error reply under `id` decodes back as a response with the same id.
    private static func checkAnswerable(_ id: JSONRPCID) {
        var reply = ByteBuffer()
        MessageEncoder.writeError(id: id, error: .invalidRequest("fuzz"), to: &reply)
        guard case .single(.message(.response(let response))) = MessageDecoder().decode(line: reply) else {
            preconditionFailure("an error reply does not decode as a response: \(String(buffer: reply))")
        }
        precondition(response.id == id, "the id changed on its way back: \(id) became \(String(describing: response.id))")
        var again = ByteBuffer()
        response.id?.write(to: &again)
        var first = ByteBuffer()
        id.write(to: &first)
        precondition(first == again, "the id is not written byte for byte")
    }

    /// A raw value decodes, and what it decodes to re-encodes as valid JSON.
    private static func checkValue(_ raw: RawJSON) {
        checkEncodes(raw.decoded())
    }

    private static func checkEncodes(_ value: JSONValue) {
        var encoded = ByteBuffer()
        value.write(to: &encoded)
        do {
            _ = try RawJSON(validating: encoded)
        } catch {
            preconditionFailure("a decoded value re-encodes as invalid JSON: \(String(buffer: encoded))")
        }
    }
}

/// Runs the check over the files named (a corpus, or inputs that once crashed), so that a
/// regression is caught by an ordinary build; built with `-DFUZZING` and `-sanitize=fuzzer`
/// (scripts/fuzz.sh), hands the process to libFuzzer instead.
@main
struct FramingFuzzMain {
    static func main() throws {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        #else
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { fatalError("cannot open \(path)") }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let read = fread(&chunk, 1, chunk.count, file)
                if read <= 0 { break }
                bytes.append(contentsOf: chunk[..<read])
            }
            fclose(file)
            bytes.withUnsafeBytes { FramingFuzz.check($0) }
            count += 1
        }
        print("\(count) inputs checked")
        #endif
    }
}

#if FUZZING
/// libFuzzer's driver: SwiftPM names an executable's entry point itself, so libFuzzer's own
/// `main` cannot be used; its driver is called from ours instead.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

private func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FramingFuzz.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif
