/*
 * C ABI test, driven by client-lib/ffi/tests/c_abi.rs (which builds it with
 * gcc against include/shmkafka.h and libshmkafka, starts shmkafkad with its
 * embedded broker, runs this, and reads the topic back with an independent
 * consumer).
 *
 *   test_abi SOCKET TOPIC BULK_COUNT
 *
 * Writes to TOPIC (see c_abi.rs for the expected content):
 *   "k0"/"v0" with headers h1="a", h2=null, h3=""
 *   null key / "v1"
 *   empty key / null value
 *   "k3"/"v3" to partition 0 with timestamp 1700000000000
 *   "k4"/"v4-zero-copy" through reserve/commit
 *   BULK_COUNT records "bulk-<i>"/"value-<i>" with header n=<i>
 * and one reservation that is aborted (must not arrive). It also checks that
 * misuse (NULL arguments, bad arguments, a full fail-fast ring) returns the
 * documented codes with a last_error message, never a crash, and that a
 * permanent failure (a record over the broker's size limit, on TOPIC-failures)
 * comes back by sequence number.
 * Prints "C-ABI-OK <records written>" and exits 0 when every check passed.
 */
#include "shmkafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s (last_error: %s)\n", __FILE__, \
                    __LINE__, #cond, shmkafka_last_error());                       \
            failures++;                                                            \
        }                                                                          \
    } while (0)

/* The call returns `code` and leaves a last_error mentioning `needle`. */
#define CHECK_CODE(call, code, needle)                                             \
    do {                                                                           \
        shmkafka_result r_ = (call);                                               \
        if (r_ != (code)) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last_error: %s)\n", \
                    __FILE__, __LINE__, #call, shmkafka_result_name(r_),           \
                    shmkafka_result_name(code), shmkafka_last_error());            \
            failures++;                                                            \
        } else if ((code) != SHMKAFKA_RESULT_OK &&                                 \
                   strstr(shmkafka_last_error(), (needle)) == NULL) {              \
            fprintf(stderr, "%s:%d: last_error %s does not mention \"%s\"\n",      \
                    __FILE__, __LINE__, shmkafka_last_error(), (needle));          \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define OK(call) CHECK_CODE(call, SHMKAFKA_RESULT_OK, "")

#define UNASSIGNED SHMKAFKA_PARTITION_UNASSIGNED
#define NOW SHMKAFKA_TIMESTAMP_NOW

static const uint8_t *b(const char *s) { return (const uint8_t *)s; }

