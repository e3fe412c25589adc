#if NATS
internal import CNATS
import CourierCore
import Dispatch
import Logging
import Synchronization

/// Connection events, counted and logged. Retained for the connection's life: cnats calls it
/// from its own threads until the closed callback, which releases it.
final class ConnectionEvents: Sendable {
    let logger: Logger
    let disconnects = Atomic<UInt64>(0)
    let reconnects = Atomic<UInt64>(0)
    let asyncErrors = Atomic<UInt64>(0)
    let closed = Atomic<Bool>(false)
    /// Set when Courier closes the connection itself: the disconnect that follows is expected.
    let closing = Atomic<Bool>(false)
    private let lastAsyncError = Mutex<String>("")
    /// The INFO of the server the connection is on, read again after each reconnect.
    let serverInfo = Mutex<ServerInfo?>(nil)
    /// The connection's async publisher, told when the connection drops and comes back.
    let publisher = Mutex<AsyncPublisher?>(nil)
    private let infoTimeout: Duration

    let servers: String

    init(logger: Logger, servers: String, infoTimeout: Duration) {
        self.logger = logger
        self.servers = servers
        self.infoTimeout = infoTimeout
    }

    /// Reads the INFO of the server at `url` (blocking) and keeps it.
    func refreshServerInfo(url: String) {
        guard let info = ServerInfo.read(url: url, timeout: infoTimeout) else {
            logger.debug("could not read the server's INFO", metadata: ["url": "\(url)"])
            return
        }
        serverInfo.withLock { $0 = info }
    }

    var lastError: String { lastAsyncError.withLock { $0 } }

    fileprivate func disconnected() {
        if closing.load(ordering: .acquiring) {
            logger.debug("disconnected from NATS on close", metadata: ["servers": "\(servers)"])
            return
        }
        disconnects.add(1, ordering: .relaxed)
        publisher.withLock { $0 }?.connectionLost()
        logger.warning("disconnected from NATS", metadata: ["servers": "\(servers)"])
    }

    fileprivate func reconnected(_ url: String) {
        reconnects.add(1, ordering: .relaxed)
        publisher.withLock { $0 }?.connectionRestored()
        logger.notice("reconnected to NATS", metadata: ["url": "\(url)"])
        // Possibly another server of a cluster, possibly another version: read its INFO anew,
        // off this cnats callback thread.
        Blocking.detach { self.refreshServerInfo(url: url) }
    }

    fileprivate func connectionClosed() {
        closed.store(true, ordering: .releasing)
        logger.info("NATS connection closed")
    }

    fileprivate func asyncError(_ status: natsStatus, subject: String?) {
        let text = String(cString: natsStatus_GetText(status))
        if closing.load(ordering: .acquiring) && status == NATS_CONNECTION_CLOSED {
            logger.debug("subscription closed with the connection", metadata: ["subscription": "\(subject ?? "-")"])
            return
        }
        asyncErrors.add(1, ordering: .relaxed)
        lastAsyncError.withLock { $0 = text }
        logger.error("asynchronous NATS error", metadata: ["error": "\(text)", "subscription": "\(subject ?? "-")"])
    }
}

private func connectedURL(_ nc: OpaquePointer?) -> String {
    guard let nc else { return "" }
    var buffer = [CChar](repeating: 0, count: 256)
    guard natsConnection_GetConnectedUrl(nc, &buffer, buffer.count) == NATS_OK else { return "" }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

private func events(_ closure: UnsafeMutableRawPointer?) -> ConnectionEvents {
    Unmanaged<ConnectionEvents>.fromOpaque(closure!).takeUnretainedValue()
}

/// Runs on cnats' asynchronous-callback thread.
private let onDisconnected: natsConnectionHandler = { _, closure in events(closure).disconnected() }
/// Runs on cnats' asynchronous-callback thread.
private let onReconnected: natsConnectionHandler = { nc, closure in events(closure).reconnected(connectedURL(nc)) }
/// Runs on cnats' asynchronous-callback thread, once; balances the retain taken at connect. cnats
/// 3.4.1 can still deliver an asynchronous error after the closed callback, so the release waits
/// out a grace period instead of happening here.
private let onClosed: natsConnectionHandler = { _, closure in
    events(closure).connectionClosed()
    let address = UInt(bitPattern: closure)
    DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(30)) {
        Unmanaged<ConnectionEvents>.fromOpaque(UnsafeRawPointer(bitPattern: address)!).release()
    }
}
/// Runs on cnats' asynchronous-callback thread. Without it, cnats 3.4.1 drops async errors silently.
/// The subscription pointer is not dereferenced: in 3.4.1 it may already be freed by the time the
/// callback runs (reading its subject crashed here under load).
private let onAsyncError: natsErrHandler = { _, subscription, status, closure in
    events(closure).asyncError(status, subject: subscription == nil ? nil : "a subscription")
}

