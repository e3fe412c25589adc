// Raw cnats 3.4.1 baselines: what a careful C user writes, with no Courier code involved.
#include "cnats_baseline.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static natsStatus open_js(const char *url, natsConnection **nc, jsCtx **js, int window) {
    natsStatus s = natsConnection_ConnectTo(nc, url);
    if (s != NATS_OK) return s;
    jsOptions o;
    jsOptions_Init(&o);
    o.PublishAsync.MaxPending = window > 0 ? window : 4096;
    o.Wait = 10000;
    return natsConnection_JetStream(js, *nc, &o);
}

static void close_js(natsConnection *nc, jsCtx *js) {
    if (js) jsCtx_Destroy(js);
    if (nc) {
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
    }
}

int cb_reset_stream(const char *url, const char *stream, const char *subjects, int file_storage) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = open_js(url, &nc, &js, 0);
    if (s == NATS_OK) {
        jsErrCode jerr = 0;
        js_DeleteStream(js, stream, NULL, &jerr);
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = stream;
        const char *subs[1] = {subjects};
        cfg.Subjects = subs;
        cfg.SubjectsLen = 1;
        cfg.Storage = file_storage ? js_FileStorage : js_MemoryStorage;
        jsStreamInfo *si = NULL;
        s = js_AddStream(&si, js, &cfg, NULL, &jerr);
        if (si) jsStreamInfo_Destroy(si);
    }
    close_js(nc, js);
    return s == NATS_OK ? 0 : -1;
}

int cb_delete_stream(const char *url, const char *stream) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = open_js(url, &nc, &js, 0);
    if (s == NATS_OK) {
        jsErrCode jerr = 0;
        s = js_DeleteStream(js, stream, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) s = NATS_OK;
    }
    close_js(nc, js);
    return s == NATS_OK ? 0 : -1;
}

double cb_async_publish(const char *url, const char *subject, const void *body, int size, int count, int window, int with_msg_id) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (open_js(url, &nc, &js, window) != NATS_OK) return -1;
    const char *data = body;
    char id[64];
    jsPubOptions po;
    double start = now_seconds();
    natsStatus s = NATS_OK;
    for (int i = 0; i < count && s == NATS_OK; i++) {
        jsPubOptions_Init(&po);
        if (with_msg_id) {
            snprintf(id, sizeof id, "baseline-%p-%ld-%d", (void *)&po, (long)time(NULL), i);
            po.MsgId = id;
        }
        s = js_PublishAsync(js, subject, data, size, &po);
        while (s == NATS_TIMEOUT) s = js_PublishAsync(js, subject, data, size, &po);  // window full: stalled
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (s == NATS_OK) s = js_PublishAsyncComplete(js, &po);
    double elapsed = now_seconds() - start;
    close_js(nc, js);
    return s == NATS_OK ? elapsed : -1;
}

double cb_sync_publish(const char *url, const char *subject, const void *body, int size, int count, int with_msg_id) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (open_js(url, &nc, &js, 0) != NATS_OK) return -1;
    const char *data = body;
    double start = now_seconds();
    natsStatus s = NATS_OK;
    char id[64];
    jsPubOptions po;
    for (int i = 0; i < count && s == NATS_OK; i++) {
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        jsPubOptions_Init(&po);
        if (with_msg_id) {
            snprintf(id, sizeof id, "sync-%p-%ld-%d", (void *)&po, (long)time(NULL), i);
            po.MsgId = id;
        }
        s = js_Publish(&pa, js, subject, data, size, &po, &jerr);
        jsPubAck_Destroy(pa);
    }
    double elapsed = now_seconds() - start;
    close_js(nc, js);
    return s == NATS_OK ? elapsed : -1;
}

static natsStatus add_durable(jsCtx *js, const char *stream, const char *durable, const char *filter,
                              const char *deliver_subject, int max_ack_pending) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = filter;
    cc.MaxAckPending = max_ack_pending;
    cc.DeliverSubject = deliver_subject;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(&ci, js, stream, &cc, NULL, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    return s;
}

