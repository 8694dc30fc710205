/*
 * Delivery reports and failures through the C ABI, driven by
 * client-lib/ffi/tests/c_abi.rs (which builds it with gcc, starts shmkafkad
 * with its embedded broker, runs this, and compares with what a consumer
 * reads back).
 *
 *   test_reports delivered SOCKET TOPIC COUNT
 *     Sends COUNT records "rk-<i>"/"rv-<i>" (every third with an opaque) from
 *     a producer with delivery reports, reads the reports with both
 *     shmkafka_producer_poll (callback) and shmkafka_producer_poll_reports
 *     (array), and checks each arrives once, in commit order, with its
 *     opaque, partition, offset and timestamp. Prints
 *     "D <seq> <partition> <offset> <timestamp_ms>" per record and "REPORTS-OK <count>".
 *
 *   test_reports failures SOCKET TOPIC COUNT
 *     Against a daemon whose producer has message.max.bytes=1000: sends
 *     COUNT records of 2000 bytes from a producer with delivery reports
 *     (every one must come back as a failure report), then COUNT more from
 *     a producer without (every one must come back through flush and
 *     shmkafka_producer_failures). Prints "FAILURES-OK <count>".
 */
#include "shmkafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s (last_error: %s)\n", __FILE__, \
                    __LINE__, #cond, shmkafka_last_error());                       \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define CHECK_CODE(call, code)                                                     \
    do {                                                                           \
        shmkafka_result r_ = (call);                                               \
        if (r_ != (code)) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last_error: %s)\n", \
                    __FILE__, __LINE__, #call, shmkafka_result_name(r_),           \
                    shmkafka_result_name(code), shmkafka_last_error());            \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define OK(call) CHECK_CODE(call, SHMKAFKA_RESULT_OK)

#define UNASSIGNED SHMKAFKA_PARTITION_UNASSIGNED
#define NOW SHMKAFKA_TIMESTAMP_NOW
#define PARTITIONS 3
/* librdkafka's RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE. */
#define MSG_SIZE_TOO_LARGE 10
#define OPAQUE_BASE 1000000000ULL

