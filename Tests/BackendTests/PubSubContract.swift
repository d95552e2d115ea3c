import Backend
import NIOCore
import Testing

/// The behaviour every `PubSub` must have. Delivery may be asynchronous (a server in between),
/// so no case assumes a message has arrived before `next()` or `waitUntilReceived` says so, and
/// "nothing else arrived" is shown by a later sentinel arriving first.
enum PubSubContract {
    static let cases: [ContractCase<PubSubSubject>] = [
        ContractCase("a topic subscriber receives what is published to the topic, in order, intact") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("orders")))
            let first = subject.message("orders", #"{"id":1}"#, publisher: "pricer@3")
            #expect(try await subject.pubsub.publish(first) == 1)
            #expect(try await subject.pubsub.publish(subject.message("orders", #"{"id":2}"#)) == 1)

            let one = try #require(await subscription.next())
            #expect(one.message == first)
            #expect(one.dropped == 0)
            let two = try #require(await subscription.next())
            #expect(two.text == #"{"id":2}"#)
            #expect(two.message.publisher == nil)
            subscription.cancel()
        },

        ContractCase("a topic subscriber receives no other topic") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("a.b")))
            #expect(try await subject.pubsub.publish(subject.message("a.bc", "other")) == 0)
            #expect(try await subject.pubsub.publish(subject.message("a", "parent")) == 0)
            #expect(try await subject.pubsub.publish(subject.message("a.b", "sentinel")) == 1)
            #expect(await subscription.next()?.text == "sentinel")
            subscription.cancel()
        },

        ContractCase("a pattern subscriber receives every topic the glob matches, dots included") { subject in
            let subscription = try await subject.pubsub.subscribe(try subject.pattern("market.*"))
            for topic in ["market.btc", "markets.btc", "market", "market.btc.usd", "stock.market.x", "market."] {
                try await subject.pubsub.publish(subject.message(topic, topic))
            }
            try await subject.pubsub.publish(subject.message("market.end", "sentinel"))
            var received: [String] = []
            while let delivery = await subscription.next() {
                received.append(delivery.message.topic)
                if delivery.text == "sentinel" { break }
            }
            #expect(received == ["market.btc", "market.btc.usd", "market.", "market.end"].map(subject.topic))
            subscription.cancel()
        },

        ContractCase("publish counts the subscriptions it reached; a topic and a pattern are two") { subject in
            #expect(try await subject.pubsub.publish(subject.message("alerts.cpu", "nobody")) == 0)
            let exact = try await subject.pubsub.subscribe(.topic(subject.topic("alerts.cpu")))
            let glob = try await subject.pubsub.subscribe(try subject.pattern("alerts.?pu"))
            #expect(try await subject.pubsub.publish(subject.message("alerts.cpu", "both")) == 2)
            #expect(try await subject.pubsub.publish(subject.message("alerts.gpu", "glob only")) == 1)
            #expect(await exact.next()?.text == "both")
            #expect(await glob.next()?.text == "both")
            #expect(await glob.next()?.text == "glob only")
            exact.cancel()
            glob.cancel()
        },

        ContractCase("after unsubscribe nothing more arrives and next() ends") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("t")))
            #expect(await subject.pubsub.unsubscribe(subscription.id))
            #expect(await subject.pubsub.unsubscribe(subscription.id) == false)
            #expect(try await subject.pubsub.publish(subject.message("t", "late")) == 0)
            #expect(await subscription.next() == nil)
            #expect(subscription.isFinished)
        },

        ContractCase("cancelling a subscription ends it as unsubscribe does") { subject in
            let subscription = try await subject.pubsub.subscribe(try subject.pattern("t.*"))
            subscription.cancel()
            #expect(try await subject.pubsub.publish(subject.message("t.x", "late")) == 0)
            #expect(await subject.pubsub.unsubscribe(subscription.id) == false)
            #expect(await subscription.next() == nil)
        },

        ContractCase("a full queue drops its oldest messages and counts them") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("ticks")), limits: SubscriptionLimits(messages: 3))
            for tick in 1...10 {
                #expect(try await subject.pubsub.publish(subject.message("ticks", "\(tick)")) == 1)
            }
            await subscription.waitUntilReceived(10)
            #expect(subscription.statistics == Subscription.Statistics(received: 10, delivered: 0, dropped: 7, queued: 3))
            var deliveries: [Subscription.Delivery] = []
            for _ in 1...3 { deliveries.append(try #require(await subscription.next())) }
            #expect(deliveries.map(\.text) == ["8", "9", "10"])
            #expect(deliveries.map(\.dropped) == [7, 7, 7])
            subscription.cancel()
        },

        ContractCase("the byte limit drops old messages but always keeps the newest") { subject in
            let subscription = try await subject.pubsub.subscribe(
                .topic(subject.topic("blobs")), limits: SubscriptionLimits(messages: 100, bytes: 10))
            try await subject.pubsub.publish(subject.message("blobs", "aaaaaa"))
            try await subject.pubsub.publish(subject.message("blobs", "bbbbbb"))
            try await subject.pubsub.publish(subject.message("blobs", "a message larger than the limit"))
            await subscription.waitUntilReceived(3)
            let delivery = try #require(await subscription.next())
            #expect(delivery.text == "a message larger than the limit")
            #expect(delivery.dropped == 2)
            subscription.cancel()
        },

        ContractCase("a slow subscriber loses its own old messages and nobody else's") { subject in
            let slow = try await subject.pubsub.subscribe(.topic(subject.topic("feed")), limits: SubscriptionLimits(messages: 1))
            let fast = try await subject.pubsub.subscribe(.topic(subject.topic("feed")), limits: SubscriptionLimits(messages: 100))
            for item in 1...50 {
                #expect(try await subject.pubsub.publish(subject.message("feed", "\(item)")) == 2)
            }
            var fastReceived: [String] = []
            for _ in 1...50 { fastReceived.append(try #require(await fast.next()).text) }
            #expect(fastReceived == (1...50).map(String.init))
            await slow.waitUntilReceived(50)
            let last = try #require(await slow.next())
            #expect(last.text == "50")
            #expect(last.dropped == 49)
            #expect(fast.statistics.dropped == 0)
            slow.cancel()
            fast.cancel()
        },

        ContractCase("a consumer waiting in next() is woken by a publish") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("wake")))
            let pubsub = subject.pubsub
            let message = subject.message("wake", "up")
            async let received = subscription.next()
            try await pubsub.publish(message)
            #expect(await received?.message == message)
            subscription.cancel()
        },

        ContractCase("a cancelled wait in next() returns nil and leaves the subscription usable") { subject in
            let subscription = try await subject.pubsub.subscribe(.topic(subject.topic("quiet")))
            let waiting = Task { await subscription.next() }
            waiting.cancel()
            #expect(await waiting.value == nil)
            try await subject.pubsub.publish(subject.message("quiet", "later"))
            #expect(await subscription.next()?.text == "later")
            subscription.cancel()
        },

        ContractCase("each publisher's messages arrive in the order it published them") { subject in
            let subscription = try await subject.pubsub.subscribe(try subject.pattern("lanes.*"), limits: SubscriptionLimits(messages: 1_000))
            let pubsub = subject.pubsub
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<4 {
                    let messages = (0..<100).map { subject.message("lanes.\(lane)", "\($0)") }
                    group.addTask { for message in messages { try await pubsub.publish(message) } }
                }
                try await group.waitForAll()
            }
            var next: [String: Int] = [:]
            for _ in 0..<400 {
                let delivery = try #require(await subscription.next())
                let expected = next[delivery.message.topic, default: 0]
                #expect(delivery.text == "\(expected)", "out of order on \(delivery.message.topic)")
                next[delivery.message.topic] = expected + 1
            }
            #expect(next.values.allSatisfy { $0 == 100 })
            #expect(subscription.statistics.dropped == 0)
            subscription.cancel()
        },
    ]
}
