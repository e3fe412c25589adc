#if Routing
import CourierCore

/// A trigger prepared for matching: the subject pattern parsed once. A class, so candidate lists
/// hold references rather than copies of the whole trigger.
final class CompiledTrigger: Sendable {
    let trigger: Trigger
    let subject: SubjectFilter?
    /// Insertion order, so results come out in the order triggers were added.
    let order: Int
    let metrics: TriggerMetrics

    init(_ trigger: Trigger, order: Int, metrics: TriggerMetrics) {
        self.trigger = trigger
        self.subject = trigger.filter.compiledSubject
        self.order = order
        self.metrics = metrics
    }

    func matches(_ event: Event) -> Bool { trigger.filter.matches(event, subject: subject) }
}

/// Finds the triggers whose filter can match an event without testing every trigger.
///
/// Each trigger is filed under its most selective indexed condition: its exact event type, else
/// its subject pattern (in a token trie that follows NATS wildcards), else its exact source, else
/// one exact metadata attribute, else a top-level `exact` expression, else a short list of
/// catch-all triggers. An event's candidates are the triggers filed under its type, the trie
/// paths its subject matches, its source, its metadata entries, its values of the expression
/// attributes in use, and the catch-alls; only those are tested against their full filter. Cost
/// grows with the candidates, not with the triggers.
///
/// The index is a value: adding a trigger copies only what it touches, and a reader holding an
/// older copy is never disturbed.
struct TriggerIndex: Sendable {
    private var byType: [String: [CompiledTrigger]] = [:]
    private var bySource: [String: [CompiledTrigger]] = [:]
    private var byMetadata: [String: [String: [CompiledTrigger]]] = [:]
    private var byExpression: [String: [String: [CompiledTrigger]]] = [:]
    private var subjects = SubjectTrie()
    private var catchAll: [CompiledTrigger] = []

    init() {}

    mutating func insert(_ trigger: CompiledTrigger) {
        let filter = trigger.trigger.filter
        if let type = filter.eventType {
            byType[type, default: []].append(trigger)
        } else if let pattern = trigger.subject {
            subjects.insert(pattern.pattern, trigger)
        } else if let source = filter.source {
            bySource[source, default: []].append(trigger)
        } else if let (key, value) = filter.attributes.min(by: { $0.key < $1.key }) {
            byMetadata[key, default: [:]][value, default: []].append(trigger)
        } else if let (attribute, value) = Self.exactExpression(in: filter.expressions) {
            byExpression[attribute, default: [:]][value, default: []].append(trigger)
        } else {
            catchAll.append(trigger)
        }
    }

    /// The first top-level `exact` expression (also inside a top-level `all`).
    private static func exactExpression(in expressions: [FilterExpression]) -> (String, String)? {
        for expression in expressions {
            switch expression {
            case .exact(let attribute, let value): return (attribute, value)
            case .all(let inner): if let found = exactExpression(in: inner) { return found }
            default: continue
            }
        }
        return nil
    }

    /// The triggers matching `event`, in the order they were added.
    func matching(_ event: Event) -> [CompiledTrigger] {
        var candidates: [CompiledTrigger] = []
        func take(_ list: [CompiledTrigger]?) {
            guard let list else { return }
            for trigger in list where trigger.matches(event) { candidates.append(trigger) }
        }
        take(catchAll)
        if !byType.isEmpty { take(byType[event.eventType]) }
        if !bySource.isEmpty { take(bySource[event.source]) }
        if !byMetadata.isEmpty {
            for (key, value) in event.metadata { take(byMetadata[key]?[value]) }
        }
        for (attribute, values) in byExpression {
            if let value = FilterExpression.attribute(attribute, of: event) { take(values[value]) }
        }
        subjects.collect(event.subject) { trigger in
            if trigger.matches(event) { candidates.append(trigger) }
        }
        if candidates.count > 1 { candidates.sort { $0.order < $1.order } }
        return candidates
    }
}

/// A trie of subject patterns by token: literal children, a `*` child, and the triggers whose
/// pattern ends in `>` at this depth. Lookups slice the subject in place: no token is copied.
struct SubjectTrie: Sendable {
    private struct Node: Sendable {
        var literal: [Substring: Node] = [:]
        /// The `*` child: empty or one node (an array gives the recursion its indirection).
        var single: [Node] = []
        var rest: [CompiledTrigger] = []
        var terminal: [CompiledTrigger] = []
    }

    private var root = Node()

    mutating func insert(_ pattern: String, _ trigger: CompiledTrigger) {
        let tokens = pattern.split(separator: ".", omittingEmptySubsequences: false)
        Self.insert(tokens[...], trigger, into: &root)
    }

    private static func insert(_ tokens: ArraySlice<Substring>, _ trigger: CompiledTrigger, into node: inout Node) {
        guard let token = tokens.first else {
            node.terminal.append(trigger)
            return
        }
        switch token {
        case ">":
            node.rest.append(trigger)
        case "*":
            if node.single.isEmpty { node.single.append(Node()) }
            insert(tokens.dropFirst(), trigger, into: &node.single[0])
        default:
            insert(tokens.dropFirst(), trigger, into: &node.literal[token, default: Node()])
        }
    }

    /// Calls `body` with every trigger whose pattern matches `subject`.
    func collect(_ subject: String, _ body: (CompiledTrigger) -> Void) {
        Self.walk(root, subject, subject.startIndex, body)
    }

    /// Visits `node` with the subject's tokens from `start` still to match (`nil`: none left).
    private static func walk(_ node: Node, _ subject: String, _ start: String.Index?, _ body: (CompiledTrigger) -> Void)
    {
        guard let start else {
            node.terminal.forEach(body)
            return
        }
        node.rest.forEach(body)  // '>' matches one or more remaining tokens
        let utf8 = subject.utf8
        let end = utf8[start...].firstIndex(of: UInt8(ascii: ".")) ?? utf8.endIndex
        let next = end == utf8.endIndex ? nil : utf8.index(after: end)
        if !node.literal.isEmpty, let child = node.literal[subject[start..<end]] { walk(child, subject, next, body) }
        if let child = node.single.first { walk(child, subject, next, body) }
    }
}
#endif
