import CourierCore
import Testing

@Suite("Schema registry")
struct SchemaRegistryTests {
    func event(_ type: String, _ version: Int, _ payload: JSONValue) -> Event {
        Event(subject: "events.orders.created", category: "orders", eventType: type, version: version, payload: payload)
    }

    @Test("registration rules, lookups and sorted types")
    func registration() throws {
        let registry = MemorySchemaRegistry()
        try registry.register(EventSchema(eventType: "b.type", version: 1))
        try registry.register(EventSchema(eventType: "a.type", version: 1))
        try registry.register(EventSchema(eventType: "a.type", version: 3))
        #expect(registry.listTypes() == ["a.type", "b.type"])
        #expect(registry.latestVersion(eventType: "a.type") == 3)
        #expect(registry.get(eventType: "a.type", version: 3)?.version == 3)
        #expect(registry.get(eventType: "a.type", version: 2) == nil)
        #expect(throws: CourierError.self) { try registry.register(EventSchema(eventType: "", version: 1)) }
        #expect(throws: CourierError.self) { try registry.register(EventSchema(eventType: "x", version: 0)) }
    }

    @Test("validation names type, version and field")
    func validation() throws {
        let registry = MemorySchemaRegistry()
        try registry.register(
            EventSchema(
                eventType: "order.created", version: 2, requiredFields: ["id", "qty"],
                fieldTypes: [
                    "id": .string, "qty": .integer, "note": .string, "price": .number, "tags": .array,
                    "paid": .boolean, "meta": .object, "gone": .null,
                ]))
        #expect(throws: Never.self) {
            try registry.validate(
                self.event(
                    "order.created", 2,
                    ["id": "1", "qty": 2, "price": 3, "tags": [], "paid": true, "meta": [:], "gone": nil]))
        }
        #expect(throws: Never.self) { try registry.validate(self.event("order.created", 2, ["id": "1", "qty": 2.0])) }
        let missing = #expect(throws: CourierError.self) {
            try registry.validate(self.event("order.created", 2, ["id": "1"]))
        }
        #expect(missing?.code == .validationFailed)
        #expect(missing?.input == "qty")
        #expect(missing?.message.contains("order.created") == true)
        #expect(missing?.message.contains("v2") == true)
        let wrongType = #expect(throws: CourierError.self) {
            try registry.validate(self.event("order.created", 2, ["id": "1", "qty": 2.5]))
        }
        #expect(wrongType?.input == "qty")
        let optionalWrong = #expect(throws: CourierError.self) {
            try registry.validate(self.event("order.created", 2, ["id": "1", "qty": 2, "note": 5]))
        }
        #expect(optionalWrong?.input == "note")
        #expect(throws: CourierError.self) {
            try registry.validate(self.event("order.created", 2, ["not", "an object"]))
        }
        #expect(throws: CourierError.self) {
            try registry.validate(self.event("order.created", 7, ["id": "1", "qty": 1]))
        }
        // Untyped events and unknown types pass.
        #expect(throws: Never.self) { try registry.validate(self.event("", 1, "anything")) }
        #expect(throws: Never.self) { try registry.validate(self.event("unknown.type", 1, 5)) }
    }

    @Test("a schema without required fields accepts non-object payloads")
    func noRequiredFields() throws {
        let registry = MemorySchemaRegistry()
        try registry.register(EventSchema(eventType: "ping", version: 1))
        #expect(throws: Never.self) { try registry.validate(self.event("ping", 1, 42)) }
    }

    @Test(
        "compatibility modes",
        arguments: [
            // (old required, new required, mode, compatible)
            (["a", "b"], ["a", "b", "c"], CompatibilityMode.backward, false),
            (["a", "b"], ["a"], CompatibilityMode.backward, true),
            (["a", "b"], ["a"], CompatibilityMode.forward, false),
            (["a", "b"], ["a", "b", "c"], CompatibilityMode.forward, true),
            (["a", "b"], ["b", "a"], CompatibilityMode.full, true),
            (["a", "b"], ["a", "c"], CompatibilityMode.full, false),
            (["a"], ["z"], CompatibilityMode.none, true),
        ]
    )
    func compatibility(_ old: [String], _ new: [String], _ mode: CompatibilityMode, _ compatible: Bool) throws {
        let registry = MemorySchemaRegistry()
        try registry.register(EventSchema(eventType: "t", version: 1, requiredFields: old))
        try registry.register(EventSchema(eventType: "t", version: 2, requiredFields: new))
        if compatible {
            #expect(throws: Never.self) { try registry.checkCompatibility(eventType: "t", version: 2, mode: mode) }
        } else {
            let error = #expect(throws: CourierError.self) {
                try registry.checkCompatibility(eventType: "t", version: 2, mode: mode)
            }
            #expect(error?.code == .validationFailed)
        }
        // Enforced on registration.
        let enforcing = MemorySchemaRegistry(enforcing: mode)
        try enforcing.register(EventSchema(eventType: "t", version: 1, requiredFields: old))
        if compatible {
            #expect(throws: Never.self) {
                try enforcing.register(EventSchema(eventType: "t", version: 2, requiredFields: new))
            }
        } else {
            #expect(throws: CourierError.self) {
                try enforcing.register(EventSchema(eventType: "t", version: 2, requiredFields: new))
            }
            #expect(enforcing.latestVersion(eventType: "t") == 1)
        }
    }

    @Test("a changed field type breaks compatibility")
    func typeChange() throws {
        let registry = MemorySchemaRegistry()
        try registry.register(
            EventSchema(eventType: "t", version: 1, requiredFields: ["a"], fieldTypes: ["a": .string]))
        try registry.register(
            EventSchema(eventType: "t", version: 2, requiredFields: ["a"], fieldTypes: ["a": .integer]))
        #expect(throws: CourierError.self) {
            try registry.checkCompatibility(eventType: "t", version: 2, mode: .backward)
        }
        #expect(throws: Never.self) { try registry.checkCompatibility(eventType: "t", version: 2, mode: .none) }
        #expect(throws: CourierError.self) { try registry.checkCompatibility(eventType: "t", version: 9, mode: .full) }
        #expect(throws: CourierError.self) { try JSONFieldType(named: "decimal") }
    }
}
