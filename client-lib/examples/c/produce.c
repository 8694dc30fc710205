/*
 * Sends records to a topic through shmkafkad and waits until the broker has
 * acknowledged them: the C counterpart of client-lib/examples/produce.rs.
 *
 *   cc -o produce produce.c $(pkg-config --cflags --libs shmkafka)
 *   ./produce [TOPIC] [COUNT] [SOCKET]
 *
 * Without pkg-config, from the workspace root of a fresh checkout (make
 * builds the library and its soname link target/release/libshmkafka.so.0):
 *   make -C client-lib
 *   cc -I client-lib/include -o produce client-lib/examples/c/produce.c \
 *      -L target/release -lshmkafka -Wl,-rpath,$PWD/target/release
 */
#include <shmkafka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(const char *what, shmkafka_result r) {
    fprintf(stderr, "%s: %s: %s\n", what, shmkafka_result_name(r), shmkafka_last_error());
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *topic_name = argc > 1 ? argv[1] : "shmkafka-example";
    long count = argc > 2 ? atol(argv[2]) : 100000;

    shmkafka_producer_options options = {0}; /* zero: all defaults */
    options.socket_path = argc > 3 ? argv[3] : NULL; /* NULL: $SHMKAFKA_SOCKET or default */

    shmkafka_producer *producer = NULL;
    shmkafka_result r = shmkafka_producer_connect(&options, &producer);
    if (r != SHMKAFKA_RESULT_OK) return fail("connect", r);

    const shmkafka_topic *topic = NULL;
    r = shmkafka_producer_topic(producer, topic_name, &topic);
    if (r != SHMKAFKA_RESULT_OK) {
        shmkafka_producer_close(producer, 0);
        return fail("topic", r);
    }

    double start = now_s();
    char value[64];
    for (long i = 0; i < count; i++) {
        uint64_t key = (uint64_t)i;
        int len = snprintf(value, sizeof value, "record %ld", i);
        shmkafka_header trace = {"source", 6, (const uint8_t *)"c-example", 9, 0};
        r = shmkafka_producer_send(producer, topic,
                                   (const uint8_t *)&key, sizeof key, 0,
                                   (const uint8_t *)value, (size_t)len, 0,
                                   &trace, 1,
                                   SHMKAFKA_PARTITION_UNASSIGNED, SHMKAFKA_TIMESTAMP_NOW,
                                   NULL);
        if (r != SHMKAFKA_RESULT_OK) {
            shmkafka_producer_close(producer, 0);
            return fail("send", r);
        }
    }
    double enqueued = now_s() - start;

    size_t failed = 0;
    r = shmkafka_producer_flush(producer, 60000, &failed);
    double acked = now_s() - start;
    if (r != SHMKAFKA_RESULT_OK) {
        shmkafka_producer_close(producer, 0);
        return fail("flush", r);
    }
    /* Permanent failures, by sequence number (also in the daemon's spool). */
    shmkafka_failure failures[16];
    size_t n = 0;
    while (shmkafka_producer_failures(producer, failures, 16, &n) == SHMKAFKA_RESULT_OK && n > 0) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "record %" PRIu64 " failed with code %d\n", failures[i].seq,
                    failures[i].code);
    }
    printf("%ld records: written to the ring in %.3f s, acknowledged by the broker after "
           "%.3f s (%.0f records/s delivered), %zu failed\n",
           count, enqueued, acked, (double)count / acked, failed);

    r = shmkafka_producer_close(producer, 10000);
    return r == SHMKAFKA_RESULT_OK ? 0 : fail("close", r);
}
