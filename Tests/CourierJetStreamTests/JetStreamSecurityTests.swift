#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Foundation
import Testing

/// TLS, authentication and bad input against real servers. Certificates are generated at test
/// time with the openssl command line.
@Suite("JetStreamProvider security and bad input")
struct JetStreamSecurityTests {
    /// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA.
    struct Certificates {
        let directory: String
        var ca: String { directory + "/ca.pem" }
        var otherCA: String { directory + "/other-ca.pem" }
        var serverCertificate: String { directory + "/server.pem" }
        var serverKey: String { directory + "/server.key" }

        static func generate() async throws -> Certificates {
            let directory = "/tmp/courier-tls-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let certificates = Certificates(directory: directory)
            try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(
                toFile: directory + "/san.ext", atomically: true, encoding: .utf8)
            for command in [
                "req -x509 -newkey rsa:2048 -nodes -keyout \(directory)/ca.key -out \(directory)/ca.pem -days 1 -subj /CN=Courier-Test-CA",
                "req -x509 -newkey rsa:2048 -nodes -keyout \(directory)/other-ca.key -out \(directory)/other-ca.pem -days 1 -subj /CN=Other-CA",
                "req -newkey rsa:2048 -nodes -keyout \(directory)/server.key -out \(directory)/server.csr -subj /CN=localhost",
                "x509 -req -in \(directory)/server.csr -CA \(directory)/ca.pem -CAkey \(directory)/ca.key -CAcreateserial -out \(directory)/server.pem -days 1 -extfile \(directory)/san.ext",
            ] {
                _ = try await runChildProcess("/usr/bin/openssl", command.split(separator: " ").map(String.init))
            }
            return certificates
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    static func configuration(_ url: String) -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(url: url)
        configuration.connectTimeout = .seconds(2)
        configuration.reconnect = .init(maxAttempts: 0)
        return configuration
    }

    @Test("TLS with a CA generated at test time; an untrusted CA or no TLS fails clearly")
    func tls() async throws {
        let certificates = try await Certificates.generate()
        defer { certificates.remove() }
        let server = try await NATSServerHarness.start(
            configuration: """
                tls {
                  cert_file: "\(certificates.serverCertificate)"
                  key_file: "\(certificates.serverKey)"
                  timeout: 2
                }
                """
        )
        defer {
            server.stop()
            server.cleanUp()
        }
        var trusted = Self.configuration(server.url)
        trusted.tls = .init(caFile: certificates.ca)
        let provider = try await JetStreamProvider.connect(trusted)
        let ack = try await provider.publish(
            Event(subject: "events.tls.ok", category: "tls", payload: ["secure": true]))
        #expect(ack.sequence == 1)
        #expect(try await provider.history(filter: nil, limit: 1).first?.payload == ["secure": true])
        await provider.shutdown()

        var untrusted = Self.configuration(server.url)
        untrusted.tls = .init(caFile: certificates.otherCA)
        let rejected = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(untrusted) }
        #expect(rejected?.code == .authenticationFailed || rejected?.code == .connectionFailed)
        #expect(rejected?.message.contains(server.url) == true)
        #expect(rejected?.message.contains("TLS") == true)