double cb_fetch_ack(const char *url, const char *stream, const char *durable, const char *filter, int count, int batch) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (open_js(url, &nc, &js, 0) != NATS_OK) return -1;
    natsStatus s = add_durable(js, stream, durable, filter, NULL, batch * 4 > 1000 ? batch * 4 : 1000);
    natsSubscription *sub = NULL;
    if (s == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Consumer = durable;
        jsErrCode jerr = 0;
        s = js_PullSubscribe(&sub, js, filter, durable, NULL, &so, &jerr);
    }
    double start = now_seconds();
    int received = 0;
    while (s == NATS_OK && received < count) {
        natsMsgList list;
        jsErrCode jerr = 0;
        s = natsSubscription_Fetch(&list, sub, batch, 5000, &jerr);
        if (s == NATS_TIMEOUT) {
            s = NATS_OK;
            continue;
        }
        for (int i = 0; i < list.Count; i++) natsMsg_Ack(list.Msgs[i], NULL);
        received += list.Count;
        natsMsgList_Destroy(&list);
    }
    double elapsed = now_seconds() - start;
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    jsErrCode jerr = 0;
    js_DeleteConsumer(js, stream, durable, NULL, &jerr);
    close_js(nc, js);
    return s == NATS_OK ? elapsed : -1;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done;
    int received;
    int target;
} push_state;

static void on_push(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    push_state *st = closure;
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
    pthread_mutex_lock(&st->lock);
    if (++st->received == st->target) pthread_cond_signal(&st->done);
    pthread_mutex_unlock(&st->lock);
}

double cb_push_ack(const char *url, const char *stream, const char *durable, const char *filter, int count, int max_ack_pending) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (open_js(url, &nc, &js, 0) != NATS_OK) return -1;
    char deliver[256];
    snprintf(deliver, sizeof deliver, "_baseline.deliver.%s", durable);
    natsStatus s = add_durable(js, stream, durable, filter, deliver, max_ack_pending);
    push_state st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, count};
    natsSubscription *sub = NULL;
    double start = now_seconds();
    if (s == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Consumer = durable;
        so.ManualAck = true;
        jsErrCode jerr = 0;
        s = js_Subscribe(&sub, js, filter, on_push, &st, NULL, &so, &jerr);
    }
    if (s == NATS_OK) {
        pthread_mutex_lock(&st.lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 120;
        while (st.received < count) {
            if (pthread_cond_timedwait(&st.done, &st.lock, &deadline) != 0) break;
        }
        pthread_mutex_unlock(&st.lock);
    }
    double elapsed = now_seconds() - start;
    int ok = s == NATS_OK && st.received >= count;
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    jsErrCode jerr = 0;
    js_DeleteConsumer(js, stream, durable, NULL, &jerr);
    close_js(nc, js);
    return ok ? elapsed : -1;
}

static int reset_stream_with(const char *url, const char *stream, const char *subjects, int file_storage,
                             const char *flag);

int cb_reset_atomic_stream(const char *url, const char *stream, const char *subjects, int file_storage) {
    return reset_stream_with(url, stream, subjects, file_storage, "allow_atomic");
}

int cb_reset_batched_stream(const char *url, const char *stream, const char *subjects, int file_storage) {
    return reset_stream_with(url, stream, subjects, file_storage, "allow_batched");
}