/* Misuse that needs no daemon. */
static void misuse_without_daemon(void) {
    shmkafka_producer *p = (shmkafka_producer *)0x1; /* must stay untouched */
    uint64_t seq = 77;

    CHECK_CODE(shmkafka_producer_connect(NULL, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "out_producer");
    CHECK_CODE(shmkafka_producer_send(NULL, NULL, NULL, 0, 1, NULL, 0, 1, NULL, 0,
                                      UNASSIGNED, NOW, &seq),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "producer");
    CHECK(seq == 77); /* outputs are written only on success */
    CHECK_CODE(shmkafka_producer_topic(NULL, "t", NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "producer");
    CHECK_CODE(shmkafka_producer_flush(NULL, 0, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "producer");
    CHECK_CODE(shmkafka_producer_failures(NULL, NULL, 0, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "producer");
    CHECK_CODE(shmkafka_producer_stats(NULL, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "producer");
    CHECK_CODE(shmkafka_producer_reserve(NULL, NULL, 0, 0, 0, 0, UNASSIGNED, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "producer");
    CHECK_CODE(shmkafka_reservation_key(NULL, NULL, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "reservation");
    CHECK_CODE(shmkafka_reservation_value(NULL, NULL, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "reservation");
    CHECK_CODE(shmkafka_reservation_commit(NULL, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "reservation");
    CHECK_CODE(shmkafka_reservation_abort(NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "reservation");
    CHECK_CODE(shmkafka_producer_close(NULL, 0), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "producer");

    /* Nobody listens there. */
    shmkafka_producer_options options = {0};
    options.socket_path = "/nonexistent/shmkafka-test.sock";
    CHECK_CODE(shmkafka_producer_connect(&options, &p), SHMKAFKA_RESULT_CONNECT,
               "/nonexistent/shmkafka-test.sock");
    CHECK(p == (shmkafka_producer *)0x1);

    /* Not a power of two: refused before any connection attempt. */
    options.ring_capacity = 100000;
    CHECK_CODE(shmkafka_producer_connect(&options, &p), SHMKAFKA_RESULT_INVALID_ARGUMENT,
               "power of two");

    /* last_error copy-out, with truncation like snprintf. */
    char small[8];
    size_t full = shmkafka_last_error_copy(small, sizeof small);
    CHECK(full == strlen(shmkafka_last_error()));
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(strncmp(small, shmkafka_last_error(), sizeof small - 1) == 0);
    CHECK(shmkafka_last_error_copy(NULL, 0) == full);

    CHECK(strcmp(shmkafka_result_name(SHMKAFKA_RESULT_FULL), "SHMKAFKA_RESULT_FULL") == 0);
    CHECK(strcmp(shmkafka_result_name(12345), "SHMKAFKA_RESULT_UNKNOWN") == 0);
    CHECK(strlen(shmkafka_version()) > 0);
}

/* A fail-fast ring with an uncommitted reservation fills deterministically:
 * nothing behind the reservation can be released. */
static void full_ring(const char *socket, const char *topic_name) {
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 4096;
    options.block_timeout_ms = SHMKAFKA_FAIL_FAST;
    options.client_name = "c-abi-full-ring";
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));

    shmkafka_reservation *held = NULL;
    OK(shmkafka_producer_reserve(p, t, 0, 1, 8, 0, UNASSIGNED, &held));
    shmkafka_result r = SHMKAFKA_RESULT_OK;
    int sent = 0;
    uint8_t value[200] = {0};
    while (r == SHMKAFKA_RESULT_OK && sent < 1000) {
        r = shmkafka_producer_send(p, t, NULL, 0, 1, value, sizeof value, 0, NULL, 0,
                                   UNASSIGNED, NOW, NULL);
        if (r == SHMKAFKA_RESULT_OK) sent++;
    }
    CHECK(r == SHMKAFKA_RESULT_FULL);
    CHECK(strstr(shmkafka_last_error(), "ring full") != NULL);
    CHECK(sent > 0 && sent < 1000);
    shmkafka_stats stats;
    OK(shmkafka_producer_stats(p, &stats));
    CHECK(stats.full_events >= 1);
    CHECK(stats.capacity == 4096);

    /* A flush cannot finish while the reservation is held. */
    CHECK_CODE(shmkafka_producer_flush(p, 50, NULL), SHMKAFKA_RESULT_TIMED_OUT, "flush");
    OK(shmkafka_reservation_abort(held));
    size_t failed = 99;
    OK(shmkafka_producer_flush(p, 30000, &failed));
    CHECK(failed == 0);
    OK(shmkafka_producer_stats(p, &stats));
    CHECK(stats.aborted == 1);
    CHECK(stats.unacknowledged_bytes == 0);
    OK(shmkafka_producer_close(p, 1000));
}

/* A record over the broker's message.max.bytes (1 MB by default) fits the
 * ring but is refused by librdkafka: a permanent failure, reported by
 * sequence number through flush and failures. */
static void permanent_failure(const char *socket, const char *topic_name) {
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 8 << 20;
    options.max_record_len = 4 << 20;
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));
    size_t big_len = 2000000;
    uint8_t *big = calloc(1, big_len);
    uint64_t big_seq = 0, ok_seq = 0;
    OK(shmkafka_producer_send(p, t, NULL, 0, 1, big, big_len, 0, NULL, 0, UNASSIGNED, NOW,
                              &big_seq));
    OK(shmkafka_producer_send(p, t, NULL, 0, 1, b("fine"), 4, 0, NULL, 0, UNASSIGNED, NOW,
                              &ok_seq));
    free(big);
    size_t failed = 0;
    OK(shmkafka_producer_flush(p, 30000, &failed));
    CHECK(failed == 1);
    shmkafka_failure list[4];
    memset(list, 0, sizeof list);
    size_t count = 0;
    OK(shmkafka_producer_failures(p, NULL, 0, &count)); /* capacity 0 takes nothing */
    CHECK(count == 0);
    OK(shmkafka_producer_failures(p, list, 4, &count));
    CHECK(count == 1);
    CHECK(list[0].seq == big_seq);
    CHECK(list[0].code == 10); /* RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE */
    OK(shmkafka_producer_failures(p, list, 4, &count));
    CHECK(count == 0);
    OK(shmkafka_producer_close(p, 10000));
}

static int content(const char *socket, const char *topic_name, long bulk) {
    int written = 0;
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 1 << 20;
    options.client_name = "c-abi-test";
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return 0;

    const shmkafka_topic *t = NULL, *again = NULL;
    CHECK_CODE(shmkafka_producer_topic(p, NULL, &t), SHMKAFKA_RESULT_NULL_ARGUMENT, "name");
    CHECK_CODE(shmkafka_producer_topic(p, "no spaces allowed", &t),
               SHMKAFKA_RESULT_INVALID_TOPIC, "no spaces allowed");
    CHECK(t == NULL);
    OK(shmkafka_producer_topic(p, topic_name, &t));
    OK(shmkafka_producer_topic(p, topic_name, &again));
    CHECK(t != NULL && t == again);

    /* Headers: a value, a null value, an empty value (NULL pointer, length 0). */
    shmkafka_header headers[3] = {
        {"h1", 2, b("a"), 1, 0},
        {"h2", 2, NULL, 0, 1},
        {"h3", 2, NULL, 0, 0},
    };
    uint64_t seq0 = 0, seq = 0;
    OK(shmkafka_producer_send(p, t, b("k0"), 2, 0, b("v0"), 2, 0, headers, 3, UNASSIGNED,
                              NOW, &seq0));
    written++;
    OK(shmkafka_producer_send(p, t, NULL, 0, 1, b("v1"), 2, 0, NULL, 0, UNASSIGNED, NOW,
                              &seq));
    written++;
    CHECK(seq > seq0);
    OK(shmkafka_producer_send(p, t, NULL, 0, 0, NULL, 0, 1, NULL, 0, UNASSIGNED, NOW,
                              NULL));
    written++;
    OK(shmkafka_producer_send(p, t, b("k3"), 2, 0, b("v3"), 2, 0, NULL, 0, 0,
                              1700000000000LL, NULL));
    written++;

    /* Zero-copy. */
    shmkafka_reservation *res = NULL;
    OK(shmkafka_producer_reserve(p, t, 2, 0, 12, 0, UNASSIGNED, &res));
    if (res != NULL) {
        uint8_t *area = NULL;
        size_t len = 0;
        OK(shmkafka_reservation_key(res, &area, &len));
        CHECK(len == 2);
        memcpy(area, "k4", 2);
        OK(shmkafka_reservation_value(res, &area, &len));
        CHECK(len == 12);
        memcpy(area, "v4-zero-copy", 12);
        uint64_t committed = 0;
        OK(shmkafka_reservation_commit(res, &committed));
        CHECK(committed > seq);
        written++;
    }
    /* Aborted: must never arrive. */
    OK(shmkafka_producer_reserve(p, t, 7, 0, 7, 0, UNASSIGNED, &res));
    if (res != NULL) {
        uint8_t *area = NULL;
        size_t len = 0;
        OK(shmkafka_reservation_value(res, &area, &len));
        memcpy(area, "ABORTED", 7);
        OK(shmkafka_reservation_abort(res));
    }

    /* Argument errors: nothing written, outputs untouched. */
    seq = 4242;
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 3, 0, b("v"), 1, 0, NULL, 0, UNASSIGNED,
                                      NOW, &seq),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "key");
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 0, 1, b("v"), 1, 0, NULL, 2, UNASSIGNED,
                                      NOW, &seq),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "headers");
    CHECK_CODE(shmkafka_producer_send(p, NULL, NULL, 0, 1, b("v"), 1, 0, NULL, 0,
                                      UNASSIGNED, NOW, &seq),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "topic");
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 0, 1, b("v"), 1, 0, NULL, 0, -5, NOW,
                                      &seq),
               SHMKAFKA_RESULT_INVALID_ARGUMENT, "partition -5");
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 0, 1, b("v"), 1, 0, NULL, 0, UNASSIGNED,
                                      -3, &seq),
               SHMKAFKA_RESULT_INVALID_ARGUMENT, "timestamp");
    shmkafka_header bad_name = {"\xff\xfe", 2, NULL, 0, 1};
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 0, 1, b("v"), 1, 0, &bad_name, 1,
                                      UNASSIGNED, NOW, &seq),
               SHMKAFKA_RESULT_INVALID_ARGUMENT, "UTF-8");
    size_t big_len = 600 * 1024; /* over half of the 1 MiB ring */
    uint8_t *big = calloc(1, big_len);
    CHECK_CODE(shmkafka_producer_send(p, t, NULL, 0, 1, big, big_len, 0, NULL, 0,
                                      UNASSIGNED, NOW, &seq),
               SHMKAFKA_RESULT_TOO_LARGE, "exceeds");
    free(big);
    CHECK(seq == 4242);
    CHECK_CODE(shmkafka_producer_reserve(p, t, 0, 1, 0, 1, UNASSIGNED, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "out_reservation");
    CHECK_CODE(shmkafka_producer_stats(p, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT, "out");
    CHECK_CODE(shmkafka_producer_failures(p, NULL, 4, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT, "out_count");

    /* A topic handle of another producer is refused, not misread. */
    shmkafka_producer *other = NULL;
    OK(shmkafka_producer_connect(&options, &other));
    if (other != NULL) {
        CHECK_CODE(shmkafka_producer_send(other, t, NULL, 0, 1, b("v"), 1, 0, NULL, 0,
                                          UNASSIGNED, NOW, NULL),
                   SHMKAFKA_RESULT_INVALID_ARGUMENT, "another producer");
        OK(shmkafka_producer_close(other, 1000));
    }

    /* Volume. */
    char key[32], value[32], n[32];
    for (long i = 0; i < bulk; i++) {
        int kl = snprintf(key, sizeof key, "bulk-%ld", i);
        int vl = snprintf(value, sizeof value, "value-%ld", i);
        int nl = snprintf(n, sizeof n, "%ld", i);
        shmkafka_header h = {"n", 1, b(n), (size_t)nl, 0};
        shmkafka_result r = shmkafka_producer_send(p, t, b(key), (size_t)kl, 0, b(value),
                                                   (size_t)vl, 0, &h, 1, UNASSIGNED, NOW,
                                                   NULL);
        if (r != SHMKAFKA_RESULT_OK) {
            fprintf(stderr, "bulk send %ld: %s: %s\n", i, shmkafka_result_name(r),
                    shmkafka_last_error());
            failures++;
            break;
        }
        written++;
    }

    size_t failed = 99;
    OK(shmkafka_producer_flush(p, 30000, &failed));
    CHECK(failed == 0);
    shmkafka_failure list[4];
    size_t count = 99;
    OK(shmkafka_producer_failures(p, list, 4, &count));
    CHECK(count == 0);
    OK(shmkafka_producer_failures(p, NULL, 0, &count));
    shmkafka_stats stats;
    OK(shmkafka_producer_stats(p, &stats));
    CHECK(stats.connected == 1);
    CHECK(stats.aborted == 1);
    CHECK(stats.unacknowledged_bytes == 0);
    CHECK(stats.capacity == 1 << 20);
    OK(shmkafka_producer_close(p, 10000));
    return written;
}

/* Batches: three records copied with one claim, then two written in place
 * with one claim and a third reservation aborted. The broker must hold
 * exactly "b0".."b2" then "z0","z1", numbered after each other. */
static void batches(const char *socket, const char *topic_name) {
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 1 << 16;
    options.client_name = "c-abi-batch";
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));

    shmkafka_record records[3];
    memset(records, 0, sizeof records);
    const char *keys[3] = {"b0", "b1", "b2"};
    const char *values[3] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++) {
        records[i].key = b(keys[i]);
        records[i].key_len = 2;
        records[i].value = b(values[i]);
        records[i].value_len = strlen(values[i]);
        records[i].partition = 0;
        records[i].timestamp_ms = NOW;
    }
    uint64_t first = 99;
    OK(shmkafka_producer_send_batch(p, t, records, 3, &first));
    CHECK(first == 0);
    CHECK_CODE(shmkafka_producer_send_batch(p, t, NULL, 1, NULL), SHMKAFKA_RESULT_NULL_ARGUMENT,
               "records");

    size_t key_lens[2] = {2, 2};
    size_t value_lens[2] = {6, SIZE_MAX}; /* the second value is null */
    shmkafka_batch *batch = NULL;
    OK(shmkafka_producer_reserve_batch(p, t, key_lens, value_lens, 2, &batch));
    for (size_t i = 0; i < 2 && batch != NULL; i++) {
        uint8_t *area = NULL;
        size_t len = 0;
        OK(shmkafka_batch_key(batch, i, &area, &len));
        CHECK(len == 2);
        if (area != NULL && len == 2) {
            area[0] = 'z';
            area[1] = (uint8_t)('0' + i);
        }
        OK(shmkafka_batch_value(batch, i, &area, &len));
        CHECK(len == (i == 0 ? 6 : 0));
        if (area != NULL && len == 6) memcpy(area, "inline", 6);
    }
    uint8_t *unused = NULL;
    size_t unused_len = 0;
    CHECK_CODE(shmkafka_batch_key(batch, 2, &unused, &unused_len),
               SHMKAFKA_RESULT_INVALID_ARGUMENT, "index 2");
    OK(shmkafka_batch_commit(batch, &first));
    CHECK(first == 3);

    shmkafka_batch *dropped = NULL;
    OK(shmkafka_producer_reserve_batch(p, t, key_lens, value_lens, 1, &dropped));
    OK(shmkafka_batch_abort(dropped));

    size_t failed = 99;
    OK(shmkafka_producer_flush(p, 30000, &failed));
    CHECK(failed == 0);
    shmkafka_stats stats;
    OK(shmkafka_producer_stats(p, &stats));
    CHECK(stats.aborted == 1);
    OK(shmkafka_producer_close(p, 10000));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SOCKET TOPIC BULK_COUNT\n", argv[0]);
        return 2;
    }
    misuse_without_daemon();
    char full_topic[300];
    snprintf(full_topic, sizeof full_topic, "%s-full", argv[2]);
    full_ring(argv[1], full_topic);
    snprintf(full_topic, sizeof full_topic, "%s-failures", argv[2]);
    permanent_failure(argv[1], full_topic);
    snprintf(full_topic, sizeof full_topic, "%s-batch", argv[2]);
    batches(argv[1], full_topic);
    int written = content(argv[1], argv[2], atol(argv[3]));
    if (failures != 0) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("C-ABI-OK %d\n", written);
    return 0;
}