        let plain = await #expect(throws: CourierError.self) {
            _ = try await JetStreamProvider.connect(Self.configuration(server.url))
        }
        #expect(plain?.message.contains(server.url) == true)
    }

    @Test("token authentication: the right token connects, a wrong one fails clearly")
    func token() async throws {
        let server = try await NATSServerHarness.start(configuration: "authorization { token: \"s3cr3t-token\" }")
        defer {
            server.stop()
            server.cleanUp()
        }
        var good = Self.configuration(server.url)
        good.authentication = .token("s3cr3t-token")
        let provider = try await JetStreamProvider.connect(good)
        #expect(try await provider.publish(Event(subject: "events.auth.token", category: "auth")).sequence == 1)
        await provider.shutdown()

        var bad = Self.configuration(server.url)
        bad.authentication = .token("wrong")
        let error = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(bad) }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.message.contains(server.url) == true)
        #expect(error?.message.contains("wrong") == false, "credentials never appear in errors")
    }

    @Test("user and password authentication: a wrong password fails clearly")
    func userPassword() async throws {
        let server = try await NATSServerHarness.start(
            configuration: "authorization { user: \"courier\", password: \"pa55-word\" }")
        defer {
            server.stop()
            server.cleanUp()
        }
        var good = Self.configuration(server.url)
        good.authentication = .userPassword(user: "courier", password: "pa55-word")
        let provider = try await JetStreamProvider.connect(good)
        #expect(await provider.health())
        await provider.shutdown()

        var bad = Self.configuration(server.url)
        bad.authentication = .userPassword(user: "courier", password: "nope")
        let error = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(bad) }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.input == server.url)
    }

    @Test("an unreachable server fails within the connect timeout, naming the URL")
    func unreachable() async throws {
        let url = "nats://127.0.0.1:\(try NATSServerHarness.freePort())"
        var configuration = Self.configuration(url)
        configuration.connectTimeout = .seconds(1)
        let started = ContinuousClock.now
        let error = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(configuration) }
        // A refused connection fails at once; the bound is loose because a loaded CI machine can
        // delay the blocking connect's thread, but it still catches a connect that retries forever.
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(error?.code == .connectionFailed)
        #expect(error?.input == url)
        #expect(error?.message.contains(url) == true)
    }

    @Test(
        "invalid configuration is rejected before connecting, naming the field",
        arguments: [
            ("bad.name", "stream"), ("", "stream"), ("with space", "stream"),
        ])
    func invalidStreamName(_ stream: String, _ field: String) async throws {
        var configuration = Self.configuration("nats://127.0.0.1:1")
        configuration.stream = stream
        let error = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(configuration) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.input == stream)
    }

    @Test("a payload above the server's max_payload is rejected, nothing is stored")
    func maxPayload() async throws {
        let server = try await NATSServerHarness.start(configuration: "max_payload: 4096")
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url))
        let big = Event(
            subject: "events.big.blob", category: "big", payload: ["blob": .string(String(repeating: "x", count: 8192))]
        )
        let error = await #expect(throws: CourierError.self) { try await provider.publish(big) }
        #expect(error?.code == .payloadTooLarge)
        #expect(error?.input == "events.big.blob")
        let batch = await provider.publishBatch([big])
        #expect(throws: CourierError.self) { try batch[0].get() }
        #expect(try await provider.info().messages == 0)
        await provider.shutdown()
    }

    @Test("a header value with a line break is refused with a typed error on every publish path, nothing is stored")
    func headerInjection() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url))
        // A trace header carried from metadata: left as it is, it would end its line and forge a
        // dedupe id of its own.
        let forged = Event(
            subject: "events.orders.created", category: "orders", payload: ["n": 1],
            metadata: ["traceparent": "00-ab-cd-01\r\nNats-Msg-Id: forged"])
        let error = await #expect(throws: CourierError.self) { try await provider.publish(forged) }
        #expect(error?.code == .invalidEvent)
        #expect(error?.input == "traceparent")
        let batch = await provider.publishBatch([forged, Event(subject: "events.orders.created", category: "orders")])
        #expect((try? batch[0].get()) == nil)
        #expect((try? batch[1].get()) != nil, "the batch's other event is stored")
        let raw = OutgoingMessage(
            subject: "events.orders.created", payload: Array("{}".utf8), headers: [("ce-type", "a\nb")],
            messageID: "raw-1")
        let rawError = await #expect(throws: CourierError.self) { _ = try await provider.publish(messages: [raw]) }
        #expect(rawError?.code == .invalidEvent)
        #expect(rawError?.input == "ce-type")
        #expect(try await provider.info().messages == 1)
        await provider.shutdown()
    }

    @Test(
        "provisioning: an existing stream is used as it is unless updateLimits is asked for; requireExisting needs it")
    func streamProvisioning() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        var file = Self.configuration(server.url)
        file.stream = "RECONCILE"
        file.storage = .file
        let first = try await JetStreamProvider.connect(file)
        await first.shutdown()
        #expect(try await server.streamConfig("RECONCILE_DLQ")?["subjects"] == ["events-dlq.>"])

        // Another storage and other limits in the configuration: the stream stays as it is.
        var other = file
        other.storage = .memory
        other.maxEvents = 10
        let unchanged = try await JetStreamProvider.connect(other)
        _ = await unchanged.publishBatch(
            (0..<25).map { Event(subject: "events.r.x", category: "r", payload: ["i": .int(Int64($0))]) })
        #expect(try await unchanged.info().messages == 25)
        await unchanged.shutdown()
        #expect(try await server.streamConfig("RECONCILE")?["storage"] == "file")
        #expect(try await server.streamConfig("RECONCILE")?["max_msgs"] == -1)

        // Asked in so many words: the limits follow the configuration.
        var limited = file
        limited.maxEvents = 10
        limited.provisioning = .updateLimits
        let provider = try await JetStreamProvider.connect(limited)
        #expect(try await server.streamConfig("RECONCILE")?["max_msgs"] == 10)
        #expect(try await provider.info().messages == 10)
        await provider.shutdown()

        var bind = file
        bind.stream = "MISSING"
        bind.provisioning = .requireExisting
        let missing = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(bind) }
        #expect(missing?.code == .notFound)
        #expect(missing?.input == "MISSING")
        #expect(try await server.streamConfig("MISSING") == nil)

        var foreign = file
        foreign.subjectPrefix = "orders"
        let unusable = await #expect(throws: CourierError.self) { _ = try await JetStreamProvider.connect(foreign) }
        #expect(unusable?.code == .invalidConfiguration)
        #expect(unusable?.input == "subjects")
    }

    @Test("calls after shutdown fail with a shutdown error")
    func afterShutdown() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url))
        await provider.shutdown()
        let error = await #expect(throws: CourierError.self) {
            try await provider.publish(Event(subject: "events.a.b", category: "a"))
        }
        #expect(error?.code == .shutdown)
        #expect(await !provider.health())
    }
}
#endif