/// One NATS connection with its JetStream context. Owns the cnats handles and destroys them in
/// reverse order of creation.
///
/// `@unchecked Sendable`: the three handles are set once in `init` and never change; the cnats
/// functions called on them from several threads are thread-safe (cnats locks the connection
/// internally); they are destroyed in `deinit`, when no other reference — and so no call — is
/// left. The other properties are `Sendable` themselves.
final class NATSConnection: @unchecked Sendable {
    let options: OpaquePointer
    let connection: OpaquePointer
    let context: OpaquePointer
    let events: ConnectionEvents
    let publisher: AsyncPublisher
    /// Atomic batch publishing (used only where the server and stream allow it).
    let batches: AtomicBatchPublisher
    let servers: [String]

    /// Connects (blocking: call it through ``Blocking``).
    init(configuration: JetStreamProvider.Configuration) throws {
        _ = NATSLibrary.opened
        let servers = configuration.servers
        let serverList = servers.joined(separator: ",")
        var opts: OpaquePointer?
        var status = natsOptions_Create(&opts)
        guard status == NATS_OK, let opts else {
            throw CourierError.nats(
                status, "cannot create NATS options", input: serverList, detail: natsLastErrorText())
        }
        func check(_ status: natsStatus, _ what: String, _ input: String) throws {
            guard status == NATS_OK else {
                let detail = natsLastErrorText()
                natsOptions_Destroy(opts)
                throw CourierError.nats(status, what, input: input, detail: detail)
            }
        }
        try check(
            withCStringArray(servers) { natsOptions_SetServers(opts, $0, Int32(servers.count)) }, "invalid server URL",
            serverList)
        try check(
            natsOptions_SetName(opts, configuration.connectionName), "invalid connection name",
            configuration.connectionName)
        try check(
            natsOptions_SetTimeout(opts, max(1, configuration.connectTimeout.milliseconds)), "invalid connect timeout",
            "connectTimeout")
        try check(
            natsOptions_SetMaxReconnect(opts, Int32(configuration.reconnect.maxAttempts ?? -1)),
            "invalid reconnect attempts", "reconnect.maxAttempts")
        try check(
            natsOptions_SetReconnectWait(opts, max(1, configuration.reconnect.wait.milliseconds)),
            "invalid reconnect wait", "reconnect.wait")
        // No reconnect buffer to speak of (see `Reconnect`): what is sent while reconnecting fails
        // with NATS_INSUFFICIENT_BUFFER instead of being flushed after the reconnect, ahead of
        // earlier publishes lost with the old connection.
        try check(natsOptions_SetReconnectBufSize(opts, 1), "invalid reconnect buffer", "reconnect")
        try check(natsOptions_SetMaxPendingMsgs(opts, 1 << 20), "invalid pending limit", "maxPendingMsgs")
        switch configuration.authentication.kind {
        case .none: break
        case .token(let token): try check(natsOptions_SetToken(opts, token), "invalid token", "authentication")
        case .userPassword(let user, let password):
            try check(natsOptions_SetUserInfo(opts, user, password), "invalid user or password", user)
        case .credentialsFile(let path):
            try check(natsOptions_SetUserCredentialsFromFiles(opts, path, nil), "cannot load credentials file", path)
        case .nkey(let publicKey, let seedFile):
            try check(natsOptions_SetNKeyFromSeed(opts, publicKey, seedFile), "cannot load nkey seed", seedFile)
        }
        if let tls = configuration.tls {
            try check(natsOptions_SetSecure(opts, true), "cannot enable TLS", serverList)
            if let ca = tls.caFile {
                try check(natsOptions_LoadCATrustedCertificates(opts, ca), "cannot load CA certificates", ca)
            }
            if let certificate = tls.certificateFile, let key = tls.keyFile {
                try check(
                    natsOptions_LoadCertificatesChain(opts, certificate, key), "cannot load client certificate or key",
                    certificate)
            } else if tls.certificateFile != nil || tls.keyFile != nil {
                natsOptions_Destroy(opts)
                throw CourierError(
                    .invalidConfiguration, "mutual TLS needs both certificateFile and keyFile", input: "tls")
            }
            if let host = tls.expectedHostname {
                try check(natsOptions_SetExpectedHostname(opts, host), "invalid expected host name", host)
            }
        }

        let events = ConnectionEvents(
            logger: configuration.logger, servers: serverList, infoTimeout: configuration.connectTimeout)
        let eventsPointer = Unmanaged.passRetained(events).toOpaque()
        natsOptions_SetDisconnectedCB(opts, onDisconnected, eventsPointer)
        natsOptions_SetReconnectedCB(opts, onReconnected, eventsPointer)
        natsOptions_SetClosedCB(opts, onClosed, eventsPointer)
        natsOptions_SetErrorHandler(opts, onAsyncError, eventsPointer)

        var nc: OpaquePointer?
        status = natsConnection_Connect(&nc, opts)
        guard status == NATS_OK, let nc else {
            let detail = natsLastErrorText()
            Unmanaged<ConnectionEvents>.fromOpaque(eventsPointer).release()
            natsOptions_Destroy(opts)
            throw CourierError.nats(
                status,
                "cannot connect to NATS at \(serverList) within \(configuration.connectTimeout)",
                input: serverList,
                detail: detail
            )
        }

        var jsOpts = jsOptions()
        jsOptions_Init(&jsOpts)
        jsOpts.Wait = max(1, configuration.requestTimeout.milliseconds)
        var js: OpaquePointer?
        status = natsConnection_JetStream(&js, nc, &jsOpts)
        guard status == NATS_OK, let js else {
            let detail = natsLastErrorText()
            natsConnection_Destroy(nc)
            natsOptions_Destroy(opts)
            throw CourierError.nats(status, "cannot create a JetStream context", input: serverList, detail: detail)
        }
        let publisher = AsyncPublisher(
            connection: nc,
            window: configuration.publishWindow,
            requestTimeout: configuration.requestTimeout,
            streamName: configuration.stream,
            logger: configuration.logger
        )
        let batches = AtomicBatchPublisher(
            connection: nc, requestTimeout: configuration.requestTimeout, logger: configuration.logger)
        do {
            try publisher.start()
            try batches.start()
        } catch {
            publisher.stop()
            jsCtx_Destroy(js)
            natsConnection_Destroy(nc)
            natsOptions_Destroy(opts)
            throw error
        }
        self.batches = batches
        events.publisher.withLock { $0 = publisher }
        events.refreshServerInfo(url: connectedURL(nc))
        self.options = opts
        self.connection = nc
        self.context = js
        self.events = events
        self.publisher = publisher
        self.servers = servers
    }

