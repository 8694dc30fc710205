"""The Python binding against a real shmkafkad, checked by reading back what
the broker stored."""

import gc
import threading
import time

import pytest

import shmkafka


def test_records_arrive_with_keys_values_headers_partition_and_timestamp(daemon, consume, topic_name):
    with shmkafka.Producer.connect(socket_path=daemon.socket, ring_capacity=1 << 20) as producer:
        topic = producer.topic(topic_name)
        assert producer.topic(topic_name) is topic
        seqs = [
            producer.send(topic, value=b"v0", key=b"k0",
                          headers=[("h1", b"a"), ("h2", None), ("h3", b"")]),
            producer.send(topic, value="v1-\u00e9"),  # null key, str value as UTF-8
            producer.send(topic, key=b""),  # empty key, null value
            producer.send(topic, value=b"v3", key=b"k3", partition=0, timestamp_ms=1_700_000_000_000),
            producer.send(topic_name, value=bytearray(b"v4"), key=memoryview(b"k4"),
                          headers={"d": "x"}),
            producer.send(topic, value=b"\x00binary\xff", key=b"\x00"),
        ]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert producer.flush(timeout=30) == []

    records = consume(topic_name, len(seqs))
    assert len(records) == len(seqs)
    by_value = {r.value: r for r in records}
    r0 = by_value[b"v0"]
    assert r0.key == b"k0"
    assert r0.headers == [("h1", b"a"), ("h2", None), ("h3", b"")]
    r1 = by_value["v1-\u00e9".encode()]
    assert r1.key is None and r1.headers == []
    r2 = by_value[None]
    assert r2.key == b""
    r3 = by_value[b"v3"]
    assert (r3.key, r3.partition, r3.timestamp_ms) == (b"k3", 0, 1_700_000_000_000)
    r4 = by_value[b"v4"]
    assert r4.key == b"k4" and r4.headers == [("d", b"x")]
    assert by_value[b"\x00binary\xff"].key == b"\x00"


def test_many_threads_share_one_producer(daemon, consume, topic_name):
    threads, per_thread = 4, 500
    producer = shmkafka.connect(socket_path=daemon.socket)
    topic = producer.topic(topic_name)

    def work(t):
        for i in range(per_thread):
            producer.send(topic, value=f"{t}-{i}", key=str(t))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert producer.flush(timeout=30) == []
    stats = producer.stats()
    assert stats.connected and stats.client_id is not None
    assert stats.unacknowledged_bytes == 0
    assert stats.capacity == 64 << 20
    producer.close()

    records = consume(topic_name, threads * per_thread)
    values = sorted(r.value.decode() for r in records)
    assert values == sorted(f"{t}-{i}" for t in range(threads) for i in range(per_thread))
    # One key per thread: each thread's records land in one partition, in order.
    for t in range(threads):
        mine = [r for r in records if r.key == str(t).encode()]
        assert len({r.partition for r in mine}) == 1
        assert [r.value for r in sorted(mine, key=lambda r: r.offset)] == \
            [f"{t}-{i}".encode() for i in range(per_thread)]


def test_records_of_an_unclosed_collected_producer_are_delivered(daemon, consume, topic_name):
    producer = shmkafka.connect(socket_path=daemon.socket)
    for i in range(100):
        producer.send(topic_name, value=f"gc-{i}")
    del producer
    gc.collect()
    assert len(consume(topic_name, 100)) == 100


def test_permanent_failure_comes_back_by_sequence_number(daemon, consume, topic_name):
    # Over the broker's message.max.bytes (1 MB): fits the ring, refused by
    # librdkafka, reported as a permanent failure.
    with shmkafka.connect(socket_path=daemon.socket, ring_capacity=8 << 20,
                          max_record_len=4 << 20) as producer:
        big = producer.send(topic_name, value=bytes(2_000_000))
        producer.send(topic_name, value=b"fine")
        failures = producer.flush(timeout=30)
        assert [(f.seq, f.code) for f in failures] == [(big, 10)]  # MSG_SIZE_TOO_LARGE
        assert producer.failures() == []
    assert [r.value for r in consume(topic_name, 1)] == [b"fine"]


