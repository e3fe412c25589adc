import CourierCore
public import Instrumentation
import Synchronization
public import Tracing

/// A tracer for tests: it propagates W3C trace context (`traceparent`, `tracestate`) like an
/// OpenTelemetry tracer does, and records finished spans.
///
/// It is active only inside ``record(_:)`` (a task-local scope), so tests running in parallel in
/// one process see a no-op tracer. Bootstrap it once with ``bootstrapOnce()``.
///
/// ```swift
/// RecordingTracer.bootstrapOnce()
/// let (_, spans) = try await RecordingTracer.record { try await bus.pipeline.publish(event) }
/// ```
public final class RecordingTracer: Tracer, Sendable {
    /// A finished span.
    public struct FinishedSpan: Sendable, Hashable {
        /// The operation name.
        public var name: String
        /// The span kind, as text (`producer`, `consumer`, `internal`, …).
        public var kind: String
        /// 32 hex digits.
        public var traceID: String
        /// 16 hex digits.
        public var spanID: String
        /// The parent span's id, `nil` for a root span.
        public var parentSpanID: String?
        /// Attributes, rendered as text.
        public var attributes: [String: String]
    }

    /// The spans one ``record(_:)`` scope collected.
    public final class Scope: Sendable {
        private let spans = Mutex<[FinishedSpan]>([])
        /// The finished spans so far, in the order they ended.
        public var finished: [FinishedSpan] { spans.withLock { $0 } }
        func append(_ span: FinishedSpan) { spans.withLock { $0.append(span) } }
    }

    @TaskLocal static var scope: Scope?

    private static let shared: RecordingTracer = {
        let tracer = RecordingTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()

    /// Bootstraps the instrumentation system with the recording tracer (once per process).
    public static func bootstrapOnce() { _ = shared }

    /// Runs `body` with recording on and returns its result and the spans finished by then.
    public static func record<T>(_ body: () async throws -> T) async rethrows -> (T, Scope) {
        bootstrapOnce()
        let scope = Scope()
        let result = try await $scope.withValue(scope) { try await body() }
        return (result, scope)
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> InstrumentationContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> RecordedSpan {
        let parent = context()
        guard let scope = Self.scope else {
            return RecordedSpan(name: operationName, kind: kind, context: parent, scope: nil)
        }
        let parentIDs = parent.w3c
        let ids = W3CIDs(
            traceID: parentIDs?.traceID ?? Self.randomHex(bytes: 16),
            spanID: Self.randomHex(bytes: 8),
            parentSpanID: parentIDs?.spanID,
            traceState: parentIDs?.traceState
        )
        var context = parent
        context.w3c = ids
        return RecordedSpan(name: operationName, kind: kind, context: context, scope: scope)
    }

    public func forceFlush() {}

    public func inject<Carrier, Inject: Injector>(
        _ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard Self.scope != nil, let ids = context.w3c else { return }
        injector.inject("00-\(ids.traceID)-\(ids.spanID)-01", forKey: "traceparent", into: &carrier)
        if let state = ids.traceState { injector.inject(state, forKey: "tracestate", into: &carrier) }
    }

    public func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard Self.scope != nil, let header = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = header.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return }
        context.w3c = W3CIDs(
            traceID: String(parts[1]),
            spanID: String(parts[2]),
            parentSpanID: nil,
            traceState: extractor.extract(key: "tracestate", from: carrier)
        )
    }

    static func randomHex(bytes: Int) -> String {
        Hex.encode((0..<bytes).map { _ in UInt8.random(in: 0...255) })
    }
}

/// The W3C ids of a span, kept in its context.
struct W3CIDs: Sendable, Hashable {
    var traceID: String
    var spanID: String
    var parentSpanID: String?
    var traceState: String?
}

private enum W3CKey: ServiceContextKey {
    typealias Value = W3CIDs
}

extension ServiceContext {
    var w3c: W3CIDs? {
        get { self[W3CKey.self] }
        set { self[W3CKey.self] = newValue }
    }
}

/// A span of ``RecordingTracer``; it records itself into its scope when it ends.
public final class RecordedSpan: Span, Sendable {
    private struct State {
        var name: String
        var attributes = SpanAttributes()
        var status: SpanStatus?
        var ended = false
    }

    public let context: InstrumentationContext
    private let kind: SpanKind
    private let scope: RecordingTracer.Scope?
    private let state: Mutex<State>

    init(name: String, kind: SpanKind, context: InstrumentationContext, scope: RecordingTracer.Scope?) {
        self.context = context
        self.kind = kind
        self.scope = scope
        self.state = Mutex(State(name: name))
    }

    public var operationName: String {
        get { state.withLock { $0.name } }
        set { state.withLock { $0.name = newValue } }
    }

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    public var isRecording: Bool { scope != nil }

    public func setStatus(_ status: SpanStatus) { state.withLock { $0.status = status } }
    public func addEvent(_ event: SpanEvent) {}
    public func addLink(_ link: SpanLink) {}

    public func recordError<Instant: TracerInstant>(
        _ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant
    ) {
        state.withLock { $0.attributes["error"] = "\(error)" }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let finished = state.withLock { state -> (String, SpanAttributes)? in
            guard !state.ended else { return nil }
            state.ended = true
            return (state.name, state.attributes)
        }
        guard let scope, let (name, attributes) = finished, let ids = context.w3c else { return }
        var rendered: [String: String] = [:]
        attributes.forEach { key, value in
            switch value {
            case .string(let text): rendered[key] = text
            case .int64(let number): rendered[key] = String(number)
            case .int32(let number): rendered[key] = String(number)
            case .bool(let flag): rendered[key] = String(flag)
            case .double(let number): rendered[key] = String(number)
            default: rendered[key] = "\(value)"
            }
        }
        scope.append(
            RecordingTracer.FinishedSpan(
                name: name, kind: "\(kind)", traceID: ids.traceID, spanID: ids.spanID,
                parentSpanID: ids.parentSpanID, attributes: rendered
            )
        )
    }
}
