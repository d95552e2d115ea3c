import Backend
import NIOCore
import Testing

/// The behaviour every `ReplicaDirectory` must have. Each case gets a fresh directory; time
/// moves only when the case says so.
enum ReplicaDirectoryContract {
    static let cases: [ContractCase<ReplicaDirectorySubject>] = [
        ContractCase("an announcement is listed, intact, until its time to live has passed") { subject in
            #expect(try await subject.directory.replicas().isEmpty)
            try await subject.directory.announce("gw-1", payload: .json(#"{"agents":["pricer"]}"#), ttl: .minutes(30))
            let listed = try await subject.directory.replicas()
            #expect(listed.map(\.replica) == ["gw-1"])
            #expect(listed.first?.payload.text == #"{"agents":["pricer"]}"#)
            #expect(try await subject.directory.replicas() == listed, "listing changes nothing")
            try await subject.advanceTime(.minutes(20))
            #expect(try await subject.directory.replicas().map(\.replica) == ["gw-1"])
            try await subject.advanceTime(.minutes(11))
            #expect(try await subject.directory.replicas().isEmpty)
        },

        ContractCase("announcing again replaces the payload and restarts the time to live") { subject in
            try await subject.directory.announce("gw-1", payload: .json(#"{"v":1}"#), ttl: .minutes(60))
            try await subject.advanceTime(.minutes(40))
            try await subject.directory.announce("gw-1", payload: .json(#"{"v":2}"#), ttl: .minutes(60))
            try await subject.advanceTime(.minutes(40))
            let listed = try await subject.directory.replicas()
            #expect(listed.map(\.replica) == ["gw-1"])
            #expect(listed.first?.payload.text == #"{"v":2}"#)
            try await subject.advanceTime(.minutes(21))
            #expect(try await subject.directory.replicas().isEmpty)
        },

        ContractCase("replicas are listed by id, each lapsing at its own time") { subject in
            try await subject.directory.announce("gw-c", payload: .json("{}"), ttl: .minutes(30))
            try await subject.directory.announce("gw-a", payload: .json("{}"), ttl: .minutes(300))
            try await subject.directory.announce("gw-b", payload: .json("{}"), ttl: .minutes(120))
            let listed = try await subject.directory.replicas()
            try #require(listed.map(\.replica) == ["gw-a", "gw-b", "gw-c"])
            let lifetimes = listed.map(\.expiresAt.millisecondsSinceEpoch)
            let spread = lifetimes[0] - lifetimes[2]
            // 270 minutes apart, plus the real time between the announcements on a server's clock.
            #expect((16_200_000...16_260_000).contains(spread), "expiries 270 min apart, got \(spread) ms")
            try await subject.advanceTime(.minutes(60))
            #expect(try await subject.directory.replicas().map(\.replica) == ["gw-a", "gw-b"])
        },

        ContractCase("withdrawing removes an announcement at once") { subject in
            try await subject.directory.announce("gw-1", payload: .json("{}"), ttl: .minutes(30))
            try await subject.directory.announce("gw-2", payload: .json("{}"), ttl: .minutes(30))
            try await subject.directory.withdraw("gw-1")
            #expect(try await subject.directory.replicas().map(\.replica) == ["gw-2"])
            try await subject.directory.withdraw("never-announced")
            #expect(try await subject.directory.replicas().map(\.replica) == ["gw-2"])
        },
    ]
}
