import CNATSBaseline
import Courier

/// Courier against raw cnats C on the same server. Both sides send the same bytes: the baselines
/// publish the wire JSON of the events Courier publishes (128-byte payloads), with a unique
/// `Nats-Msg-Id` each, as Courier always does.
func jetStreamPairs(url: String) -> [Pair] {
    let asyncCount = 100_000
    let syncCount = 20_000
    let consumeCount = 100_000
    let window = 4096
    let payload: JSONValue = ["data": .string(String(repeating: "x", count: 118))]
    var pairs: [Pair] = []

    for (name, storage, file) in [("memory", JetStreamProvider.Storage.memory, Int32(0)), ("file", .file, 1)] {
        let stream = "BENCH_\(name.uppercased())"
        let prefix = "bench\(name)"
        func reset() { precondition(cb_reset_stream(url, stream, "\(prefix).>", file) == 0, "cannot reset stream") }
        /// Courier's side of the publish rows starts with no stream and creates it, as a service
        /// does: on nats-server 2.12+ with allow_atomic, so publishBatch sends atomic batches.
        func deleteStream() { precondition(cb_delete_stream(url, stream) == 0, "cannot delete stream") }
        func provider() async throws -> JetStreamProvider {
            var configuration = JetStreamProvider.Configuration(url: url)
            configuration.stream = stream
            configuration.subjectPrefix = prefix
            configuration.storage = storage
            configuration.publishWindow = window
            configuration.requestTimeout = .seconds(30)
            return try await JetStreamProvider.connect(configuration)
        }
        func events(_ count: Int) -> [Event] {
            (0..<count).map { _ in Event(subject: "\(prefix).market.fx", category: "market", payload: payload) }
        }
        let wire = events(1)[0].wireJSON()

        pairs.append(
            Pair(
                name: "async publish, \(name) storage",
                baseline: "cnats js_PublishAsync, window \(window)",
                courier: "publishBatch(Event), window \(window)",
                target: 1.0,
                measureBaseline: {
                    reset()
                    let elapsed = wire.withUnsafeBytes {
                        cb_async_publish(
                            url, "\(prefix).market.fx", $0.baseAddress, Int32($0.count), Int32(asyncCount),
                            Int32(window), 1)
                    }
                    precondition(elapsed > 0, "baseline failed")
                    return Double(asyncCount) / elapsed
                },
                measureCourier: {
                    deleteStream()
                    let provider = try await provider()
                    let batch = events(asyncCount)
                    let result = await timed(asyncCount) {
                        let results = await provider.publishBatch(batch)
                        precondition(results.allSatisfy { if case .success = $0 { true } else { false } })
                    }
                    await provider.shutdown()
                    return result
                }
            )
        )
        pairs.append(
            Pair(
                name: "sync publish, \(name) storage",
                baseline: "cnats js_Publish loop",
                courier: "publish(Event) loop on provider.executor",
                target: 0.95,
                measureBaseline: {
                    reset()
                    let elapsed = profiled(syncCount) {
                        wire.withUnsafeBytes {
                            cb_sync_publish(
                                url, "\(prefix).market.fx", $0.baseAddress, Int32($0.count), Int32(syncCount), 1)
                        }
                    }
                    precondition(elapsed > 0, "baseline failed")
                    return Double(syncCount) / elapsed
                },
                measureCourier: {
                    reset()
                    let provider = try await provider()
                    let batch = events(syncCount)
                    let result = try await Task.detached {
                        try await withTaskExecutorPreference(provider.executor) {
                            try await timed(syncCount) { for event in batch { try await provider.publish(event) } }
                        }
                    }.value
                    await provider.shutdown()
                    return result
                }
            )
        )
        func prefillForBaseline() {
            prefillWithC(url: url, stream: stream, prefix: prefix, file: file, wire: wire, count: consumeCount)
        }
        let consume: () async throws -> Double = {
            reset()
            let provider = try await provider()
            _ = await provider.publishBatch(events(consumeCount))
            let subscription = try await provider.subscribeDurable(
                consumer: "bench", filter: "\(prefix).>", options: SubscribeOptions(maxAckPending: 1000))
            let result = try await timedConsumeAndAck(subscription, count: consumeCount)
            await subscription.close()
            await provider.shutdown()
            return result
        }
        pairs.append(
            Pair(
                name: "durable consume + ack, \(name) storage",
                baseline: "cnats pull Fetch(256) + natsMsg_Ack",
                courier: "subscribeDurable, manual ack",
                target: nil,
                measureBaseline: {
                    prefillForBaseline()
                    let elapsed = cb_fetch_ack(url, stream, "fetch", "\(prefix).>", Int32(consumeCount), 256)
                    precondition(elapsed > 0, "baseline failed")
                    return Double(consumeCount) / elapsed
                },
                measureCourier: consume
            )
        )
        pairs.append(
            Pair(
                name: "durable consume + ack, \(name) storage",
                baseline: "cnats push subscription + natsMsg_Ack in the callback",
                courier: "subscribeDurable, manual ack",
                target: 0.9,
                measureBaseline: {
                    prefillForBaseline()
                    return cPushAckRate(url: url, stream: stream, prefix: prefix, count: consumeCount)
                },
                measureCourier: consume
            )
        )
        pairs.append(
            Pair(
                name: "publish + consume at once, \(name) storage",
                baseline:
                    "cnats js_PublishAsync (window \(window)) and a push subscription acking in the callback, concurrently",
                courier:
                    "publishBatch of 1 000, 4 calls in flight, and subscribeDurable with manual ack (courier bench pubsub)",
                target: nil,
                measureBaseline: {
                    reset()
                    let started = ContinuousClock.now
                    let consumed = Task.detached {
                        cb_push_ack(url, stream, "pubsub", "\(prefix).>", Int32(asyncCount), 4096)
                    }
                    let published = wire.withUnsafeBytes {
                        cb_async_publish(
                            url, "\(prefix).market.fx", $0.baseAddress, Int32($0.count), Int32(asyncCount),
                            Int32(window), 1)
                    }
                    let consumedIn = await consumed.value
                    precondition(published > 0 && consumedIn > 0, "baseline failed")
                    return rate(asyncCount, ContinuousClock.now - started)
                },
                measureCourier: {
                    deleteStream()
                    let provider = try await provider()
                    let subscription = try await provider.subscribeDurable(
                        consumer: "pubsub", filter: "\(prefix).>",
                        options: SubscribeOptions(maxAckPending: 4096, deliverPolicy: .all))
                    let started = ContinuousClock.now
                    let consumer = Task.detached {
                        var received = 0
                        while received < asyncCount, let pending = try await subscription.next() {
                            try await pending.ack()
                            received += 1
                        }
                        precondition(received == asyncCount)
                    }
                    try await withThrowingTaskGroup(of: Void.self) { calls in
                        for chunk in 0..<(asyncCount / 1000) {
                            if chunk >= 4 { try await calls.next() }
                            let batch = events(1000)
                            calls.addTask {
                                for result in await provider.publishBatch(batch) { _ = try result.get() }
                            }
                        }
                        try await calls.waitForAll()
                    }
                    try await consumer.value
                    let result = rate(asyncCount, ContinuousClock.now - started)
                    await subscription.close()
                    await provider.shutdown()
                    return result
                }
            )
        )
    }
    return pairs
}

