import CourierCore
import Logging
import Synchronization

extension IngestBus {
    // MARK: Flush and shutdown

    /// Returns once every event ingested before the call was handed to the adapter (or
    /// dropped), and the adapter flushed.
    ///
    /// - Throws: `CourierError/Code/timeout` after `timeout`, or the adapter's flush error.
    public func flush(timeout: Duration = .seconds(30)) async throws {
        try await withTaskExecutorPreference(controlExecutor) { try await flushOnControlThread(timeout: timeout) }
    }

    private func flushOnControlThread(timeout: Duration) async throws {
        let count = shardCount
        let targets = (0..<count).map { rings[$0].enqueuedCount }
        for shard in 0..<count { rings[shard].wake() }
        try await waitUntil(timeout: timeout, what: "flush", shards: count) {
            (0..<count).allSatisfy { self.rings[$0].accounted >= targets[$0] }
        }
        try await configuration.adapter.flush()
    }

    /// Stops taking events, drains every ring into the adapter, flushes and shuts the adapter
    /// down. If `deadline` passes first, what is still waiting is dropped and counted, and
    /// ``IngestStats/shutdownWasLossy`` says so. Calling it again returns the final stats.
    @discardableResult
    public func shutdown(deadline: Duration = .seconds(30)) async -> IngestStats {
        await withTaskExecutorPreference(controlExecutor) { await shutdownOnControlThread(deadline: deadline) }
        return stats
    }

    private func shutdownOnControlThread(deadline: Duration) async {
        await control.run {
            let word = layout.load(ordering: .acquiring)
            if word & Self.shutdownFlag != 0 { return }
            layout.store(word | Self.shutdownFlag, ordering: .releasing)
            let count = Int(word & 0xFFFF)
            for shard in 0..<count { rings[shard].close() }
            let drained =
                (try? await waitUntil(timeout: deadline, what: "shutdown", shards: count) {
                    (0..<count).allSatisfy { self.rings[$0].unaccounted == 0 }
                }) != nil
            let all = workers.withLock { Array($0.values) }
            for worker in all { worker.requestStop(abandon: !drained) }
            for worker in all { await worker.finish() }
            if !drained || (0..<count).contains(where: { rings[$0].load(.droppedAtShutdown) > 0 }) {
                lossyShutdown.store(true, ordering: .relaxed)
                configuration.logger.error(
                    "ingest shutdown deadline passed: undelivered events were dropped", metadata: ["stats": "\(stats)"])
            }
            do {
                try await configuration.adapter.flush()
            } catch {
                configuration.logger.error("adapter flush failed at shutdown", metadata: ["error": "\(error)"])
            }
            await configuration.adapter.shutdown()
        }
    }

    /// Waits until `condition` holds — re-checked whenever a shard worker signals progress —
    /// waking the first `shards` workers before each wait, or throws a `timeout` error.
    func waitUntil(timeout: Duration, what: String, shards: Int, _ condition: () -> Bool) async throws {
        let held = await progress.wait(until: .now + timeout, poke: { for shard in 0..<shards { rings[shard].wake() } })
        {
            condition()
        }
        guard held else {
            throw CourierError(
                .timeout, "ingest \(what) did not complete within \(timeout)", input: what, isRetryable: true)
        }
    }
}