    deinit {
        events.publisher.withLock { $0 = nil }
        publisher.stop()
        batches.stop()
        jsCtx_Destroy(context)
        natsConnection_Destroy(connection)
        natsOptions_Destroy(options)
    }

    /// Whether the connection is up.
    var isConnected: Bool { natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED }

    /// `connected`, `reconnecting`, `closed`, …
    var stateDescription: String {
        switch natsConnection_Status(connection) {
        case NATS_CONN_STATUS_CONNECTED: "connected"
        case NATS_CONN_STATUS_RECONNECTING: "reconnecting"
        case NATS_CONN_STATUS_CONNECTING: "connecting"
        case NATS_CONN_STATUS_CLOSED: "closed"
        case NATS_CONN_STATUS_DISCONNECTED: "disconnected"
        default: "draining"
        }
    }

    /// The URL of the server currently connected to.
    var currentURL: String { connectedURL(connection) }

    /// The server's maximum message size.
    var maxPayload: Int { Int(natsConnection_GetMaxPayload(connection)) }

    /// What the connected server said about itself, when its INFO could be read.
    var serverInfo: ServerInfo? { events.serverInfo.withLock { $0 } }

    /// The connected server's version, `unknown` when its INFO could not be read.
    var serverVersion: String { serverInfo?.version ?? "unknown" }

