import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
import Transport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Connection timeouts")
struct ConnectionTimeoutTests {
    /// An active embedded connection with the handler; `expiries` records why it was closed.
    private final class Probe {
        let channel = EmbeddedChannel()
        var expiries: [ConnectionTimeoutHandler.Expiry] = []
        var busy = false

        init(_ timeouts: ConnectionTimeouts, tls: Bool = false) throws {
            let handler = ConnectionTimeoutHandler(
                timeouts: timeouts, startsAfterTLSHandshake: tls, logger: Logger(label: "test"),
                keepsOpen: { [unowned self] in self.busy },
                onExpiry: { [unowned self] in self.expiries.append($0) })
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func send(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
            channel.pipeline.fireChannelReadComplete()
        }

        func advance(seconds: Int64) {
            channel.embeddedEventLoop.advanceTime(by: .seconds(seconds))
        }

        var isOpen: Bool { channel.isActive }
    }

    private static let onlyFirstMessage = ConnectionTimeouts(idle: nil, partialLine: nil, firstMessage: .seconds(10))
    private static let onlyPartialLine = ConnectionTimeouts(idle: nil, partialLine: .seconds(30), firstMessage: nil)
    private static let onlyIdle = ConnectionTimeouts(idle: .seconds(300), partialLine: nil, firstMessage: nil)

    @Test func aConnectionThatSendsNoCompleteLineIsClosedAtTheFirstMessageDeadline() throws {
        let probe = try Probe(Self.onlyFirstMessage)
        try probe.send("{\"jsonrpc\":")
        probe.advance(seconds: 9)
        #expect(probe.isOpen)
        probe.advance(seconds: 1)
        #expect(!probe.isOpen)
        #expect(probe.expiries == [.firstMessage(.seconds(10))])
    }

    @Test func aCompleteFirstLineStopsTheFirstMessageClock() throws {
        let probe = try Probe(Self.onlyFirstMessage)
        probe.advance(seconds: 5)
        try probe.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        probe.advance(seconds: 60)
        #expect(probe.isOpen)
    }

    @Test func aFirstLineEndingInsideARead() throws {
        let probe = try Probe(Self.onlyFirstMessage)
        try probe.send("{}\n{\"next\":")
        probe.advance(seconds: 60)
        #expect(probe.isOpen)
    }

    @Test func overTLSTheFirstMessageClockStartsAtTheHandshake() throws {
        let probe = try Probe(Self.onlyFirstMessage, tls: true)
        probe.advance(seconds: 60)
        #expect(probe.isOpen)
        probe.channel.pipeline.fireUserInboundEventTriggered(TLSHandshakeCompleted(protocolVersion: "TLSv1.3", cipher: "x", peer: nil))
        probe.advance(seconds: 10)
        #expect(!probe.isOpen)
    }

    @Test func aLineLeftUnfinishedIsClosedAtThePartialLineDeadline() throws {
        let probe = try Probe(Self.onlyPartialLine)
        try probe.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\"")
        probe.advance(seconds: 20)
        // Dribbling more of the same line does not restart its clock.
        try probe.send(":\"2.0\"")
        probe.advance(seconds: 9)
        #expect(probe.isOpen)
        probe.advance(seconds: 1)
        #expect(!probe.isOpen)
        #expect(probe.expiries == [.partialLine(.seconds(30))])
    }

    @Test func aLineThatEndsInTimeIsNotAPartialLine() throws {
        let probe = try Probe(Self.onlyPartialLine)
        try probe.send("{\"jsonrpc\":\"2.0\",")
        probe.advance(seconds: 29)
        try probe.send("\"id\":1,\"method\":\"ping\"}\n")
        probe.advance(seconds: 120)
        #expect(probe.isOpen)
    }

