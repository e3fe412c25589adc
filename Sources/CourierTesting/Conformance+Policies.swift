import CourierCore
import Testing

extension ProviderConformance {
    static func consume(
        _ ctx: ConformanceContext,
        policy: DeliverPolicy,
        filter: String? = nil,
        expecting count: Int
    ) async throws -> [Event] {
        let subscription = try await ctx.provider.subscribeDurable(
            consumer: "policy",
            filter: filter ?? ctx.subject(">"),
            options: SubscribeOptions(deliverPolicy: policy)
        )
        let received = try await subscription.collect(count, within: ctx.patience)
        for pending in received { try await pending.ack() }
        try await ctx.expectNothing(subscription, for: .milliseconds(300))
        await subscription.close()
        return received.map(\.event)
    }

    static let policies: [ProviderConformanceCase] = [
        check("deliver policy all replays every stored event") { ctx async throws in
            let published = try await ctx.publish(4)
            #expect(try await consume(ctx, policy: .all, expecting: 4) == published)
        },
        check("deliver policy last starts at the last matching event") { ctx async throws in
            let a = try await ctx.publish(3, topic: "a")
            try await ctx.publish(2, topic: "b")
            let received = try await consume(ctx, policy: .last, filter: ctx.subject("a"), expecting: 1)
            #expect(received == [a[2]])
        },
        check("deliver policy new skips stored events") { ctx async throws in
            try await ctx.publish(3)
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "new", filter: ctx.subject(">"), options: SubscribeOptions(deliverPolicy: .new))
            try await ctx.expectNothing(subscription, for: .milliseconds(300))
            let fresh = try await ctx.publish(1)
            let pending = try await ctx.next(subscription)
            #expect(pending.event == fresh[0])
            try await pending.ack()
            await subscription.close()
        },
        check("deliver policy lastPerSubject starts at the last event of each subject") { ctx async throws in
            let a = try await ctx.publish(3, topic: "a")
            let b = try await ctx.publish(2, topic: "b")
            let c = try await ctx.publish(1, topic: "c")
            let received = try await consume(ctx, policy: .lastPerSubject, expecting: 3)
            #expect(Set(received.map(\.id)) == Set([a[2].id, b[1].id, c[0].id]))
        },
        check("deliver policy startSequence starts at that sequence") { ctx async throws in
            var sequences: [UInt64] = []
            var events: [Event] = []
            for i in 0..<5 {
                let event = ctx.event(payload: ["i": .int(Int64(i))])
                sequences.append(try await ctx.provider.publish(event).sequence)
                events.append(event)
            }
            let received = try await consume(ctx, policy: .startSequence(sequences[3]), expecting: 2)
            #expect(received == Array(events[3...]))
        },
        check("deliver policy startTime starts at that time") { ctx async throws in
            try await ctx.publish(3)
            let before = Event.currentTimestamp()
            // Let the clock move past the last stored event's millisecond before publishing again.
            #expect(
                await eventually(within: .seconds(1), every: .milliseconds(2)) { Event.currentTimestamp() > before + 5 }
            )
            let start = Event.currentTimestamp()
            #expect(
                await eventually(within: .seconds(1), every: .milliseconds(2)) { Event.currentTimestamp() > start + 5 })
            let later = try await ctx.publish(2)
            let received = try await consume(ctx, policy: .startTime(unixMilliseconds: start), expecting: 2)
            #expect(received == later)
        },
    ]

    static let queries: [ProviderConformanceCase] = [
        check("history returns the newest events oldest first, filtered and limited") { ctx async throws in
            let orders = try await ctx.publish(6)
            let payments = try await ctx.publish(2, category: "payments")
            #expect(try await ctx.provider.history(filter: nil, limit: 100) == orders + payments)
            #expect(try await ctx.provider.history(filter: nil, limit: 3) == [orders[5]] + payments)
            #expect(
                try await ctx.provider.history(filter: ctx.provider.categorySubject("orders"), limit: 4)
                    == Array(orders.suffix(4)))
            #expect(try await ctx.provider.history(filter: nil, limit: 0).isEmpty)
        },
        check("counts group stored events by category") { ctx async throws in
            try await ctx.publish(3)
            try await ctx.publish(2, category: "payments")
            let counts = try await EventBus(pipeline: ctx.provider).counts(limit: 100)
            #expect(counts.total == 5)
            #expect(counts.categories == ["orders": 3, "payments": 2])
        },
        check("info and health report the stream") { ctx async throws in
            #expect(await ctx.provider.health())
            try await ctx.publish(4)
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "info", filter: ctx.subject(">"), options: SubscribeOptions())
            let info = try await ctx.provider.info()
            #expect(info.messages == 4)
            #expect(info.bytes > 0)
            #expect(info.lastSequence >= 4)
            #expect(info.consumers == 1)
            #expect(info.subjectPrefix == ctx.provider.subjectPrefix)
            #expect(info.provider == ctx.provider.name)
            await subscription.close()
        },
        check("subjects are built and validated from category and topic") { ctx async throws in
            let prefix = ctx.provider.subjectPrefix
            #expect(
                try ctx.provider.buildSubject(category: "market", topic: "forex.eur") == "\(prefix).market.forex.eur")
            #expect(ctx.provider.categorySubject("market") == "\(prefix).market.>")
            #expect(throws: CourierError.self) { try ctx.provider.buildSubject(category: "a.b", topic: "x") }
            #expect(throws: CourierError.self) { try ctx.provider.buildSubject(category: "a", topic: "x y") }
            #expect(throws: CourierError.self) { try ctx.provider.buildSubject(category: "*", topic: "x") }
        },
    ]
}