def test_closed_producer_refuses_calls(daemon):
    producer = shmkafka.connect(socket_path=daemon.socket)
    topic = producer.topic("py-closed")
    producer.close()
    producer.close()  # idempotent
    assert producer.closed
    with pytest.raises(shmkafka.ProducerClosed):
        producer.send(topic, value=b"x")
    with pytest.raises(shmkafka.ProducerClosed):
        producer.flush()


def test_errors_carry_the_library_message(daemon, tmp_path):
    missing = str(tmp_path / "nobody-here.sock")
    with pytest.raises(shmkafka.ConnectFailed) as e:
        shmkafka.connect(socket_path=missing)
    assert missing in str(e.value)
    assert e.value.code_name == "SHMKAFKA_RESULT_CONNECT"
    assert isinstance(e.value, ConnectionError)

    with pytest.raises(shmkafka.InvalidArgument, match="power of two"):
        shmkafka.connect(socket_path=daemon.socket, ring_capacity=100_000)

    with shmkafka.connect(socket_path=daemon.socket, ring_capacity=1 << 16) as producer:
        with pytest.raises(shmkafka.InvalidTopic, match="bad topic"):
            producer.topic("bad topic")
        topic = producer.topic("py-errors")
        with pytest.raises(shmkafka.TooLarge, match="exceeds"):
            producer.send(topic, value=bytes(40_000))
        with pytest.raises(shmkafka.InvalidArgument, match="partition -7"):
            producer.send(topic, value=b"x", partition=-7)
        with pytest.raises(TypeError):
            producer.send(topic, value=12)
        with shmkafka.connect(socket_path=daemon.socket) as other:
            with pytest.raises(ValueError, match="another producer"):
                other.send(topic, value=b"x")
        assert producer.flush() == []


def test_full_ring_fails_fast_and_flush_times_out(stalled_daemon):
    producer = shmkafka.connect(socket_path=stalled_daemon.socket, ring_capacity=1 << 16,
                                block_timeout=0)
    topic = producer.topic("py-stalled")
    sent = 0
    with pytest.raises(shmkafka.RingFull, match="ring full") as e:
        for _ in range(10_000):
            producer.send(topic, value=bytes(1000))
            sent += 1
    assert e.value.code == shmkafka.RingFull.code
    assert 0 < sent < 70
    assert producer.stats().full_events >= 1
    with pytest.raises(shmkafka.TimedOut):
        producer.flush(timeout=0.1)
    with pytest.raises(TimeoutError):  # close still frees the handle
        producer.close(timeout=0)
    assert producer.closed


def test_blocking_send_gives_up_after_block_timeout(stalled_daemon):
    producer = shmkafka.connect(socket_path=stalled_daemon.socket, ring_capacity=1 << 16,
                                block_timeout=0.2)
    topic = producer.topic("py-stalled-block")
    with pytest.raises(shmkafka.RingFull):
        for _ in range(1000):
            start = time.monotonic()
            producer.send(topic, value=bytes(1000))
    waited = time.monotonic() - start
    assert 0.15 < waited < 5, waited
    with pytest.raises(shmkafka.TimedOut):
        producer.close(timeout=0)


def test_library_version():
    assert shmkafka.library_version() == shmkafka.__version__


def test_send_batch_writes_a_list_with_one_call(daemon, consume, topic_name):
    with shmkafka.Producer.connect(socket_path=daemon.socket, ring_capacity=1 << 20) as producer:
        before = producer.send(topic_name, value=b"before")
        first = producer.send_batch(topic_name, [
            (b"a", b"ka"),
            {"value": b"b", "headers": [("h", b"x")], "partition": 0},
            (None, b"kc"),
        ])
        assert first == before + 1, "numbered after the record before"
        assert producer.send(topic_name, value=b"after") == first + 3
        assert producer.flush(timeout=30) == []
    records = consume(topic_name, 5)
    by_value = {r.value: r for r in records}
    assert by_value[b"a"].key == b"ka"
    assert by_value[b"b"].headers == [("h", b"x")] and by_value[b"b"].partition == 0
    assert by_value[None].key == b"kc"
    assert set(by_value) == {b"before", b"a", b"b", None, b"after"}