    @Test func aStreamWhoseReadsEndMidLineIsNotASlowloris() throws {
        // Lines keep ending, each read stops inside the next one: every line is young.
        let probe = try Probe(Self.onlyPartialLine)
        try probe.send("{\"a\":")
        for _ in 0..<10 {
            probe.advance(seconds: 20)
            try probe.send("1}\n{\"a\":")
        }
        #expect(probe.isOpen)
    }

    @Test func aQuietConnectionIsClosedAtTheIdleDeadline() throws {
        let probe = try Probe(Self.onlyIdle)
        try probe.send("{}\n")
        probe.advance(seconds: 299)
        #expect(probe.isOpen)
        probe.advance(seconds: 1)
        #expect(!probe.isOpen)
        #expect(probe.expiries == [.idle(.seconds(300))])
    }

    @Test func inputRestartsTheIdleClock() throws {
        let probe = try Probe(Self.onlyIdle)
        probe.advance(seconds: 200)
        try probe.send("{}\n")
        probe.advance(seconds: 200)
        #expect(probe.isOpen)
        probe.advance(seconds: 100)
        #expect(!probe.isOpen)
    }

    @Test func outputRestartsTheIdleClock() throws {
        // A long request answered at 250 s: idle from then on, not from its arrival.
        let probe = try Probe(Self.onlyIdle)
        try probe.send("{}\n")
        probe.busy = true
        probe.advance(seconds: 250)
        probe.busy = false
        try probe.channel.writeAndFlush(ByteBuffer(string: "{}\n")).wait()
        probe.advance(seconds: 299)
        #expect(probe.isOpen)
        probe.advance(seconds: 1)
        #expect(!probe.isOpen)
    }

    @Test func aConnectionHeldOpenIsNeverIdle() throws {
        let probe = try Probe(Self.onlyIdle)
        probe.busy = true
        probe.advance(seconds: 3600)
        #expect(probe.isOpen)
        probe.busy = false
        probe.advance(seconds: 300)
        #expect(!probe.isOpen)
    }

    @Test func allThreeTogetherFireInTheirOwnOrder() throws {
        let probe = try Probe(ConnectionTimeouts(idle: .seconds(300), partialLine: .seconds(30), firstMessage: .seconds(10)))
        try probe.send("{}\n")
        probe.advance(seconds: 100)
        // An unfinished line begins while the timer waits for the idle deadline at 300 s.
        try probe.send("{")
        probe.advance(seconds: 29)
        #expect(probe.isOpen)
        probe.advance(seconds: 1)
        #expect(probe.expiries == [.partialLine(.seconds(30))])
    }
}

@Suite("Accept back-off on descriptor exhaustion")
struct DescriptorExhaustionBackoffTests {
    /// Counts the reads that reach the channel.
    private final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    @Test func holdsReadsForAGrowingPauseAndResumesOnItsOwn() throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandlers(counter, DescriptorExhaustionBackoff(listener: "tcp://test", logger: Logger(label: "test")))
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        channel.read()
        #expect(counter.reads == 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        #expect(counter.reads == 1)
        // Failing again: the pause doubles.
        channel.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(counter.reads == 1)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(counter.reads == 2)
        // An accepted connection ends the exhaustion: reads pass at once.
        channel.pipeline.fireChannelRead(NIOAny(ByteBuffer()))
        channel.read()
        #expect(counter.reads == 3)
    }

    @Test func thePauseStopsGrowingAtItsMaximum() throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandlers(counter, DescriptorExhaustionBackoff(listener: "tcp://test", logger: Logger(label: "test")))
        for _ in 0..<10 { channel.pipeline.fireErrorCaught(IOError(errnoCode: ENFILE, reason: "accept")) }
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(counter.reads == 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(counter.reads == 1)
    }

    @Test func otherErrorsPassThrough() throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandlers(counter, DescriptorExhaustionBackoff(listener: "tcp://test", logger: Logger(label: "test")))
        channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
        #expect(throws: IOError.self) { try channel.throwIfErrorCaught() }
        channel.read()
        #expect(counter.reads == 1)
    }
}