static const uint8_t *b(const char *s) { return (const uint8_t *)s; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What has been reported so far. */
struct seen {
    const char *topic;
    long count;
    long served;
    /* Reports come in commit order: the next one must be for this seq. */
    uint64_t next_seq;
    int32_t *partition;
    int64_t *offset;
    int64_t *timestamp_ms;
    int32_t expected_code;
    /* Reports served through the callback and through the array. */
    long by_callback;
    long by_array;
};

static void record_report(const shmkafka_delivery_report *r, struct seen *s) {
    if (r->seq >= (uint64_t)s->count || s->partition[r->seq] != -2) {
        fprintf(stderr, "report for seq %llu: unexpected or repeated\n",
                (unsigned long long)r->seq);
        failures++;
        return;
    }
    CHECK(r->seq == s->next_seq);
    s->next_seq = r->seq + 1;
    CHECK(r->topic != NULL && strcmp(r->topic, s->topic) == 0);
    int with_opaque = r->seq % 3 == 0;
    CHECK(r->has_opaque == with_opaque);
    CHECK(r->opaque == (with_opaque ? OPAQUE_BASE + r->seq : 0));
    if (r->error_code != s->expected_code) {
        fprintf(stderr, "seq %llu: error %d (%s), expected %d\n",
                (unsigned long long)r->seq, r->error_code,
                shmkafka_error_name(r->error_code), s->expected_code);
        failures++;
    }
    if (s->expected_code == 0) {
        CHECK(r->partition >= 0 && r->partition < PARTITIONS);
        CHECK(r->offset >= 0);
        CHECK(r->timestamp_ms > 0);
        CHECK(r->persistence == 2);
    } else {
        CHECK(r->offset == -1);
        CHECK(r->persistence == 0); /* refused before it left the daemon */
    }
    s->partition[r->seq] = r->partition;
    s->offset[r->seq] = r->offset;
    s->timestamp_ms[r->seq] = r->timestamp_ms;
    s->served++;
}

static void on_report(const shmkafka_delivery_report *r, void *user_data) {
    record_report(r, (struct seen *)user_data);
}

/* Serves what is ready, alternating between the callback and the array. */
static size_t poll_some(shmkafka_producer *p, uint64_t timeout_ms, struct seen *s,
                        int with_callback) {
    size_t served = 0;
    if (with_callback) {
        OK(shmkafka_producer_poll(p, timeout_ms, 100, on_report, s, &served));
        CHECK(served <= 100);
        s->by_callback += (long)served;
        return served;
    }
    shmkafka_delivery_report reports[64];
    OK(shmkafka_producer_poll_reports(p, timeout_ms, reports, 64, &served));
    CHECK(served <= 64);
    for (size_t i = 0; i < served; i++) record_report(&reports[i], s);
    s->by_array += (long)served;
    return served;
}

/* Polls until every report came or 60 s passed. */
static void poll_rest(shmkafka_producer *p, struct seen *s) {
    double deadline = now_s() + 60;
    int turn = 0;
    while (s->served < s->count && now_s() < deadline) {
        poll_some(p, 500, s, turn++ % 2);
    }
    CHECK(s->served == s->count);
}

static struct seen new_seen(const char *topic, long count, int32_t expected_code) {
    struct seen s = {topic, count, 0, 0, calloc((size_t)count, sizeof(int32_t)),
                     calloc((size_t)count, sizeof(int64_t)),
                     calloc((size_t)count, sizeof(int64_t)), expected_code, 0, 0};
    for (long i = 0; i < count; i++) s.partition[i] = -2;
    return s;
}

static void free_seen(struct seen *s) {
    free(s->partition);
    free(s->offset);
    free(s->timestamp_ms);
}

static void error_names(void) {
    CHECK(strcmp(shmkafka_error_name(-192), "_MSG_TIMED_OUT") == 0);
    CHECK(strcmp(shmkafka_error_description(-192), "Local: Message timed out") == 0);
    CHECK(strcmp(shmkafka_error_name(MSG_SIZE_TOO_LARGE), "MSG_SIZE_TOO_LARGE") == 0);
    CHECK(strcmp(shmkafka_error_name(0), "NO_ERROR") == 0);
    CHECK(strcmp(shmkafka_error_name(123456), "UNKNOWN") == 0);
    CHECK(strlen(shmkafka_error_description(123456)) > 0);
    CHECK(strcmp(shmkafka_result_name(SHMKAFKA_RESULT_REPORTS_NOT_ENABLED),
                 "SHMKAFKA_RESULT_REPORTS_NOT_ENABLED") == 0);
}

/* Report calls on a producer connected without delivery reports. */
static void reports_not_enabled(const char *socket, const char *topic_name) {
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));
    shmkafka_delivery_report reports[4];
    size_t count = 99;
    CHECK_CODE(shmkafka_producer_poll_reports(p, 0, reports, 4, &count),
               SHMKAFKA_RESULT_REPORTS_NOT_ENABLED);
    CHECK(strstr(shmkafka_last_error(), "delivery_reports") != NULL);
    CHECK(count == 99);
    CHECK_CODE(shmkafka_producer_poll(p, 0, 4, on_report, NULL, &count),
               SHMKAFKA_RESULT_REPORTS_NOT_ENABLED);
    uint64_t seq = 77;
    CHECK_CODE(shmkafka_producer_send_opaque(p, t, NULL, 0, 1, b("x"), 1, 0, NULL, 0,
                                             UNASSIGNED, NOW, 5, &seq),
               SHMKAFKA_RESULT_REPORTS_NOT_ENABLED);
    CHECK(seq == 77);
    OK(shmkafka_producer_close(p, 1000));
}