    /// Publishes `body` to a delivery's reply subject (an acknowledgement). Never blocks for
    /// long: cnats buffers the write.
    func acknowledge(_ message: NATSMessage, _ body: StaticString) throws {
        let status = message.withReply { reply in
            body.withUTF8Buffer { bytes in
                natsConnection_Publish(connection, reply, bytes.baseAddress, Int32(bytes.count))
            }
        }
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot send acknowledgement '\(body)'", input: message.replyText, detail: natsLastErrorText())
        }
    }

    /// Acknowledges a delivery and waits (blocking, at most `timeout`) until the server
    /// confirms it recorded the acknowledgement: a request on the reply subject, which the
    /// server answers once it processed the ack ("double ack").
    func acknowledgeConfirmed(_ message: NATSMessage, timeout: Duration) throws {
        var reply: OpaquePointer?
        let status = message.withReply { subject in
            natsConnection_RequestString(&reply, connection, subject, "+ACK", max(1, timeout.milliseconds))
        }
        if let reply { natsMsg_Destroy(reply) }
        guard status == NATS_OK else {
            var error = CourierError.nats(
                status, "the server did not confirm the acknowledgement", input: message.replyText,
                detail: natsLastErrorText())
            if status == NATS_TIMEOUT || status == NATS_NO_RESPONDERS { error.isRetryable = true }
            throw error
        }
    }

    /// Publishes `body` to a delivery's reply subject (an acknowledgement with a payload).
    func acknowledge(_ message: NATSMessage, bytes body: [UInt8]) throws {
        let status = message.withReply { reply in
            body.withUnsafeBytes { raw in natsConnection_Publish(connection, reply, raw.baseAddress, Int32(raw.count)) }
        }
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot send acknowledgement", input: message.replyText, detail: natsLastErrorText())
        }
    }

    /// Publishes `message` and waits for the stream's acknowledgement, at most `wait` (blocking:
    /// call it on a `BlockingExecutor` thread). cnats flushes a request at once, where an
    /// async publish would sit in the write buffer for up to a millisecond.
    func publishSync(_ message: OutgoingMessage, msg prepared: PreparedMessage, wait: Duration)
        -> Result<PublishAck, CourierError>
    {
        let msg = prepared.msg
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.MaxWait = max(1, wait.milliseconds)
        // The dedupe id and expected last sequence are in the message's header block already.
        var ack: UnsafeMutablePointer<jsPubAck>?
        var jerr = jsErrCode(0)
        let status = js_PublishMsg(&ack, context, msg, &options, &jerr)
        guard status == NATS_OK, let ack else {
            let detail = natsLastErrorText()
            return .failure(
                CourierError.nats(
                    status, "publish of '\(message.messageID)' to '\(message.subject)' failed", input: message.subject,
                    jsCode: jerr, detail: detail)
            )
        }
        defer { jsPubAck_Destroy(ack) }
        let stream = String(cString: ack.pointee.Stream)
        return .success(PublishAck(sequence: ack.pointee.Sequence, stream: stream, duplicate: ack.pointee.Duplicate))
    }

    /// Sends a JetStream API request with a JSON body and returns the parsed reply (blocking).
    func apiRequest(_ subject: String, _ body: [UInt8], timeout: Duration) throws -> JSONValue {
        var reply: OpaquePointer?
        let status = body.withUnsafeBytes { raw in
            natsConnection_Request(
                &reply, connection, subject, raw.baseAddress, Int32(raw.count), max(1, timeout.milliseconds))
        }
        guard status == NATS_OK, let reply else {
            var error = CourierError.nats(
                status, "JetStream API request '\(subject)' failed", input: subject, detail: natsLastErrorText())
            if status == NATS_TIMEOUT || status == NATS_NO_RESPONDERS { error.isRetryable = true }
            throw error
        }
        defer { natsMsg_Destroy(reply) }
        let length = Int(natsMsg_GetDataLength(reply))
        guard length > 0, let data = natsMsg_GetData(reply) else {
            throw CourierError(.providerError, "empty reply to '\(subject)'", input: subject)
        }
        return try JSONValue(parsing: UnsafeRawBufferPointer(start: data, count: length))
    }

    /// Flushes and closes (blocking).
    func close(flushTimeout: Duration) {
        events.closing.store(true, ordering: .releasing)
        _ = natsConnection_FlushTimeout(connection, max(1, flushTimeout.milliseconds))
        natsConnection_Close(connection)
    }
}

/// A `natsMsg` made from an ``OutgoingMessage`` and owned by Swift: a synchronous publish sends
/// the same message on every retry and destroys it once, when this goes away.
///
/// `@unchecked Sendable`: the pointer is set once in `init` and never changed; the message is
/// only read (sent) after that, one attempt at a time, and destroyed in `deinit` when no attempt
/// can refer to it any more.
final class PreparedMessage: @unchecked Sendable {
    let msg: OpaquePointer

    init(_ message: OutgoingMessage) throws {
        var scratch: [UInt8] = []
        msg = try makeNATSMessage(message, reply: nil, scratch: &scratch)
    }

    deinit { natsMsg_Destroy(msg) }
}

/// Opens the cnats library once per process.
enum NATSLibrary {
    static let opened: Bool = nats_Open(-1) == NATS_OK
}
#endif
