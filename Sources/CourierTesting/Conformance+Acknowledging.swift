import CourierCore
import Testing

extension ProviderConformance {
    static let acknowledging: [ProviderConformanceCase] = [
        check("an unacknowledged event is redelivered after ackWait") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "expire", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(3)))
            let event = ctx.event()
            let published = ContinuousClock.now
            try await ctx.provider.publish(event)
            let first = try await ctx.next(subscription)
            #expect(first.deliveryCount == 1)
            let second = try await ctx.next(subscription)
            #expect(second.event.id == event.id)
            #expect(second.deliveryCount == 2)
            try await second.ack()
            // The second delivery expires two ack waits after the publish at the earliest. An ack
            // this task could only send later than that (it was starved on a loaded machine) may
            // cross a third delivery, which is then allowed once.
            if ContinuousClock.now - published >= .milliseconds(5500),
                let third = try await subscription.next(timeout: .milliseconds(3500))
            {
                #expect(third.event.id == event.id)
                try await third.ack()
            }
            try await ctx.expectNothing(subscription, for: .milliseconds(3500))
            await subscription.close()
        },
        check("nak redelivers at once, without waiting for ackWait") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "nak", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(60)))
            try await ctx.provider.publish(ctx.event())
            let first = try await ctx.next(subscription)
            try await first.nak()
            let again = try #require(await subscription.next(timeout: .seconds(5)))
            #expect(again.sequence == first.sequence)
            #expect(again.deliveryCount == 2)
            try await again.ack()
            await subscription.close()
        },
        check("nak(delay:) holds the redelivery back for the delay") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "nakdelay", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(60)))
            try await ctx.provider.publish(ctx.event())
            let first = try await ctx.next(subscription)
            let started = ContinuousClock.now
            try await first.nak(delay: .milliseconds(1500))
            // Only a lower bound can be checked robustly: a busy machine may delay this task (and
            // so the moment it looks), never the server's redelivery to before the delay.
            let again = try await ctx.next(subscription)
            #expect(ContinuousClock.now - started >= .milliseconds(1400))
            #expect(again.deliveryCount == 2)
            try await again.ack()
            await subscription.close()
        },
        check("inProgress restarts the ack-wait timer") { ctx async throws in
            let ackWait = Duration.seconds(6)
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "wip", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: ackWait))
            // The check needs inProgress sent well inside the first ack wait. Times are measured
            // from the publish (the delivery cannot expire before `published + ackWait`, however
            // late this task runs); when this task lagged too much to prove anything, the round is
            // repeated with a new event, and the case fails if no round could prove it.
            // A late round's event may come back once more after its ack (the ack crossed the
            // redelivery): deliveries of earlier rounds' events are acked and passed over.
            func delivery(of event: Event) async throws -> PendingEvent {
                for _ in 0..<10 {
                    let pending = try await ctx.next(subscription)
                    if pending.event.id == event.id { return pending }
                    try await pending.ack()
                }
                throw CourierTestingError("ten deliveries of earlier rounds' events in a row")
            }
            var verified = false
            for _ in 0..<5 where !verified {
                let published = ContinuousClock.now
                let event = ctx.event()
                try await ctx.provider.publish(event)
                let first = try await delivery(of: event)
                try await Task.sleep(for: .seconds(1))  // part of the ack wait passes
                let extended = ContinuousClock.now
                try await first.inProgress()
                guard extended - published < .milliseconds(4500) else {
                    try await first.ack()  // too late to prove anything: try again
                    continue
                }
                // Without the restart the redelivery would come < 6 s after `published`; with
                // it, a whole ack wait after `extended` (lag only makes it later).
                let again = try await delivery(of: event)
                #expect(again.deliveryCount == 2)
                #expect(
                    ContinuousClock.now - extended >= ackWait - .milliseconds(200),
                    "redelivered before the restarted ack wait")
                try await again.ack()
                verified = true
            }
            #expect(verified, "this task lagged in every round: inProgress could not be verified")
            await subscription.close()
        },
        check("maxDeliver exhausted by naks dead-letters the event") { ctx async throws in
            let dlq = MemoryDlqHandler()
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "poison",
                filter: ctx.subject(">"),
                options: SubscribeOptions(maxDeliver: 3, ackWait: .seconds(30), deadLetterHandler: dlq)
            )
            let event = ctx.event()
            try await ctx.provider.publish(event)
            for attempt in 1...3 {
                let pending = try await ctx.next(subscription)
                #expect(pending.deliveryCount == attempt)
                try await pending.nak()
            }
            #expect(await eventually(within: ctx.patience) { dlq.letters().count == 1 })
            let letter = try #require(dlq.letters().first)
            #expect(letter.event.id == event.id)
            #expect(letter.originalSubject == event.subject)
            #expect(letter.attempts == 3)
            #expect(letter.reason.contains("3"))
            try await ctx.expectNothing(subscription, for: .milliseconds(500))
            await subscription.close()
        },
        check("maxDeliver exhausted by ack-wait expiries dead-letters the event") { ctx async throws in
            let dlq = MemoryDlqHandler()
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "expired",
                filter: ctx.subject(">"),
                options: SubscribeOptions(maxDeliver: 2, ackWait: .seconds(1), deadLetterHandler: dlq)
            )
            let event = ctx.event()
            try await ctx.provider.publish(event)
            #expect(try await ctx.next(subscription).deliveryCount == 1)
            #expect(try await ctx.next(subscription).deliveryCount == 2)
            // Keep pulling so the consumer observes the final expiry (a provider may only learn of
            // it from a further delivery it then withholds); nothing more is handed out meanwhile.
            let deadline = ContinuousClock.now + ctx.patience
            while dlq.letters().isEmpty, ContinuousClock.now < deadline {
                try await ctx.expectNothing(subscription, for: .milliseconds(250))
            }
            // Dead-lettering is at least once: a consumer that lags past the ack wait can see the
            // expired delivery again before the provider learnt of the first letter (providers'
            // own dead-letter queues deduplicate by letter id). Every letter is this event's.
            let letters = dlq.letters()
            #expect(!letters.isEmpty)
            #expect(letters.allSatisfy { $0.event.id == event.id && $0.attempts == 2 })
            await subscription.close()
        },
        check("term with a reason dead-letters; term without one just stops delivery") { ctx async throws in
            let dlq = MemoryDlqHandler()
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "term",
                filter: ctx.subject(">"),
                // Long enough that the terms reach the server inside the ack wait even on a
                // loaded CI machine (with 3 s, one CI run saw the first event redelivered).
                options: SubscribeOptions(ackWait: .seconds(6), deadLetterHandler: dlq)
            )
            let published = try await ctx.publish(2)
            let first = try await ctx.next(subscription)
            try await first.term(reason: "invalid order total")
            let second = try await ctx.next(subscription)
            try await second.term()
            #expect(await eventually(within: ctx.patience) { dlq.letters().count == 1 })
            let letter = try #require(dlq.letters().first)
            #expect(letter.event.id == published[0].id)
            #expect(letter.reason.contains("invalid order total"))
            #expect(letter.attempts == 1)
            // Neither comes back, although the 6 s ack wait has passed for both.
            try await ctx.expectNothing(subscription, for: .milliseconds(6500))
            #expect(dlq.letters().count == 1)
            await subscription.close()
        },
        check("a double ack returns once the provider recorded it; the event is not redelivered") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "double", filter: ctx.subject(">"), options: SubscribeOptions(ackWait: .seconds(5)))
            try await ctx.provider.publish(ctx.event())
            let pending = try await ctx.next(subscription)
            // Acked well inside the ack wait, even on a loaded machine: a redelivery the server
            // sent before the ack arrived would prove nothing.
            try await pending.doubleAck()
            #expect(pending.isFinalized)
            let again = await #expect(throws: CourierError.self) { try await pending.doubleAck() }
            #expect(again?.code == .alreadyFinalized)
            try await ctx.expectNothing(subscription, for: .milliseconds(5500))
            await subscription.close()
        },
        check("an acknowledgement that cannot be sent throws and leaves the delivery undecided") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "lost-ack", filter: ctx.subject(">"), options: SubscribeOptions())
            try await ctx.provider.publish(ctx.event())
            let pending = try await ctx.next(subscription)
            await ctx.provider.shutdown()
            await #expect(throws: CourierError.self) { try await pending.ack() }
            #expect(!pending.isFinalized, "a failed ack must not mark the delivery decided")
            await #expect(throws: CourierError.self) { try await pending.doubleAck() }
        },
        check("a delivery is finalised exactly once") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "once", filter: ctx.subject(">"), options: SubscribeOptions())
            try await ctx.provider.publish(ctx.event())
            let pending = try await ctx.next(subscription)
            try await pending.inProgress()
            try await pending.ack()
            #expect(pending.isFinalized)
            for attempt in [
                { try await pending.ack() }, { try await pending.nak() }, { try await pending.term(reason: "x") },
                { try await pending.inProgress() },
            ] as [@Sendable () async throws -> Void] {
                let error = await #expect(throws: CourierError.self) { try await attempt() }
                #expect(error?.code == .alreadyFinalized)
            }
            await subscription.close()
        },
        check("maxAckPending limits unacknowledged deliveries in flight") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "window", filter: ctx.subject(">"),
                options: SubscribeOptions(maxAckPending: 2, ackWait: .seconds(30)))
            let published = try await ctx.publish(3)
            let first = try await ctx.next(subscription)
            let second = try await ctx.next(subscription)
            try await ctx.expectNothing(subscription, for: .milliseconds(700))
            try await first.ack()
            let third = try await ctx.next(subscription)
            #expect([first, second, third].map(\.event.id) == published.map(\.id))
            try await second.ack()
            try await third.ack()
            await subscription.close()
        },
        check("backoff spaces out redeliveries after ack-wait expiries") { ctx async throws in
            let subscription = try await ctx.provider.subscribeDurable(
                consumer: "backoff",
                filter: ctx.subject(">"),
                options: SubscribeOptions(
                    maxDeliver: 3, backoff: [.milliseconds(500), .milliseconds(2500)], ackWait: .seconds(30))
            )
            // Bounds that load cannot break: the first delivery follows the publish, and each
            // observation follows its delivery, so the third is seen ≥ 0.5 + 2.5 s after
            // `published`; the second comes long before the 30 s ack wait would bring it.
            let published = ContinuousClock.now
            try await ctx.provider.publish(ctx.event())
            let first = try await ctx.next(subscription)
            let firstAt = ContinuousClock.now
            let second = try await ctx.next(subscription)
            #expect(ContinuousClock.now - firstAt < .seconds(15), "the first backoff step is 500 ms, not the ack wait")
            #expect(second.deliveryCount == 2)
            let third = try await ctx.next(subscription)
            #expect(ContinuousClock.now - published >= .milliseconds(2900), "the second backoff step is 2.5 s")
            #expect(third.deliveryCount == 3)
            try await third.ack()
            _ = first
            await subscription.close()
        },
    ]
}