static shmkafka_result send_numbered(shmkafka_producer *p, const shmkafka_topic *t, long i,
                                     const uint8_t *value, size_t value_len,
                                     int with_opaque, uint64_t *seq) {
    char key[32];
    int kl = snprintf(key, sizeof key, "rk-%ld", i);
    if (with_opaque) {
        return shmkafka_producer_send_opaque(p, t, b(key), (size_t)kl, 0, value, value_len,
                                             0, NULL, 0, UNASSIGNED, NOW,
                                             OPAQUE_BASE + (uint64_t)i, seq);
    }
    return shmkafka_producer_send(p, t, b(key), (size_t)kl, 0, value, value_len, 0, NULL,
                                  0, UNASSIGNED, NOW, seq);
}

/* Sends record i; on a full ring (fail-fast) serves reports, which gives
 * their space back, and tries again, for up to 60 s: the thread that reads
 * the reports must not block in send. */
static shmkafka_result send_serving(shmkafka_producer *p, const shmkafka_topic *t,
                                    struct seen *s, long i, const uint8_t *value,
                                    size_t value_len, uint64_t *seq) {
    double deadline = now_s() + 60;
    int turn = 0;
    for (;;) {
        shmkafka_result r = send_numbered(p, t, i, value, value_len, i % 3 == 0, seq);
        if (r != SHMKAFKA_RESULT_FULL || now_s() > deadline) return r;
        poll_some(p, 100, s, turn++ % 2);
    }
}

static int offsets_dense(const struct seen *s) {
    int ok = 1;
    for (int32_t part = 0; part < PARTITIONS; part++) {
        long n = 0;
        for (long i = 0; i < s->count; i++) n += s->partition[i] == part;
        char *taken = calloc((size_t)n + 1, 1);
        for (long i = 0; i < s->count; i++) {
            if (s->partition[i] != part) continue;
            int64_t off = s->offset[i];
            if (off < 0 || off >= n || taken[off]) {
                fprintf(stderr, "partition %d: offset %lld out of 0..%ld or repeated\n",
                        part, (long long)off, n - 1);
                ok = 0;
            } else {
                taken[off] = 1;
            }
        }
        free(taken);
    }
    return ok;
}

static void delivered(const char *socket, const char *topic_name, long count) {
    error_names();
    reports_not_enabled(socket, topic_name);

    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 1 << 20;
    options.client_name = "c-abi-reports";
    options.block_timeout_ms = SHMKAFKA_FAIL_FAST;
    options.delivery_reports = 1;
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));
    CHECK_CODE(shmkafka_producer_poll(p, 0, 4, NULL, NULL, NULL),
               SHMKAFKA_RESULT_NULL_ARGUMENT);
    size_t none = 0;
    CHECK_CODE(shmkafka_producer_poll_reports(p, 0, NULL, 4, &none),
               SHMKAFKA_RESULT_NULL_ARGUMENT);

    struct seen s = new_seen(topic_name, count, 0);
    char value[32];
    for (long i = 0; i < count; i++) {
        int vl = snprintf(value, sizeof value, "rv-%ld", i);
        uint64_t seq = 0;
        shmkafka_result r = send_serving(p, t, &s, i, b(value), (size_t)vl, &seq);
        if (r != SHMKAFKA_RESULT_OK) {
            fprintf(stderr, "send %ld: %s: %s\n", i, shmkafka_result_name(r),
                    shmkafka_last_error());
            failures++;
            break;
        }
        CHECK(seq == (uint64_t)i); /* a record counter, from 0 */
        if (i % 100 == 99) poll_some(p, 0, &s, (i / 100) % 2);
    }
    poll_rest(p, &s);
    size_t extra = 99;
    OK(shmkafka_producer_poll_reports(p, 200, NULL, 0, &extra));
    CHECK(extra == 0);
    shmkafka_delivery_report after[4];
    OK(shmkafka_producer_poll_reports(p, 200, after, 4, &extra));
    CHECK(extra == 0);
    size_t failed = 99;
    OK(shmkafka_producer_flush(p, 10000, &failed));
    CHECK(failed == 0);
    CHECK(offsets_dense(&s));
    CHECK(s.by_callback > 0 && s.by_array > 0);
    CHECK(s.by_callback + s.by_array == count);
    for (long i = 0; i < s.count; i++) {
        printf("D %ld %d %lld %lld\n", i, s.partition[i], (long long)s.offset[i],
               (long long)s.timestamp_ms[i]);
    }
    free_seen(&s);
    OK(shmkafka_producer_close(p, 10000));
}

