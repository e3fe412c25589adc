#if Routing
import CourierCore
import CourierRouting
import Testing

@Suite("Trigger filters")
struct TriggerFilterTests {
    static let paid = Event(
        id: "evt-1",
        subject: "events.orders.paid",
        category: "orders",
        eventType: "order.paid",
        version: 2,
        payload: ["amount": 12],
        summary: "paid order 7",
        source: "shop-eu",
        metadata: ["tenant": "acme", "region": "eu-west", "traceparent": "00-abc-def-01"]
    )

    @Test("The empty filter matches every event")
    func emptyMatchesAll() throws {
        #expect(TriggerFilter().matches(Self.paid))
        #expect(TriggerFilter().matches(Event(subject: "events.x.y", category: "x", payload: nil)))
    }

    @Test(
        "Each a3s field on its own",
        arguments: [
            (TriggerFilter(eventType: "order.paid"), true),
            (TriggerFilter(eventType: "order.created"), false),
            (TriggerFilter(source: "shop-eu"), true),
            (TriggerFilter(source: "shop"), false),
            (TriggerFilter(subjectPattern: "events.orders.paid"), true),
            (TriggerFilter(subjectPattern: "events.*.paid"), true),
            (TriggerFilter(subjectPattern: "events.>"), true),
            (TriggerFilter(subjectPattern: "events.orders"), false),
            (TriggerFilter(subjectPattern: "events.orders.paid.>"), false),
            (TriggerFilter(subjectPattern: "events.*"), false),
            (TriggerFilter(attributes: ["tenant": "acme"]), true),
            (TriggerFilter(attributes: ["tenant": "acme", "region": "eu-west"]), true),
            (TriggerFilter(attributes: ["tenant": "acme", "region": "us"]), false),
            (TriggerFilter(attributes: ["missing": "x"]), false),
        ])
    func singleFields(filter: TriggerFilter, expected: Bool) throws {
        try filter.validate()
        #expect(filter.matches(Self.paid) == expected)
    }

    @Test("a3s fields are ANDed")
    func fieldsAreAnded() {
        let all = TriggerFilter(
            eventType: "order.paid", source: "shop-eu", subjectPattern: "events.orders.*",
            attributes: ["tenant": "acme"])
        #expect(all.matches(Self.paid))
        for broken in [
            TriggerFilter(eventType: "order.paid", source: "shop-us", subjectPattern: "events.orders.*"),
            TriggerFilter(eventType: "order.paid", source: "shop-eu", subjectPattern: "events.users.*"),
            TriggerFilter(eventType: "order.refunded", source: "shop-eu"),
            TriggerFilter(eventType: "order.paid", attributes: ["tenant": "other"]),
        ] {
            #expect(!broken.matches(Self.paid), "\(broken)")
        }
    }

    @Test(
        "Expressions: exact, prefix, suffix on event attributes and metadata",
        arguments: [
            (FilterExpression.exact("type", "order.paid"), true),
            (.exact("id", "evt-1"), true),
            (.exact("subject", "events.orders.paid"), true),
            (.exact("category", "orders"), true),
            (.exact("a3scategory", "orders"), true),
            (.exact("version", "2"), true),
            (.exact("specversion", "1.0"), true),
            (.exact("tenant", "acme"), true),
            (.exact("tenant", "acm"), false),
            (.prefix("source", "shop-"), true),
            (.prefix("source", "eu"), false),
            (.suffix("source", "-eu"), true),
            (.suffix("summary", "order 7"), true),
            (.prefix("traceparent", "00-"), true),
            (.exact("absent", ""), false),
            (.prefix("absent", ""), false),
        ])
    func leafExpressions(expression: FilterExpression, expected: Bool) throws {
        try expression.validate()
        #expect(expression.matches(Self.paid) == expected)
    }

    @Test("An untyped event has the CloudEvents type a3s.event")
    func untypedType() {
        let untyped = Event(subject: "events.x.y", category: "x", payload: nil)
        #expect(FilterExpression.exact("type", "a3s.event").matches(untyped))
        #expect(FilterExpression.exact("eventType", "").matches(untyped))
    }