/// Creates `stream` (deleting it first) with the boolean `flag` set, by a JSON request.
static int reset_stream_with(const char *url, const char *stream, const char *subjects, int file_storage,
                             const char *flag) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = open_js(url, &nc, &js, 0);
    int ok = 0;
    if (s == NATS_OK) {
        jsErrCode jerr = 0;
        js_DeleteStream(js, stream, NULL, &jerr);
        // cnats 3.4.1 has no allow_atomic or allow_batched field: the stream is created with a
        // JSON request.
        char subject[256], body[512], kept[64];
        snprintf(subject, sizeof subject, "$JS.API.STREAM.CREATE.%s", stream);
        snprintf(body, sizeof body,
                 "{\"name\":\"%s\",\"subjects\":[\"%s\"],\"storage\":\"%s\",\"%s\":true,"
                 "\"duplicate_window\":120000000000}",
                 stream, subjects, file_storage ? "file" : "memory", flag);
        snprintf(kept, sizeof kept, "\"%s\":true", flag);
        natsMsg *reply = NULL;
        s = natsConnection_RequestString(&reply, nc, subject, body, 10000);
        if (s == NATS_OK && reply) {
            const char *data = natsMsg_GetData(reply);
            // A server without the feature creates the stream and drops the field it does not
            // know: only a config that kept it means batches work.
            ok = data && strstr(data, "\"error\"") == NULL && strstr(data, kept) != NULL;
        }
        if (reply) natsMsg_Destroy(reply);
    }
    close_js(nc, js);
    return ok ? 0 : -1;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done;
    int acked;
    int failed;
    int unbatched;
} atomic_state;

static void on_commit(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    atomic_state *st = closure;
    const char *data = natsMsg_GetData(msg);
    int length = natsMsg_GetDataLength(msg);
    pthread_mutex_lock(&st->lock);
    if (length == 0 || data == NULL || strstr(data, "\"error\"")) st->failed++;
    else if (!strstr(data, "\"batch\"")) st->unbatched++;
    st->acked++;
    pthread_cond_signal(&st->done);
    pthread_mutex_unlock(&st->lock);
    natsMsg_Destroy(msg);
}

double cb_atomic_publish(const char *url, const char *subject, const void *body, int size, int count, int batch,
                         int window, int with_msg_id) {
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return -1;
    char inbox[64];
    snprintf(inbox, sizeof inbox, "_baseline.batch.%d", rand());
    char wildcard[80];
    snprintf(wildcard, sizeof wildcard, "%s.*", inbox);
    atomic_state st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    natsSubscription *sub = NULL;
    if (natsConnection_Subscribe(&sub, nc, wildcard, on_commit, &st) != NATS_OK) {
        natsConnection_Destroy(nc);
        return -1;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    int batches = count / batch;
    char id[64], batch_id[64], sequence[16], reply[96];
    int run = rand();
    double start = now_seconds();
    natsStatus s = NATS_OK;
    for (int b = 0; b < batches && s == NATS_OK; b++) {
        pthread_mutex_lock(&st.lock);
        while (b - st.acked >= window) pthread_cond_wait(&st.done, &st.lock);
        pthread_mutex_unlock(&st.lock);
        snprintf(batch_id, sizeof batch_id, "b%d-%d", run, b);
        snprintf(reply, sizeof reply, "%s.%d", inbox, b);
        for (int i = 0; i < batch && s == NATS_OK; i++) {
            int last = i == batch - 1;
            natsMsg *msg = NULL;
            s = natsMsg_Create(&msg, subject, last ? reply : NULL, body, size);
            if (s != NATS_OK) break;
            if (with_msg_id) {
                snprintf(id, sizeof id, "m%d-%d-%d", run, b, i);
                natsMsgHeader_Set(msg, "Nats-Msg-Id", id);
            }
            natsMsgHeader_Set(msg, "Nats-Batch-Id", batch_id);
            snprintf(sequence, sizeof sequence, "%d", i + 1);
            natsMsgHeader_Set(msg, "Nats-Batch-Sequence", sequence);
            if (last) natsMsgHeader_Set(msg, "Nats-Batch-Commit", "1");
            s = natsConnection_PublishMsg(nc, msg);
            natsMsg_Destroy(msg);
        }
    }
    pthread_mutex_lock(&st.lock);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    while (st.acked < batches) {
        if (pthread_cond_timedwait(&st.done, &st.lock, &deadline) != 0) break;
    }
    int acked = st.acked, failed = st.failed, unbatched = st.unbatched;
    pthread_mutex_unlock(&st.lock);
    double elapsed = now_seconds() - start;
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    if (unbatched > 0) return -2;
    return s == NATS_OK && acked == batches && failed == 0 ? elapsed : -1;
}

// Fast-ingest batches (nats-server 2.14, ADR-50): one batch for every message, its control state
// in each reply subject `<inbox>.<id>.<flow>.<gap>.<batch sequence>.<operation>.$FI`. The server
// answers every `ack_msgs` messages with a flow ack (`{"seq":n,"ack_msgs":m}`) and the last
// message with a pub ack naming the batch. (nats-server 2.15.1 sends the flow ack as
// `{"type":"ack","seq":n,"msgs":m}`.)
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned long long acked;  // highest batch sequence the server confirmed
    unsigned long long flow;   // acks come every `flow` messages
    int answered;              // the first message was answered
    int done;                  // the final pub ack came
    int failed;
    unsigned long long outstanding;  // flow acks the client may be owed
} fast_state;

