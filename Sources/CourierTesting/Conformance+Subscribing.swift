import CourierCore
import Testing

extension ProviderConformance {
    static let subscribing: [ProviderConformanceCase] = [
        check("durable consumers fan out independently") { ctx async throws in
            let a = try await ctx.provider.subscribeDurable(
                consumer: "fan-a", filter: ctx.subject(">"), options: SubscribeOptions())
            let b = try await ctx.provider.subscribeDurable(
                consumer: "fan-b", filter: ctx.subject(">"), options: SubscribeOptions())
            let published = try await ctx.publish(5)
            let fromA = try await a.collect(5, within: ctx.patience)
            let fromB = try await b.collect(5, within: ctx.patience)
            #expect(fromA.map(\.event.id) == published.map(\.id))
            #expect(fromB.map(\.event.id) == published.map(\.id))
            for pending in fromA { try await pending.ack() }
            // B naks its first event: only B sees it again.
            try await fromB[0].nak()
            for pending in fromB.dropFirst() { try await pending.ack() }
            let again = try await ctx.next(b)
            #expect(again.event.id == published[0].id)
            #expect(again.deliveryCount == 2)
            try await again.ack()
            try await ctx.expectNothing(a, for: .milliseconds(300))
            await a.close()
            await b.close()
        },
        check("ephemeral subscriptions see only events published after they start") { ctx async throws in
            try await ctx.publish(3)
            let subscription = try await ctx.provider.subscribe(ctx.subject(">"), options: SubscribeOptions())
            let fresh = try await ctx.publish(2)
            let received = try await subscription.collect(2, within: ctx.patience)
            #expect(received.map(\.event.id) == fresh.map(\.id))
            for pending in received { try await pending.ack() }
            try await ctx.expectNothing(subscription, for: .milliseconds(300))
            await subscription.close()
        },
        check("ephemeral subscriptions fan out") { ctx async throws in
            let one = try await ctx.provider.subscribe(ctx.subject(">"), options: SubscribeOptions())
            let two = try await ctx.provider.subscribe(ctx.subject(">"), options: SubscribeOptions())
            let published = try await ctx.publish(4)
            for subscription in [one, two] {
                let received = try await subscription.collect(4, within: ctx.patience)
                #expect(received.map(\.event.id) == published.map(\.id))
                for pending in received { try await pending.ack() }
                await subscription.close()
            }
        },
        check("events of one subject arrive in publish order") { ctx async throws in
            var expected: [String: [String]] = [:]
            for i in 0..<60 {
                let topic = i % 3 == 0 ? "a" : (i % 3 == 1 ? "b" : "c")
                let event = ctx.event(topic, payload: ["i": .int(Int64(i))])
                try await ctx.provider.publish(event)
                expected[event.subject, default: []].append(event.id)
            }
            // Each delivery is acknowledged as it arrives, within an ack wait far longer than the
            // wait for a delivery: under a loaded test process, holding all 60 unacknowledged
            // took longer than the default 30 s once, and the expired ones came first again, as
            // they should. Order is what this checks, not the ack wait.
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "order", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(300)))
            var seen: [String: [String]] = [:]
            var redelivered: [UInt64] = []
            for pending in try await subscription.collect(60, within: ctx.patience, acking: true) {
                seen[pending.event.subject, default: []].append(pending.event.id)
                if pending.deliveryCount > 1 { redelivered.append(pending.sequence) }
            }
            #expect(redelivered.isEmpty, "redelivered sequences \(redelivered)")
            #expect(seen == expected)
            await subscription.close()
        },
        check("'*' matches exactly one token") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "star", filter: ctx.subject("*"), options: SubscribeOptions())
            let hit = ctx.event("created")
            try await ctx.provider.publish(ctx.event("created.eu"))
            try await ctx.provider.publish(ctx.event("created", category: "payments"))
            try await ctx.provider.publish(hit)
            let pending = try await ctx.next(subscription)
            #expect(pending.event.id == hit.id)
            try await pending.ack()
            try await ctx.expectNothing(subscription, for: .milliseconds(300))
            await subscription.close()
        },
        check("'>' matches one or more trailing tokens, never zero") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "gt", filter: ctx.subject(">"), options: SubscribeOptions())
            var bare = ctx.event()
            bare.subject = "\(ctx.provider.subjectPrefix).orders"
            try await ctx.provider.publish(bare)
            let one = ctx.event("created")
            let two = ctx.event("created.eu.fr")
            try await ctx.provider.publish(one)
            try await ctx.provider.publish(ctx.event("x", category: "payments"))
            try await ctx.provider.publish(two)
            let received = try await subscription.collect(2, within: ctx.patience)
            #expect(received.map(\.event.id) == [one.id, two.id])
            for pending in received { try await pending.ack() }
            try await ctx.expectNothing(subscription, for: .milliseconds(300))
            await subscription.close()
        },
        check("invalid filters are rejected with an error naming them") { ctx async throws in
            let prefix = ctx.provider.subjectPrefix
            for bad in ["\(prefix).>.x", "\(prefix)..x", "\(prefix).or*ders.x", "", "elsewhere.orders.>"] {
                let error = await #expect(throws: CourierError.self) {
                    _ = try await ctx.provider.subscribeDurable(
                        consumer: "bad", filter: bad, options: SubscribeOptions())
                }
                #expect(error?.code == .invalidFilter)
                #expect(error?.input == bad)
            }
        },
        check("a durable consumer resumes where it left off") { ctx async throws in
            let published = try await ctx.publish(5)
            let first = try await ctx.provider.subscribeDurable(
                consumer: "resume", filter: ctx.subject(">"), options: SubscribeOptions())
            for pending in try await first.collect(3, within: ctx.patience) { try await pending.ack() }
            await first.close()
            let second = try await ctx.provider.subscribeDurable(
                consumer: "resume", filter: ctx.subject(">"), options: SubscribeOptions())
            let rest = try await second.collect(2, within: ctx.patience)
            #expect(rest.map(\.event.id) == published.suffix(2).map(\.id))
            for pending in rest { try await pending.ack() }
            try await ctx.expectNothing(second, for: .milliseconds(300))
            await second.close()
        },
        check("consumer names with dots and wildcards are sanitised and stable") { ctx async throws in
            let published = try await ctx.publish(2)
            let first = try await ctx.provider.subscribeDurable(
                consumer: "orders.worker *>", filter: ctx.subject(">"), options: SubscribeOptions())
            #expect(first.consumer == (try ConsumerName.sanitize("orders.worker *>")))
            try await ctx.next(first).ack()
            await first.close()
            let second = try await ctx.provider.subscribeDurable(
                consumer: "orders.worker *>", filter: ctx.subject(">"), options: SubscribeOptions())
            let next = try await ctx.next(second)
            #expect(next.event.id == published[1].id)
            try await next.ack()
            await second.close()
        },
        check("unsubscribe deletes the consumer and its position") { ctx async throws in
            let published = try await ctx.publish(3)
            let first = try await ctx.provider.subscribeDurable(
                consumer: "gone", filter: ctx.subject(">"), options: SubscribeOptions())
            for pending in try await first.collect(3, within: ctx.patience) { try await pending.ack() }
            await first.close()
            try await ctx.provider.unsubscribe(consumer: "gone")
            let again = try await ctx.provider.subscribeDurable(
                consumer: "gone", filter: ctx.subject(">"), options: SubscribeOptions())
            let replay = try await again.collect(3, within: ctx.patience)
            #expect(replay.map(\.event.id) == published.map(\.id))
            for pending in replay { try await pending.ack() }
            await again.close()
            let error = await #expect(throws: CourierError.self) {
                try await ctx.provider.unsubscribe(consumer: "never-existed")
            }
            #expect(error?.code == .notFound)
        },
        check("subscriptions to one durable consumer share its events") { ctx async throws in
            let options = SubscribeOptions(maxAckPending: 1000)
            let one = try await ctx.provider.subscribeDurable(
                consumer: "shared", filter: ctx.subject(">"), options: options)
            let two = try await ctx.provider.subscribeDurable(
                consumer: "shared", filter: ctx.subject(">"), options: options)
            let published = try await ctx.publish(40)
            let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                for subscription in [one, two] {
                    group.addTask {
                        var mine: [String] = []
                        while let pending = try await subscription.next(timeout: .seconds(2)) {
                            mine.append(pending.event.id)
                            try await pending.ack()
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: [[String]]()) { $0.append($1) }
            }
            #expect(ids.flatMap { $0 }.count == 40)
            #expect(Set(ids.flatMap { $0 }) == Set(published.map(\.id)))
            await one.close()
            await two.close()
        },
        check("the auto-ack sequence acknowledges what it hands out") { ctx async throws in
            let published = try await ctx.publish(3)
            let first = try await ctx.provider.subscribeDurable(
                consumer: "auto", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(3)))
            var ids: [String] = []
            for try await received in first {
                ids.append(received.event.id)
                if ids.count == 3 { break }
            }
            #expect(ids == published.map(\.id))
            await first.close()
            let second = try await ctx.provider.subscribeDurable(
                consumer: "auto", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(3)))
            // An ack lost or late would bring an event back after the 3 s ack wait.
            try await ctx.expectNothing(second, for: .milliseconds(3500))
            await second.close()
        },
    ]
}