    @Test("Expressions combine with all, any and not, and AND with the a3s fields")
    func combinations() throws {
        let euOrUs = FilterExpression.any([.suffix("source", "-eu"), .suffix("source", "-us")])
        let notTest = FilterExpression.not(.exact("tenant", "test"))
        let both = FilterExpression.all([euOrUs, notTest, .prefix("type", "order.")])
        #expect(both.matches(Self.paid))
        #expect(!FilterExpression.not(both).matches(Self.paid))
        #expect(!FilterExpression.all([euOrUs, .exact("tenant", "test")]).matches(Self.paid))
        #expect(FilterExpression.any([.exact("tenant", "test"), .exact("region", "eu-west")]).matches(Self.paid))
        #expect(!FilterExpression.any([.exact("tenant", "test"), .exact("region", "us")]).matches(Self.paid))

        var filter = TriggerFilter(subjectPattern: "events.orders.>", expressions: [both])
        try filter.validate()
        #expect(filter.matches(Self.paid))
        filter.subjectPattern = "events.users.>"
        #expect(!filter.matches(Self.paid), "expressions hold but the subject does not: AND")
        filter = TriggerFilter(subjectPattern: "events.orders.>", expressions: [both, .exact("tenant", "globex")])
        #expect(!filter.matches(Self.paid), "every expression must hold")
    }

    @Test("Knative JSON shape round-trips")
    func knativeJSON() throws {
        let text = """
            {"eventType":"order.paid","subjectPattern":"events.orders.>","attributes":{"tenant":"acme"},
             "expressions":[{"any":[{"exact":{"type":"order.paid"}},{"prefix":{"source":"shop-"}}]},
                            {"not":{"suffix":{"source":"-test"}}},
                            {"all":[{"exact":{"region":"eu-west"}}]}]}
            """
        let filter = try JSONValue(parsing: text).decode(TriggerFilter.self)
        try filter.validate()
        #expect(filter.expressions.count == 3)
        #expect(filter.expressions[1] == .not(.suffix("source", "-test")))
        #expect(filter.matches(Self.paid))
        let again = try JSONValue(encoding: filter).decode(TriggerFilter.self)
        #expect(again == filter)
    }

    @Test(
        "Invalid filters are rejected with the reason",
        arguments: [
            (#"{"subjectPattern":"events.>.x"}"#, "subjectPattern"),
            (#"{"eventtype":"order.paid"}"#, "eventtype"),
            (#"{"expressions":[{"exact":{"type":"a","source":"b"}}]}"#, "exact"),
            (#"{"expressions":[{"exact":{"type":"a"},"prefix":{"source":"b"}}]}"#, "exactly one"),
            (#"{"expressions":[{"contains":{"type":"a"}}]}"#, "exactly one"),
        ])
    func invalidJSONFilters(text: String, mentions: String) throws {
        let error = try #require(throws: CourierError.self) {
            let filter = try JSONValue(parsing: text).decode(TriggerFilter.self)
            try filter.validate()
        }
        #expect("\(error)".contains(mentions), "\(error)")
    }

    @Test("A trigger refuses an invalid filter, naming the trigger and the problem")
    func triggerValidates() throws {
        let sink = CollectorSink()
        let cases: [(TriggerFilter, String)] = [
            (TriggerFilter(subjectPattern: "events..x"), "events..x"),
            (TriggerFilter(subjectPattern: "events.>.more"), ">"),
            (TriggerFilter(eventType: ""), "eventType"),
            (TriggerFilter(source: ""), "source"),
            (TriggerFilter(attributes: ["": "x"]), "attribute"),
            (TriggerFilter(expressions: [.all([])]), "at least one"),
            (TriggerFilter(expressions: [.not(.any([]))]), "at least one"),
            (TriggerFilter(expressions: [.exact("", "x")]), "attribute name"),
        ]
        for (filter, mention) in cases {
            let error = try #require(throws: CourierError.self) { try Trigger(name: "t1", filter: filter, sink: sink) }
            #expect(error.code == .invalidFilter, "\(error)")
            #expect(error.message.contains("trigger 't1'"), "\(error)")
            #expect(error.message.contains(mention), "\(error)")
        }
        #expect(throws: CourierError.self) { try Trigger(name: "", sink: sink) }
        #expect(throws: CourierError.self) { try Trigger(name: "has space", sink: sink) }
        #expect(throws: CourierError.self) { try Trigger(name: "t", sink: sink, delivery: DeliveryPolicy(retries: -1)) }
    }

    @Test("Backoff delays: linear and exponential, capped")
    func backoffDelays() {
        let linear = Backoff.linear(base: .milliseconds(50), maximum: .milliseconds(120))
        #expect(
            (1...4).map { linear.delay(beforeRetry: $0) } == [
                .milliseconds(50), .milliseconds(100), .milliseconds(120), .milliseconds(120),
            ])
        let exponential = Backoff.exponential(base: .milliseconds(100), maximum: .seconds(1))
        #expect(
            (1...6).map { exponential.delay(beforeRetry: $0) }
                == [
                    .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1),
                    .seconds(1),
                ]
        )
        #expect(exponential.delay(beforeRetry: 500) == .seconds(1), "no overflow for large retry numbers")
    }
}
#endif
