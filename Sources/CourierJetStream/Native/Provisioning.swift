#if NATS
internal import CNATS
import CourierCore
import Logging

/// What a stream Courier uses should look like when Courier creates it.
struct StreamSpec: Sendable {
    var name: String
    /// The subject filter the stream must capture (`<prefix>.>`).
    var subject: String
    var storage: JetStreamProvider.Storage
    var replicas: Int
    var maxMessages: Int64
    var maxBytes: Int64
    /// Nanoseconds; 0 keeps messages forever.
    var maxAge: Int64
    /// Nanoseconds.
    var duplicateWindow: Int64

    /// The spec of the event stream of `configuration`.
    init(eventStreamOf configuration: JetStreamProvider.Configuration) {
        name = configuration.stream
        subject = configuration.subjectPrefix + ".>"
        storage = configuration.storage
        replicas = configuration.replicas
        maxMessages = configuration.maxEvents ?? -1
        maxBytes = configuration.maxBytes ?? -1
        maxAge = configuration.maxAge?.nanoseconds ?? 0
        duplicateWindow = configuration.duplicateWindow.nanoseconds
    }

    /// The spec of the dead-letter stream of `configuration`, with `replicas` when the
    /// configuration leaves them to the event stream's count.
    init(deadLetterStreamOf configuration: JetStreamProvider.Configuration, eventReplicas: Int) {
        let dlq = configuration.deadLetterStream
        name = dlq.streamName(eventStream: configuration.stream)
        subject = dlq.prefix(eventPrefix: configuration.subjectPrefix) + ".>"
        storage = configuration.storage
        replicas = dlq.replicas ?? eventReplicas
        maxMessages = -1
        maxBytes = dlq.maxBytes ?? -1
        maxAge = dlq.maxAge?.nanoseconds ?? 0
        duplicateWindow = configuration.duplicateWindow.nanoseconds
    }
}

/// Facts about a stream Courier bound to.
struct StreamFacts: Sendable {
    var name: String
    var replicas: Int
    /// The stream's own message size limit, `nil` when it has none.
    var maxMessageSize: Int?
    var created: Bool
}

/// Creates, checks and (only when asked) updates streams. Every cnats call of provisioning is
/// here; it runs on a blocking-call thread.
enum StreamProvisioner {
    /// Makes sure `spec.name` exists and is usable, as `provisioning` allows.
    ///
    /// - Throws: ``CourierError/Code/notFound`` when the stream is missing and may not be
    ///   created; ``CourierError/Code/invalidConfiguration`` naming the field when an existing
    ///   stream cannot serve Courier; the server's error when a create or update fails.
    static func ensure(
        _ spec: StreamSpec,
        provisioning: JetStreamProvider.StreamProvisioning,
        connection: NATSConnection,
        timeout: Duration,
        logger: Logger
    ) throws -> StreamFacts {
        let js = connection.context
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var jerr = jsErrCode(0)
        let status = js_GetStreamInfo(&info, js, spec.name, nil, &jerr)
        if status == NATS_OK, let info {
            defer { jsStreamInfo_Destroy(info) }
            return try reconcile(
                info.pointee.Config.pointee, with: spec, provisioning: provisioning, connection: connection,
                timeout: timeout, logger: logger)
        }
        guard jerr == JSStreamNotFoundErr || status == NATS_NOT_FOUND else {
            throw CourierError.nats(
                status, "cannot look up stream \(spec.name)", input: spec.name, jsCode: jerr,
                detail: natsLastErrorText())
        }
        guard provisioning.mayCreate else {
            throw CourierError(
                .notFound,
                "stream \(spec.name) does not exist and provisioning is \(provisioning): create it (capturing '\(spec.subject)') or allow Courier to",
                input: spec.name
            )
        }
        let arena = CStringArena()
        var config = jsStreamConfig()
        jsStreamConfig_Init(&config)
        config.Name = arena.c(spec.name)
        config.Subjects = arena.array([spec.subject])
        config.SubjectsLen = 1
        config.Retention = js_LimitsPolicy
        config.Discard = js_DiscardOld
        config.Storage = spec.storage.isFile ? js_FileStorage : js_MemoryStorage
        config.Replicas = Int64(spec.replicas)
        config.MaxMsgs = spec.maxMessages
        config.MaxBytes = spec.maxBytes
        config.MaxAge = spec.maxAge
        config.Duplicates = spec.duplicateWindow
        var created: UnsafeMutablePointer<jsStreamInfo>?
        let addStatus = js_AddStream(&created, js, &config, nil, &jerr)
        if let created { jsStreamInfo_Destroy(created) }
        guard addStatus == NATS_OK else {
            throw CourierError.nats(
                addStatus, "cannot create stream \(spec.name) for '\(spec.subject)'", input: spec.name, jsCode: jerr,
                detail: natsLastErrorText())
        }
        logger.info(
            "created stream",
            metadata: [
                "stream": "\(spec.name)", "subjects": "\(spec.subject)", "storage": "\(spec.storage)",
                "replicas": "\(spec.replicas)",
            ])
        return StreamFacts(name: spec.name, replicas: spec.replicas, maxMessageSize: nil, created: true)
    }

