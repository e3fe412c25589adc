import CourierCore
import Testing

@Suite("Subjects and filters")
struct SubjectTests {
    @Test(
        "NATS matching rules",
        arguments: [
            ("events.a.>", "events.a.b", true),
            ("events.a.>", "events.a.b.c", true),
            ("events.a.>", "events.a", false),
            ("events.*.x", "events.a.x", true),
            ("events.*.x", "events.a.b.x", false),
            ("events.*", "events", false),
            ("events.a.b", "events.a.b", true),
            ("events.a.b", "events.a.bc", false),
            ("events.a.b", "events.a", false),
            ("events.a", "events.a.b", false),
            (">", "events.a.b", true),
            ("*.*.*", "events.a.b", true),
            ("*.*.*", "events.a", false),
            ("events.*.>", "events.a", false),
            ("events.*.>", "events.a.b", true),
        ]
    )
    func matching(_ filter: String, _ subject: String, _ expected: Bool) throws {
        #expect(try SubjectFilter(filter).matches(subject) == expected)
    }

    @Test("invalid filters are rejected", arguments: ["", "a..b", "a.>.b", "a.b*", "a.>x", "a. b", ".a", "a."])
    func invalidFilters(_ filter: String) {
        let error = #expect(throws: CourierError.self) { try SubjectFilter(filter) }
        #expect(error?.code == .invalidFilter)
        #expect(error?.input == filter)
    }

    @Test("invalid subjects are rejected", arguments: ["", "a..b", "a.*", "a.>", "a b", "a.\tb", ".a", "a."])
    func invalidSubjects(_ subject: String) {
        let error = #expect(throws: CourierError.self) { try Subjects.validate(subject) }
        #expect(error?.code == .invalidSubject)
        #expect(error?.input == subject)
    }

    @Test("building subjects")
    func building() throws {
        #expect(try Subjects.build(category: "market", topic: "forex") == "events.market.forex")
        #expect(
            try Subjects.build(prefix: "app.events", category: "market", topic: "fx.eur") == "app.events.market.fx.eur")
        #expect(throws: CourierError.self) { try Subjects.build(category: "mar.ket", topic: "x") }
        #expect(Subjects.category(of: "events.market.forex") == "market")
        #expect(Subjects.category(of: "other.market.forex") == nil)
    }

    @Test("filters know whether they can match under a prefix and subset relations")
    func relations() throws {
        #expect(try SubjectFilter(">").canMatch(under: "events"))
        #expect(try SubjectFilter("events.>").canMatch(under: "events"))
        #expect(try !SubjectFilter("events").canMatch(under: "events"))
        #expect(try !SubjectFilter("other.>").canMatch(under: "events"))
        #expect(try SubjectFilter("events.a.b").isSubset(of: SubjectFilter("events.*.b")))
        #expect(try SubjectFilter("events.a.>").isSubset(of: SubjectFilter("events.>")))
        #expect(try !SubjectFilter("events.>").isSubset(of: SubjectFilter("events.a.>")))
    }

    @Test("durable names are sanitised deterministically without collisions")
    func consumerNames() throws {
        #expect(try ConsumerName.sanitize("billing-worker_1") == "billing-worker_1")
        let dotted = try ConsumerName.sanitize("orders.worker")
        let underscored = try ConsumerName.sanitize("orders_worker")
        #expect(dotted != underscored)
        #expect(dotted == (try ConsumerName.sanitize("orders.worker")))
        #expect(dotted.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        let long = try ConsumerName.sanitize(String(repeating: "x", count: 300))
        #expect(long.count <= ConsumerName.maximumLength)
        #expect(throws: CourierError.self) { try ConsumerName.sanitize("") }
        #expect(try ConsumerName.forSubscriber("svc", filter: "events.orders.>").hasPrefix("svc_events_orders__"))
    }
}
