import CourierCore
import Logging
import Synchronization

extension IngestBus {
    // MARK: Resharding

    /// Adds `count` shards. Placement changes for many subjects, so the bus first drains every
    /// ring (producers wait meanwhile): no event overtakes an earlier one of its subject.
    ///
    /// - Throws: `CourierError/Code/invalidConfiguration` beyond ``Configuration/maxShards``,
    ///   `CourierError/Code/timeout` if the rings do not drain within `timeout` (the layout is
    ///   then left unchanged), `CourierError/Code/shutdown` after shutdown.
    public func addShards(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        guard count >= 1 else { throw CourierError(.invalidConfiguration, "add at least one shard", input: "count") }
        try await reshard(by: count, timeout: timeout)
    }

    /// Removes the `count` highest-numbered shards after draining them; nothing is lost and
    /// per-subject order is kept.
    ///
    /// - Throws: as ``addShards(_:timeout:)``; at least one shard must remain.
    public func removeShards(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        guard count >= 1 else { throw CourierError(.invalidConfiguration, "remove at least one shard", input: "count") }
        try await reshard(by: -count, timeout: timeout)
    }

    private func reshard(by delta: Int, timeout: Duration) async throws {
        try await withTaskExecutorPreference(controlExecutor) {
            try await reshardOnControlThread(by: delta, timeout: timeout)
        }
    }

    private func reshardOnControlThread(by delta: Int, timeout: Duration) async throws {
        try await control.run {
            let word = layout.load(ordering: .acquiring)
            guard word & Self.shutdownFlag == 0 else { throw CourierError(.shutdown, "the ingest bus is shut down") }
            let current = Int(word & 0xFFFF)
            let target = current + delta
            guard target >= 1, target <= configuration.maxShards else {
                throw CourierError(
                    .invalidConfiguration,
                    "cannot go from \(current) to \(target) shards (1…\(configuration.maxShards))",
                    input: "shards"
                )
            }
            let epoch = (word >> 16) & 0xFFFF
            let nextEpoch = (epoch + 1) & 0xFFFF
            layout.store(word | Self.reshardingFlag, ordering: .releasing)
            for shard in 0..<current { rings[shard].close() }
            do {
                try await waitUntil(timeout: timeout, what: "reshard", shards: current) {
                    (0..<current).allSatisfy { self.rings[$0].unaccounted == 0 }
                }
            } catch {
                for shard in 0..<current { rings[shard].reopen(epoch: epoch) }
                layout.store(word, ordering: .releasing)
                throw error
            }
            if target > current {
                let ready = table.initialized.load(ordering: .acquiring)
                for shard in ready..<max(ready, target) {
                    (rings + shard).initialize(to: IngestRing(capacity: configuration.ringCapacity, epoch: nextEpoch))
                }
                if target > ready { table.initialized.store(target, ordering: .releasing) }
                for shard in current..<target {
                    rings[shard].reopen(epoch: nextEpoch)
                    startWorker(shard)
                }
            } else {
                let removed = workers.withLock { workers in (target..<current).compactMap { workers[$0] } }
                for worker in removed { worker.requestStop(abandon: false) }
                for worker in removed { await worker.finish() }
            }
            for shard in 0..<min(current, target) { rings[shard].reopen(epoch: nextEpoch) }
            layout.store(UInt64(target) | nextEpoch << 16, ordering: .releasing)
            configuration.logger.info("ingest resharded", metadata: ["from": "\(current)", "to": "\(target)"])
        }
    }
}
