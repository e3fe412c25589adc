import Courier

// A durable worker: it acks what it processed, naks with a delay what failed transiently (the
// event comes back later), and terms what can never succeed (the event goes to the dead-letter
// queue instead of being redelivered forever). Run it twice with `--server`: the durable
// consumer remembers its position across runs.

let provider = try await ProviderSelection.provider(connectionName: "example-durable-worker")
let bus = EventBus(pipeline: provider)
let run = UInt32.random(in: 0...UInt32.max)

// 6 jobs: job 3 fails once (transient), job 5 is poison (it can never be processed).
for job in 1...6 {
    try await bus.publish(
        category: "jobs", topic: "resize", eventType: "job.resize", version: 1,
        summary: "job \(job)", source: "example-\(run)", payload: ["job": .int(Int64(job))]
    )
}

let subscription = try await bus.pipeline.subscribeDurable(
    consumer: "resizer",
    filter: provider.categorySubject("jobs"),
    options: SubscribeOptions(maxDeliver: 5, ackWait: .seconds(30))
)
var done = 0
var transientFailures = 0
var terminated = 0
while done + terminated < 6, let pending = try await subscription.next(timeout: .seconds(10)) {
    guard pending.event.source == "example-\(run)" else {
        try await pending.ack()  // a job left over from an earlier run
        continue
    }
    let job = Int(pending.event.payload["job"]?.intValue ?? 0)
    switch job {
    case 3 where pending.deliveryCount == 1:
        transientFailures += 1
        print("job \(job): transient failure, nak with 200 ms delay (delivery \(pending.deliveryCount))")
        try await pending.nak(delay: .milliseconds(200))
    case 5:
        terminated += 1
        print("job \(job): poison, term → dead-letter queue")
        try await pending.term(reason: "job 5 has a corrupt image")
    default:
        done += 1
        print("job \(job): done (delivery \(pending.deliveryCount))")
        try await pending.ack()
    }
}
await subscription.close()
let letters = try await provider.deadLetters.list(limit: 100)
print(
    "processed \(done), retried \(transientFailures), dead-lettered \(terminated); dead-letter queue holds \(letters.count)"
)
if let letter = letters.last { print("last dead letter: \(letter.event.summary) — \(letter.reason)") }
await provider.shutdown()