/// Empties `stream` (memory storage, or file when `file` is 1) and fills it with `count` copies of
/// `wire` on `<prefix>.market.fx`, published by raw cnats: the C consumers' starting point.
func prefillWithC(url: String, stream: String, prefix: String, file: Int32, wire: [UInt8], count: Int) {
    precondition(cb_reset_stream(url, stream, "\(prefix).>", file) == 0, "cannot reset stream")
    let elapsed = wire.withUnsafeBytes {
        cb_async_publish(url, "\(prefix).market.fx", $0.baseAddress, Int32($0.count), Int32(count), 4096, 0)
    }
    precondition(elapsed > 0, "prefill failed")
}

/// The consume baseline: a cnats push subscription to a new durable consumer of `stream`
/// (max ack pending 1 000) acking each of the `count` events in its callback; events per second.
func cPushAckRate(url: String, stream: String, prefix: String, count: Int) -> Double {
    let elapsed = profiled(count) { cb_push_ack(url, stream, "push", "\(prefix).>", Int32(count), 1000) }
    precondition(elapsed > 0, "baseline failed")
    return Double(count) / elapsed
}

/// Takes `count` deliveries from `subscription` and acknowledges each, timed on a task of its
/// own; events per second.
func timedConsumeAndAck(_ subscription: EventSubscription, count: Int) async throws -> Double {
    try await Task.detached {
        try await timed(count) {
            var received = 0
            while received < count, let pending = try await subscription.next() {
                try await pending.ack()
                received += 1
            }
            precondition(received == count)
        }
    }.value
}