static void failing(const char *socket, const char *topic_name, long count) {
    size_t len = 2000; /* over the daemon's message.max.bytes=1000 */
    uint8_t *value = calloc(1, len);

    /* With delivery reports: a failure report per record, none lost. A
     * 4 MiB ring holds about 2000 of them: the sender reads reports when
     * it finds the ring full. */
    shmkafka_producer_options options = {0};
    options.socket_path = socket;
    options.ring_capacity = 4 << 20;
    options.client_name = "c-abi-report-failures";
    options.block_timeout_ms = SHMKAFKA_FAIL_FAST;
    options.delivery_reports = 1;
    shmkafka_producer *p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    const shmkafka_topic *t = NULL;
    OK(shmkafka_producer_topic(p, topic_name, &t));
    struct seen s = new_seen(topic_name, count, MSG_SIZE_TOO_LARGE);
    for (long i = 0; i < count; i++) {
        uint64_t seq = 0;
        shmkafka_result r = send_serving(p, t, &s, i, value, len, &seq);
        if (r != SHMKAFKA_RESULT_OK) {
            fprintf(stderr, "send %ld (%ld reports read): %s: %s\n", i, s.served,
                    shmkafka_result_name(r), shmkafka_last_error());
            failures++;
            break;
        }
        CHECK(seq == (uint64_t)i);
    }
    poll_rest(p, &s);
    free_seen(&s);
    OK(shmkafka_producer_close(p, 10000));

    /* Without: every failure through flush and the failure list. The ring
     * holds all records, and the daemon stops draining it once 4096
     * failures wait unread: flush must take them as it waits. */
    options.ring_capacity = 32 << 20;
    options.client_name = "c-abi-flush-failures";
    options.block_timeout_ms = 60000;
    options.delivery_reports = 0;
    p = NULL;
    OK(shmkafka_producer_connect(&options, &p));
    if (p == NULL) return;
    OK(shmkafka_producer_topic(p, topic_name, &t));
    for (long i = 0; i < count; i++) {
        OK(shmkafka_producer_send(p, t, NULL, 0, 1, value, len, 0, NULL, 0, UNASSIGNED,
                                  NOW, NULL));
    }
    size_t failed = 0;
    OK(shmkafka_producer_flush(p, 60000, &failed));
    CHECK(failed == (size_t)count);
    char *reported = calloc((size_t)count, 1);
    long total = 0;
    shmkafka_failure list[500];
    size_t got = 0;
    do {
        OK(shmkafka_producer_failures(p, list, 500, &got));
        for (size_t i = 0; i < got; i++) {
            uint64_t seq = list[i].seq;
            if (seq >= (uint64_t)count || reported[seq]) {
                fprintf(stderr, "failure for seq %llu: unexpected or repeated\n",
                        (unsigned long long)seq);
                failures++;
                continue;
            }
            reported[seq] = 1;
            CHECK(list[i].code == MSG_SIZE_TOO_LARGE);
            total++;
        }
    } while (got > 0);
    CHECK(total == count);
    free(reported);
    OK(shmkafka_producer_close(p, 10000));
    free(value);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s delivered|failures SOCKET TOPIC COUNT\n", argv[0]);
        return 2;
    }
    long count = atol(argv[4]);
    if (strcmp(argv[1], "delivered") == 0) {
        delivered(argv[2], argv[3], count);
    } else if (strcmp(argv[1], "failures") == 0) {
        failing(argv[2], argv[3], count);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    if (failures != 0) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("%s %ld\n", strcmp(argv[1], "delivered") == 0 ? "REPORTS-OK" : "FAILURES-OK",
           count);
    return 0;
}
