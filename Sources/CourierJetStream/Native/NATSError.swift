#if NATS
internal import CNATS
import CourierCore

/// The calling thread's last cnats error text ("" when none). Read it right after the failing call,
/// on the same thread.
func natsLastErrorText() -> String {
    var status = NATS_OK
    guard let text = nats_GetLastError(&status) else { return "" }
    return String(cString: text)
}

/// Whether a failed async publish may succeed when sent again with the same message id.
func isRetryablePublishFailure(_ status: natsStatus, _ jsCode: jsErrCode) -> Bool {
    switch status {
    case NATS_TIMEOUT, NATS_NO_RESPONDERS, NATS_CONNECTION_DISCONNECTED, NATS_IO_ERROR, NATS_STALE_CONNECTION,
        NATS_NOT_YET_CONNECTED, NATS_INSUFFICIENT_BUFFER:
        return true
    default:
        // The stream could not store it right now (leader change, storage hiccup, full store).
        return jsCode == JSStreamGeneralError || jsCode == JSClusterNotAvailErr || jsCode == JSClusterNotLeaderErr
            || isStorageExhausted(jsCode)
    }
}

/// Whether the server refused a message for lack of room (its disk, memory or account limits).
func isStorageExhausted(_ jsCode: jsErrCode) -> Bool {
    switch jsCode {
    case JSStreamStoreFailedErr, JSInsufficientResourcesErr, JSStorageResourcesExceededErr,
        JSMemoryResourcesExceededErr, JSAccountResourcesExceededErr:
        true
    default:
        false
    }
}

extension CourierError {
    /// A cnats failure as a typed error. `what` says what was attempted; `input` names the
    /// subject, stream, consumer or URL involved; `detail` is the library's error text.
    static func nats(
        _ status: natsStatus,
        _ what: String,
        input: String?,
        jsCode: jsErrCode = jsErrCode(0),
        detail: String = ""
    ) -> CourierError {
        let statusText = String(cString: natsStatus_GetText(status))
        var reason = detail.isEmpty ? statusText : detail
        if jsCode.rawValue != 0, !reason.contains("\(jsCode.rawValue)") {
            reason += " (JetStream error \(jsCode.rawValue))"
        }
        let message = "\(what): \(reason)"
        if isStorageExhausted(jsCode) {
            return CourierError(.insufficientStorage, message, input: input, isRetryable: true)
        }
        switch (status, jsCode) {
        case (_, JSClusterNotAvailErr), (_, JSClusterNotLeaderErr):
            // The cluster is electing a leader: the same request succeeds in a moment.
            return CourierError(.transient, message, input: input, isRetryable: true)
        case (_, JSClusterNoPeersErr):
            // Too few servers are up (or known to the meta leader yet) to place every replica:
            // true while a cluster starts or a node restarts, and for good when the cluster is
            // smaller than the replica count — callers retry it only within a bound.
            return CourierError(
                .transient, message + "; are as many servers up as the stream has replicas?", input: input,
                isRetryable: true)
        case (_, JSStreamWrongLastSequenceErr):
            return CourierError(.wrongLastSequence, message, input: input)
        case (_, JSStreamMessageExceedsMaximumErr), (NATS_MAX_PAYLOAD, _):
            return CourierError(.payloadTooLarge, message, input: input)
        case (_, JSStreamNotFoundErr), (_, JSConsumerNotFoundErr), (NATS_NOT_FOUND, _):
            return CourierError(.notFound, message, input: input)
        case (_, JSConsumerFilterNotSubsetErr):
            return CourierError(.invalidFilter, message, input: input)
        case (_, JSStreamInvalidConfig), (_, JSStreamSubjectOverlapErr), (_, JSStreamNameExistErr),
            (_, JSStreamUpdateErr), (_, JSStreamReplicasNotSupportedErr), (_, JSConsumerCreateErr):
            return CourierError(.invalidConfiguration, message, input: input)
        case (NATS_TIMEOUT, _):
            return CourierError(.timeout, message, input: input, isRetryable: true)
        case (NATS_NO_SERVER, _), (NATS_IO_ERROR, _), (NATS_CONNECTION_CLOSED, _), (NATS_CONNECTION_DISCONNECTED, _),
            (NATS_STALE_CONNECTION, _), (NATS_NOT_YET_CONNECTED, _), (NATS_NO_RESPONDERS, _),
            (NATS_INSUFFICIENT_BUFFER, _):
            return CourierError(.connectionFailed, message, input: input, isRetryable: status != NATS_CONNECTION_CLOSED)
        case (NATS_CONNECTION_AUTH_FAILED, _), (NATS_NOT_PERMITTED, _):
            return CourierError(.authenticationFailed, message, input: input)
        case (NATS_SSL_ERROR, _), (NATS_SECURE_CONNECTION_WANTED, _), (NATS_SECURE_CONNECTION_REQUIRED, _):
            return CourierError(
                .authenticationFailed, "\(message) (TLS handshake or certificate verification failed)", input: input)
        case (NATS_INVALID_SUBJECT, _):
            return CourierError(.invalidSubject, message, input: input)
        case (NATS_INVALID_ARG, _), (NATS_ADDRESS_MISSING, _):
            return CourierError(.invalidConfiguration, message, input: input)
        default:
            return CourierError(.providerError, message, input: input)
        }
    }
}
#endif
