/*
 * Send-path cost through the C ABI: N records (8-byte key, VALUE_LEN-byte
 * value, no headers), each call timed, then a flush until the broker has
 * acknowledged them all. Output: one `key=value` line, as send_bench.py and
 * examples/send_bench.rs print it; client-lib/bench/run.sh runs all three.
 *
 *   send_bench SOCKET TOPIC N VALUE_LEN RING_CAPACITY
 */
#include <shmkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int fail(const char *what, shmkafka_result r) {
    fprintf(stderr, "%s: %s: %s\n", what, shmkafka_result_name(r), shmkafka_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SOCKET TOPIC N VALUE_LEN RING_CAPACITY\n", argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[3], NULL, 10), value_len = strtoull(argv[4], NULL, 10);
    shmkafka_producer_options options = {0};
    options.socket_path = argv[1];
    options.ring_capacity = strtoull(argv[5], NULL, 10);
    options.client_name = "bench-c";
    shmkafka_producer *p = NULL;
    shmkafka_result r = shmkafka_producer_connect(&options, &p);
    if (r) return fail("connect", r);
    const shmkafka_topic *t = NULL;
    if ((r = shmkafka_producer_topic(p, argv[2], &t))) return fail("topic", r);

    uint8_t *value = malloc(value_len);
    memset(value, 'v', value_len);
    uint32_t *lat = malloc(n * sizeof *lat);
    uint64_t start = now_ns();
    for (size_t i = 0; i < n; i++) {
        uint64_t key = i;
        uint64_t t0 = now_ns();
        r = shmkafka_producer_send(p, t, (const uint8_t *)&key, sizeof key, 0, value, value_len,
                                   0, NULL, 0, SHMKAFKA_PARTITION_UNASSIGNED,
                                   SHMKAFKA_TIMESTAMP_NOW, NULL);
        lat[i] = (uint32_t)(now_ns() - t0);
        if (r) return fail("send", r);
    }
    uint64_t enqueued = now_ns() - start;
    size_t failed = 0;
    if ((r = shmkafka_producer_flush(p, 120000, &failed))) return fail("flush", r);
    uint64_t acked = now_ns() - start;
    qsort(lat, n, sizeof *lat, cmp_u32);
    printf("api=c records=%zu enqueue_per_s=%.0f delivered_per_s=%.0f mean_ns=%.0f p50_ns=%u "
           "p99_ns=%u p999_ns=%u failed=%zu\n",
           n, n / (enqueued / 1e9), n / (acked / 1e9), (double)enqueued / n, lat[n / 2],
           lat[n * 99 / 100], lat[n * 999 / 1000], failed);
    free(lat);
    free(value);
    r = shmkafka_producer_close(p, 10000);
    return r ? fail("close", r) : 0;
}