    /// Checks an existing stream; updates it only when `provisioning` says so.
    private static func reconcile(
        _ existing: jsStreamConfig,
        with spec: StreamSpec,
        provisioning: JetStreamProvider.StreamProvisioning,
        connection: NATSConnection,
        timeout: Duration,
        logger: Logger
    ) throws -> StreamFacts {
        func unusable(_ field: String, _ why: String) -> CourierError {
            CourierError(
                .invalidConfiguration, "stream \(spec.name) cannot be used (field '\(field)'): \(why)", input: field)
        }
        var subjects: [String] = []
        for i in 0..<Int(existing.SubjectsLen) {
            if let subject = existing.Subjects[i] { subjects.append(String(cString: subject)) }
        }
        let captured = subjects.contains { (try? SubjectFilter(spec.subject).isSubset(of: SubjectFilter($0))) == true }
        guard captured else {
            throw unusable(
                "subjects",
                "it captures \(subjects) but Courier publishes on '\(spec.subject)'; Courier never changes the subjects of an existing stream"
            )
        }
        guard existing.Retention == js_LimitsPolicy else {
            throw unusable(
                "retention", "Courier needs limits retention (it reads history and shares a stream between consumers)")
        }
        guard !existing.Sealed else { throw unusable("sealed", "the stream is sealed and accepts no messages") }
        guard !existing.NoAck else {
            throw unusable("noAck", "the stream does not acknowledge publishes, so none could be confirmed")
        }
        guard existing.Mirror == nil else { throw unusable("mirror", "a mirror accepts no direct publishes") }

        let existingReplicas = Int(existing.Replicas)
        var differences: [String] = []
        if existing.Storage != (spec.storage.isFile ? js_FileStorage : js_MemoryStorage) {
            differences.append(
                "storage \(existing.Storage == js_FileStorage ? "file" : "memory") (configured \(spec.storage))")
        }
        if existingReplicas != spec.replicas {
            differences.append("replicas \(existingReplicas) (configured \(spec.replicas))")
        }
        if existing.MaxMsgs != spec.maxMessages {
            differences.append("maxEvents \(existing.MaxMsgs) (configured \(spec.maxMessages))")
        }
        if existing.MaxBytes != spec.maxBytes {
            differences.append("maxBytes \(existing.MaxBytes) (configured \(spec.maxBytes))")
        }
        if existing.MaxAge != spec.maxAge {
            differences.append("maxAge \(existing.MaxAge)ns (configured \(spec.maxAge)ns)")
        }
        if existing.Duplicates != spec.duplicateWindow {
            differences.append("duplicateWindow \(existing.Duplicates)ns (configured \(spec.duplicateWindow)ns)")
        }
        if existing.Discard == js_DiscardNew { differences.append("discard new (publishes fail once it is full)") }
        let maxMessageSize = existing.MaxMsgSize > 0 ? Int(existing.MaxMsgSize) : nil
        var facts = StreamFacts(
            name: spec.name, replicas: existingReplicas, maxMessageSize: maxMessageSize, created: false)

        guard case .updateLimits(let allowFewerReplicas) = provisioning.kind else {
            if !differences.isEmpty {
                logger.notice(
                    "using the existing stream as it is; it differs from the configuration",
                    metadata: [
                        "stream": "\(spec.name)", "provisioning": "\(provisioning)",
                        "differences": "\(differences.joined(separator: "; "))",
                    ])
            }
            return facts
        }
        // The update is written as JSON over the stream's own configuration as the server
        // reports it: cnats 3.4.1 would send only the fields it knows, and the server would
        // clear every newer one (allow_atomic, allow_msg_ttl, metadata, …).
        var fields: [String: JSONValue] = [:]
        var changed: [String] = []
        if existing.MaxMsgs != spec.maxMessages {
            fields["max_msgs"] = .int(spec.maxMessages)
            changed.append("maxEvents")
        }
        if existing.MaxBytes != spec.maxBytes {
            fields["max_bytes"] = .int(spec.maxBytes)
            changed.append("maxBytes")
        }
        if existing.MaxAge != spec.maxAge {
            fields["max_age"] = .int(spec.maxAge)
            changed.append("maxAge")
        }
        if existing.Duplicates != spec.duplicateWindow {
            fields["duplicate_window"] = .int(spec.duplicateWindow)
            changed.append("duplicateWindow")
        }
        var newReplicas = existingReplicas
        if spec.replicas > existingReplicas || (spec.replicas < existingReplicas && allowFewerReplicas) {
            fields["num_replicas"] = .int(Int64(spec.replicas))
            newReplicas = spec.replicas
            changed.append("replicas")
        } else if spec.replicas < existingReplicas {
            logger.notice(
                "not lowering the replicas of an existing stream (use updateLimitsAllowingFewerReplicas to allow it)",
                metadata: [
                    "stream": "\(spec.name)", "replicas": "\(existingReplicas)", "configured": "\(spec.replicas)",
                ])
        }
        guard !changed.isEmpty else { return facts }
        let what = "cannot update stream \(spec.name) (changing \(changed.joined(separator: ", ")))"
        let info = try connection.apiRequest("$JS.API.STREAM.INFO.\(spec.name)", [], timeout: timeout)
        guard case .object(var config) = info["config"] else {
            throw CourierError(
                .providerError, "\(what): the stream's configuration could not be read", input: spec.name)
        }
        config.merge(fields) { $1 }
        let reply = try connection.apiRequest(
            "$JS.API.STREAM.UPDATE.\(spec.name)", JSONValue.object(config).jsonBytes(), timeout: timeout)
        if let error = reply["error"] {
            let code = UInt32(clamping: error["err_code"]?.intValue ?? 0)
            throw CourierError.nats(
                NATS_ERR, what, input: changed.first, jsCode: jsErrCode(code),
                detail: error["description"]?.stringValue ?? "\(error)")
        }
        facts.replicas = newReplicas
        logger.notice(
            "updated stream limits as provisioning allows",
            metadata: [
                "stream": "\(spec.name)", "provisioning": "\(provisioning)",
                "changed": "\(changed.joined(separator: ","))",
            ])
        return facts
    }
}
extension StreamProvisioner {
    /// Whether `stream` takes atomic batches (nats-server 2.12+ with `allow_atomic`). cnats
    /// 3.4.1 knows no such field, so the stream's configuration is read, and for a stream
    /// Courier created just now written, as JSON. An existing stream is never changed: without
    /// `allow_atomic` it gets a notice and per-message publishing. Blocking.
    static func atomicBatches(
        stream: String, created: Bool, connection: NATSConnection, timeout: Duration, logger: Logger
    ) throws -> Bool {
        guard connection.serverInfo?.isAtLeast(2, 12) == true else { return false }
        let info = try connection.apiRequest("$JS.API.STREAM.INFO.\(stream)", [], timeout: timeout)
        guard case .object(var config) = info["config"] else {
            throw CourierError(
                .providerError, "stream info of \(stream) has no configuration: \(info)", input: stream)
        }
        if config["allow_atomic"]?.boolValue == true { return true }
        guard created else {
            logger.notice(
                "the stream does not allow atomic batch publish; batches are published per message (set allow_atomic on it to publish them atomically)",
                metadata: ["stream": "\(stream)"])
            return false
        }
        config["allow_atomic"] = .bool(true)
        let updated = try connection.apiRequest(
            "$JS.API.STREAM.UPDATE.\(stream)", JSONValue.object(config).jsonBytes(), timeout: timeout)
        if let error = updated["error"] {
            throw CourierError(
                .providerError,
                "cannot allow atomic batch publish on the stream Courier created: \(error["description"]?.stringValue ?? "\(error)")",
                input: stream, isRetryable: true)
        }
        return updated["config"]?["allow_atomic"]?.boolValue == true
    }
}
#endif