static unsigned long long json_number(const char *data, const char *name) {
    const char *at = strstr(data, name);
    return at ? strtoull(at + strlen(name), NULL, 10) : 0;
}

static void on_fast_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    fast_state *st = closure;
    const char *data = natsMsg_GetData(msg);
    pthread_mutex_lock(&st->lock);
    if (natsMsg_GetDataLength(msg) == 0 || data == NULL || strstr(data, "\"error\"") ||
        strstr(data, "\"last_seq\"") || strstr(data, "\"type\":\"gap\"")) {
        st->failed = 1;  // an error, or a gap: with gap mode "fail" the batch ends
    } else if (strstr(data, "\"batch\"")) {
        st->done = 1;
    } else {
        unsigned long long seq = json_number(data, "\"seq\":");
        // 2.15 names the flow "msgs" (the ADR says "ack_msgs").
        unsigned long long flow = json_number(data, "\"msgs\":");
        if (flow == 0) flow = json_number(data, "\"ack_msgs\":");
        if (seq > st->acked) st->acked = seq;
        if (flow > 0) st->flow = flow;
    }
    st->answered = 1;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
    natsMsg_Destroy(msg);
}

/// Waits (at most 30 s) until `ready` holds; 0 when it did, -1 on failure or timeout.
static int fast_wait(fast_state *st, int (*ready)(fast_state *, unsigned long long), unsigned long long arg) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    int result = 0;
    pthread_mutex_lock(&st->lock);
    while (!st->failed && !ready(st, arg)) {
        if (pthread_cond_timedwait(&st->changed, &st->lock, &deadline) != 0) {
            result = -1;
            break;
        }
    }
    if (st->failed) result = -1;
    pthread_mutex_unlock(&st->lock);
    return result;
}

static int fast_answered(fast_state *st, unsigned long long unused) { return st->answered; }
static int fast_done(fast_state *st, unsigned long long unused) { return st->done; }
// Whether message `next` may go: fewer than `outstanding` flow acks are awaited.
static int fast_room(fast_state *st, unsigned long long next) {
    return st->done || st->acked + st->flow * st->outstanding >= next;
}

