#ifndef CNATS_BASELINE_H
#define CNATS_BASELINE_H

#include <stdint.h>

/// Raw cnats baselines, measured against the same server as the Courier benchmarks.
/// Every function returns elapsed seconds for `count` messages, or a negative value on error.

/// (Re)creates `stream` capturing `subjects` with memory (0) or file (1) storage.
int cb_reset_stream(const char *url, const char *stream, const char *subjects, int file_storage);

/// Deletes `stream` if it exists, so Courier creates it as it creates its own streams (with
/// allow_atomic on nats-server 2.12+). 0 on success.
int cb_delete_stream(const char *url, const char *stream);

/// Async publish of `body` `count` times with a window of `window` outstanding acks;
/// `with_msg_id` sets a unique Nats-Msg-Id on each message.
double cb_async_publish(const char *url, const char *subject, const void *body, int size, int count, int window, int with_msg_id);

/// Synchronous publish of `body` `count` times: one request/ack round trip per message;
/// `with_msg_id` sets a unique Nats-Msg-Id on each message.
double cb_sync_publish(const char *url, const char *subject, const void *body, int size, int count, int with_msg_id);

/// Pull consumer: natsSubscription_Fetch in batches of `batch`, natsMsg_Ack each message.
double cb_fetch_ack(const char *url, const char *stream, const char *durable, const char *filter, int count, int batch);

/// Push consumer bound to a durable with manual ack and the given max ack pending.
double cb_push_ack(const char *url, const char *stream, const char *durable, const char *filter, int count, int max_ack_pending);


/// Creates `stream` (deleting it first) with `allow_atomic`, by a JSON request (cnats 3.4.1 has
/// no such field). 0 on success, -1 when the server refuses (older than 2.12).
int cb_reset_atomic_stream(const char *url, const char *stream, const char *subjects, int file_storage);

/// Publishes `count` messages as atomic batches of `batch` (`Nats-Batch-Id`/`-Sequence`/`-Commit`
/// headers, a reply on the commit only), at most `window` batches in flight; seconds taken,
/// -1 on failure, -2 when the server does not know atomic batches.
double cb_atomic_publish(const char *url, const char *subject, const void *body, int size, int count, int batch,
                         int window, int with_msg_id);
/// Creates `stream` (deleting it first) with `allow_batched` (fast-ingest batches), by a JSON
/// request. 0 on success, -1 when the server refuses or drops the field (older than 2.14).
int cb_reset_batched_stream(const char *url, const char *stream, const char *subjects, int file_storage);

/// Publishes `count` messages as one fast-ingest batch (ADR-50, nats-server 2.14): the control
/// state in each reply subject, gap mode "fail", asking for a flow ack every `flow` messages and
/// sending while at most `outstanding` are owed; seconds taken, -1 on failure.
double cb_fast_publish(const char *url, const char *subject, const void *body, int size, int count, int flow,
                       int outstanding, int with_msg_id);
/// A synchronous push subscription to a new durable consumer `durable` (explicit ack, the given
/// max ack pending) on `stream`, for the consume anatomy rows; NULL on failure.
void *cb_sync_open(const char *url, const char *stream, const char *durable, const char *filter, int max_ack_pending);
/// The next message (a `natsMsg *`), waiting at most `timeout_ms` (0: only what is queued); NULL
/// when none came.
void *cb_sync_next(void *handle, int64_t timeout_ms);
/// The message's body and its length.
const void *cb_msg_data(void *msg, int *length);
/// The message's reply subject.
const char *cb_msg_reply(void *msg);
/// Publishes `+ACK` to the message's reply subject (as Courier acknowledges); 0 on success.
int cb_sync_ack(void *handle, void *msg);
/// Destroys a message from cb_sync_next.
void cb_msg_destroy(void *msg);
/// Unsubscribes, deletes the consumer and closes the connection.
void cb_sync_close(void *handle);

#endif
