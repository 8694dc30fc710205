"""Send-path cost through the Python binding (ctypes over the C ABI); the
counterpart of send_bench.c, same records and output format.

    SHMKAFKA_LIB=.../libshmkafka.so python send_bench.py SOCKET TOPIC N VALUE_LEN RING_CAPACITY
"""

import sys
import time

import shmkafka


def main():
    socket_path, topic_name, n, value_len, ring = sys.argv[1:6]
    n, value_len, ring = int(n), int(value_len), int(ring)
    producer = shmkafka.connect(socket_path=socket_path, ring_capacity=ring, client_name="bench-py")
    topic = producer.topic(topic_name)
    value = b"v" * value_len
    keys = [i.to_bytes(8, "little") for i in range(n)]  # not part of the measured loop
    lat = [0] * n
    send, clock = producer.send, time.perf_counter_ns
    start = clock()
    for i in range(n):
        t0 = clock()
        send(topic, value, keys[i])
        lat[i] = clock() - t0
    enqueued = clock() - start
    failed = producer.flush(timeout=120)
    acked = clock() - start
    lat.sort()
    print(f"api=python records={n} enqueue_per_s={n / (enqueued / 1e9):.0f} "
          f"delivered_per_s={n / (acked / 1e9):.0f} mean_ns={enqueued / n:.0f} "
          f"p50_ns={lat[n // 2]} p99_ns={lat[n * 99 // 100]} p999_ns={lat[n * 999 // 1000]} "
          f"failed={len(failed)}")
    producer.close()


if __name__ == "__main__":
    main()