double cb_fast_publish(const char *url, const char *subject, const void *body, int size, int count, int flow,
                       int outstanding, int with_msg_id) {
    natsConnection *nc = NULL;
    if (count < 2 || natsConnection_ConnectTo(&nc, url) != NATS_OK) return -1;
    int run = rand();
    char prefix[96], wildcard[128], reply[192], id[64];
    snprintf(prefix, sizeof prefix, "_baseline.fast.%d.b%d", run, run);
    snprintf(wildcard, sizeof wildcard, "%s.>", prefix);
    fast_state st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1, 0, 0, 0, (unsigned long long)outstanding};
    natsSubscription *sub = NULL;
    if (natsConnection_Subscribe(&sub, nc, wildcard, on_fast_ack, &st) != NATS_OK) {
        natsConnection_Destroy(nc);
        return -1;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    double start = now_seconds();
    natsStatus s = NATS_OK;
    int ok = 1;
    for (int i = 1; i <= count && s == NATS_OK && ok; i++) {
        if (i > 1 && fast_wait(&st, fast_room, (unsigned long long)i) != 0) {
            ok = 0;
            break;
        }
        int operation = i == 1 ? 0 : (i == count ? 2 : 1);
        snprintf(reply, sizeof reply, "%s.%d.fail.%d.%d.$FI", prefix, flow, i, operation);
        natsMsg *msg = NULL;
        s = natsMsg_Create(&msg, subject, reply, body, size);
        if (s != NATS_OK) break;
        if (with_msg_id) {
            snprintf(id, sizeof id, "f%d-%d", run, i);
            natsMsgHeader_Set(msg, "Nats-Msg-Id", id);
        }
        s = natsConnection_PublishMsg(nc, msg);
        natsMsg_Destroy(msg);
        // The first answer says whether the server and stream know fast batches, and the flow.
        if (i == 1 && s == NATS_OK && fast_wait(&st, fast_answered, 0) != 0) ok = 0;
    }
    if (s == NATS_OK && ok && fast_wait(&st, fast_done, 0) != 0) ok = 0;
    double elapsed = now_seconds() - start;
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    return s == NATS_OK && ok ? elapsed : -1;
}

// A synchronous push subscription to a new durable consumer, read by the caller: the pieces of
// the consume anatomy rows, which add Courier's work to it step by step.
typedef struct {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    char stream[128];
    char durable[128];
} cb_sync_consumer;

void *cb_sync_open(const char *url, const char *stream, const char *durable, const char *filter, int max_ack_pending) {
    cb_sync_consumer *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    snprintf(h->stream, sizeof h->stream, "%s", stream);
    snprintf(h->durable, sizeof h->durable, "%s", durable);
    char deliver[256];
    snprintf(deliver, sizeof deliver, "_baseline.sync.%s", durable);
    if (open_js(url, &h->nc, &h->js, 0) == NATS_OK &&
        add_durable(h->js, stream, durable, filter, deliver, max_ack_pending) == NATS_OK &&
        natsConnection_SubscribeSync(&h->sub, h->nc, deliver) == NATS_OK) {
        return h;
    }
    cb_sync_close(h);
    return NULL;
}

void *cb_sync_next(void *handle, int64_t timeout_ms) {
    cb_sync_consumer *h = handle;
    natsMsg *m = NULL;
    return natsSubscription_NextMsg(&m, h->sub, timeout_ms) == NATS_OK ? m : NULL;
}

const void *cb_msg_data(void *msg, int *length) {
    *length = natsMsg_GetDataLength(msg);
    return natsMsg_GetData(msg);
}

const char *cb_msg_reply(void *msg) { return natsMsg_GetReply(msg); }

int cb_sync_ack(void *handle, void *msg) {
    cb_sync_consumer *h = handle;
    const char *reply = natsMsg_GetReply(msg);
    return reply && natsConnection_PublishString(h->nc, reply, "+ACK") == NATS_OK ? 0 : -1;
}

void cb_msg_destroy(void *msg) { natsMsg_Destroy(msg); }

void cb_sync_close(void *handle) {
    cb_sync_consumer *h = handle;
    if (!h) return;
    if (h->sub) {
        natsSubscription_Unsubscribe(h->sub);
        natsSubscription_Destroy(h->sub);
    }
    if (h->js) {
        jsErrCode jerr = 0;
        js_DeleteConsumer(h->js, h->stream, h->durable, NULL, &jerr);
    }
    close_js(h->nc, h->js);
    free(h);
}
