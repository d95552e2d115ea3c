import NIOCore
import NIOEmbedded
import Testing
import Transport

@Suite("Line framing")
struct LineFrameDecoderTests {
    private func channel(limit: Int = 64) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maximumLineLength: limit)))
        return channel
    }

    private func lines(_ channel: EmbeddedChannel) throws -> [String] {
        var result: [String] = []
        while let frame = try channel.readInbound(as: LineFrame.self) {
            switch frame {
            case .line(let buffer): result.append(String(buffer: buffer))
            case .oversize(let line): result.append("<oversize \(line.length) > \(line.limit)>")
            }
        }
        return result
    }

    @Test func splitsLinesAndAcceptsCRLF() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "a\nbb\r\n\nccc\n"))
        #expect(try lines(channel) == ["a", "bb", "", "ccc"])
    }

    @Test func reassemblesReadsSplitAnywhereIncludingInsideACharacter() throws {
        let channel = try channel()
        let bytes = Array("{\"é\":\"日本\"}\n".utf8)
        for byte in bytes {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        #expect(try lines(channel) == ["{\"é\":\"日本\"}"])
    }

    @Test func reportsAnOversizeLineOnceWhenItEndsAndDiscardsIt() throws {
        let channel = try channel(limit: 8)
        try channel.writeInbound(ByteBuffer(string: "0123456789"))
        for _ in 0..<100 {
            try channel.writeInbound(ByteBuffer(repeating: UInt8(ascii: "x"), count: 1000))
        }
        #expect(try lines(channel) == [])
        try channel.writeInbound(ByteBuffer(string: "tail\nok\n"))
        #expect(try lines(channel) == ["<oversize 100014 > 8>", "ok"])
    }

    @Test func keepsTheFirstAndLastBytesOfAnOversizeLine() throws {
        let channel = try channel(limit: 16)
        try channel.writeInbound(ByteBuffer(string: #"{"jsonrpc":"2.0","id":7,"#))
        try channel.writeInbound(ByteBuffer(repeating: UInt8(ascii: "x"), count: 10_000))
        try channel.writeInbound(ByteBuffer(string: "last bytes\r\n"))
        guard case .oversize(let line) = try channel.readInbound(as: LineFrame.self) else {
            Issue.record("expected an oversize line")
            return
        }
        #expect(line.length == 24 + 10_000 + 10)
        #expect(String(buffer: line.head).hasPrefix(#"{"jsonrpc":"2.0","id":7,"#))
        #expect(line.head.readableBytes <= OversizeLine.keptBytes)
        // The last bytes kept, less the CR of the CRLF that ended the line.
        #expect(String(buffer: line.tail).hasSuffix("xxlast bytes"))
        #expect(line.tail.readableBytes == OversizeLine.keptBytes - 1)
    }

    /// Found by the framing fuzzer: with a limit below the kept head, the head was only the
    /// first read's bytes, so an id past them was lost when the line arrived in small reads.
    @Test func keepsTheSameHeadHoweverTheLineWasCut() throws {
        let text = #"{"jsonrpc":"2.0","method":"ping","params":{"pad":"padding"},"id":"after-the-first-read"}"#
        let whole = try channel(limit: 16)
        try whole.writeInbound(ByteBuffer(string: text + "\n"))
        let pieces = try channel(limit: 16)
        for start in stride(from: 0, to: text.utf8.count, by: 20) {
            try pieces.writeInbound(ByteBuffer(bytes: Array(text.utf8).dropFirst(start).prefix(20)))
        }
        try pieces.writeInbound(ByteBuffer(string: "\n"))
        guard case .oversize(let first) = try whole.readInbound(as: LineFrame.self),
              case .oversize(let second) = try pieces.readInbound(as: LineFrame.self) else {
            Issue.record("expected oversize lines")
            return
        }
        #expect(String(buffer: second.head) == text)
        #expect(first == second)
    }

    /// Found by the framing fuzzer: a last line one byte over the limit (the byte kept for a
    /// CR) was delivered as a line at the end of input.
    @Test func aLastLineOneByteOverTheLimitIsOversizeAtTheEndOfInput() throws {
        let channel = try channel(limit: 4)
        try channel.writeInbound(ByteBuffer(string: "abcde"))
        _ = try channel.finish()
        #expect(try lines(channel) == ["<oversize 5 > 4>"])
    }

    @Test func discardsSixtyFourMebibytesWithoutANewline() throws {
        let channel = try channel(limit: 1024)
        for _ in 0..<64 {
            try channel.writeInbound(ByteBuffer(repeating: UInt8(ascii: "a"), count: 1 << 20))
        }
        #expect(try lines(channel) == [])
        try channel.writeInbound(ByteBuffer(string: "\nnext\n"))
        #expect(try lines(channel) == ["<oversize 67108864 > 1024>", "next"])
    }

    @Test func reportsAnOversizeLineCutByTheEndOfInput() throws {
        let channel = try channel(limit: 4)
        try channel.writeInbound(ByteBuffer(string: "abcdefgh"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try lines(channel) == ["<oversize 8 > 4>"])
    }

    @Test func rejectsALineThatArrivesWholeButTooLong() throws {
        let channel = try channel(limit: 4)
        try channel.writeInbound(ByteBuffer(string: "abcdefgh\nabc\n"))
        #expect(try lines(channel) == ["<oversize 8 > 4>", "abc"])
    }

    @Test func allowsTheCarriageReturnOfALineAtTheLimit() throws {
        let channel = try channel(limit: 4)
        try channel.writeInbound(ByteBuffer(string: "abcd\r"))
        try channel.writeInbound(ByteBuffer(string: "\n"))
        #expect(try lines(channel) == ["abcd"])
    }

    @Test func deliversALastLineWithoutNewlineAtEndOfInput() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "one\ntwo"))
        #expect(try lines(channel) == ["one"])
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try lines(channel) == ["two"])
    }
}

@Suite("Listen addresses")
struct ListenAddressTests {
    @Test func parsesTCPUnixAndIPv6() throws {
        #expect(try ListenAddress(parsing: "tcp://127.0.0.1:7400") == .tcp(host: "127.0.0.1", port: 7400))
        #expect(try ListenAddress(parsing: "tcp://[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(try ListenAddress(parsing: "unix:///run/sb.sock") == .unix(path: "/run/sb.sock"))
        #expect(try ListenAddress(parsing: "tls://0.0.0.0:7443") == .tls(host: "0.0.0.0", port: 7443))
        #expect(ListenAddress.tcp(host: "::1", port: 9).description == "tcp://[::1]:9")
        #expect(try ListenAddress(parsing: "http://127.0.0.1:7480") == .http(host: "127.0.0.1", port: 7480))
        #expect(try ListenAddress(parsing: "https://[::1]:8443") == .https(host: "::1", port: 8443))
        #expect(ListenAddress.https(host: "::1", port: 8443).description == "https://[::1]:8443")
        #expect(try ListenAddress(parsing: "http://127.0.0.1:0").withPort(9) == .http(host: "127.0.0.1", port: 9))
    }

    @Test("refuses malformed addresses with a reason", arguments: [
        "127.0.0.1:7400", "tcp://127.0.0.1", "tcp://:80", "tcp://host:99999", "unix://relative.sock", "ftp://x:1", "http://x", "tls://host",
        "tcp://[::1:80",
    ])
    func refusesMalformedAddresses(_ text: String) {
        #expect(throws: ListenAddress.ParseError.self) { try ListenAddress(parsing: text) }
    }
}
