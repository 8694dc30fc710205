"""Delivery reports through the Python binding: a callback per record, with
where the broker stored it or why it refused it."""

import time

import pytest

import shmkafka

# librdkafka's RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.
MSG_SIZE_TOO_LARGE = 10
# The log-append time librdkafka's mock cluster puts in every produce
# response (a real broker answers -1 for create-time topics, and librdkafka
# then reports the create time).
MOCK_LOG_APPEND_TIME = 1234


def poll_until(producer, done, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        producer.poll(0.2)
    assert done(), "delivery reports missing after the deadline"


def test_every_record_reports_once_where_the_broker_stored_it(daemon, consume, topic_name):
    count = 3000
    by_producer, by_record = {}, {}

    def on_any(err, report):
        assert report.seq not in by_producer, f"seq {report.seq} reported twice"
        by_producer[report.seq] = (err, report)

    def on_this(index):
        def callback(err, report):
            assert index not in by_record, f"record {index} reported twice"
            by_record[index] = (err, report)
        return callback

    sent = {}
    with shmkafka.connect(socket_path=daemon.socket, ring_capacity=1 << 20,
                          delivery_reports=True, on_delivery=on_any) as producer:
        topic = producer.topic(topic_name)
        for i in range(count):
            # Every other record with a callback of its own.
            seq = producer.send(topic, value=f"rv-{i}", key=f"rk-{i}",
                                on_delivery=on_this(i) if i % 2 else None)
            assert seq == i  # a record counter from 0
            sent[i] = seq
            if i % 500 == 0:
                producer.poll(0)
        poll_until(producer, lambda: len(by_producer) + len(by_record) == count)
        assert producer.poll(0.2) == 0
        assert producer.flush(timeout=30) == []

    reports = {}
    for i in range(count):
        err, report = by_record[i] if i % 2 else by_producer[sent[i]]
        assert err is None, f"record {i}: {err}"
        assert report.seq == sent[i] and report.topic == topic_name
        reports[i] = report
    assert not set(by_producer) - {sent[i] for i in range(0, count, 2)}

    records = consume(topic_name, count)
    assert len(records) == count
    for record in records:
        i = int(record.value.decode()[len("rv-"):])
        report = reports[i]
        assert (report.partition, report.offset) == (record.partition, record.offset), f"record {i}"
        assert report.timestamp in (record.timestamp_ms, MOCK_LOG_APPEND_TIME)


def test_every_permanent_failure_reports_with_its_name(small_message_daemon):
    count = 10_000
    errors = {}

    def on_delivery(err, report):
        assert report.seq not in errors, f"seq {report.seq} reported twice"
        errors[report.seq] = (err, report)

    # A 4 MiB ring holds about 2000 such records: sends find it full and
    # serve the callbacks while they wait.
    with shmkafka.connect(socket_path=small_message_daemon.socket, ring_capacity=4 << 20,
                          delivery_reports=True) as producer:
        topic = producer.topic("py-too-large")
        value = bytes(2000)  # over message.max.bytes=1000
        seqs = [producer.send(topic, value=value, on_delivery=on_delivery) for _ in range(count)]
        poll_until(producer, lambda: len(errors) == count)
        assert producer.flush(timeout=30) == []  # failures come in the reports

    assert sorted(errors) == seqs == list(range(count))
    for err, report in errors.values():
        assert isinstance(err, shmkafka.KafkaError)
        assert (err.code, err.name) == (MSG_SIZE_TOO_LARGE, "MSG_SIZE_TOO_LARGE")
        assert err.description == "Broker: Message size too large"
        assert err.persistence == 0  # refused before it left the daemon
        assert report.offset == -1 and report.topic == "py-too-large"


def test_every_permanent_failure_comes_back_through_flush(small_message_daemon):
    count = 10_000
    # The ring holds every record; the daemon stops draining it while more
    # than 4096 failures wait unread, so flush must take them as it waits.
    with shmkafka.connect(socket_path=small_message_daemon.socket,
                          ring_capacity=32 << 20) as producer:
        topic = producer.topic("py-too-large-flush")
        seqs = [producer.send(topic, value=bytes(2000)) for _ in range(count)]
        failures = producer.flush(timeout=60)
        assert sorted(f.seq for f in failures) == seqs
        assert {(f.code, f.name) for f in failures} == {(MSG_SIZE_TOO_LARGE, "MSG_SIZE_TOO_LARGE")}
        assert producer.failures() == []


def test_error_names_are_librdkafkas():
    assert shmkafka.error_name(-192) == "_MSG_TIMED_OUT"
    assert shmkafka.error_description(-192) == "Local: Message timed out"
    assert shmkafka.error_name(MSG_SIZE_TOO_LARGE) == "MSG_SIZE_TOO_LARGE"
    assert shmkafka.error_name(123456) == "UNKNOWN"
    error = shmkafka.KafkaError(-192, 1)
    assert (error.name, error.description) == ("_MSG_TIMED_OUT", "Local: Message timed out")
    assert str(error) == "_MSG_TIMED_OUT (-192): Local: Message timed out"
    failure = shmkafka.Failure(seq=3, code=MSG_SIZE_TOO_LARGE, persistence=0)
    assert failure.name == "MSG_SIZE_TOO_LARGE"


def test_reports_need_the_option(daemon):
    with pytest.raises(ValueError, match="delivery_reports"):
        shmkafka.connect(socket_path=daemon.socket, on_delivery=lambda err, report: None)
    with shmkafka.connect(socket_path=daemon.socket) as producer:
        with pytest.raises(shmkafka.ReportsNotEnabled, match="delivery_reports"):
            producer.poll(0)
        with pytest.raises(shmkafka.ReportsNotEnabled, match="delivery_reports"):
            producer.send("py-no-reports", value=b"x", on_delivery=lambda err, report: None)


def test_a_raising_callback_does_not_lose_the_other_reports(daemon, topic_name):
    served = []

    def on_delivery(err, report):
        served.append(report.seq)
        if report.seq == 1:
            raise RuntimeError("callback failed")

    with shmkafka.connect(socket_path=daemon.socket, delivery_reports=True,
                          on_delivery=on_delivery) as producer:
        for i in range(5):
            producer.send(topic_name, value=f"v{i}")
        producer.flush(timeout=30)
        with pytest.raises(RuntimeError, match="callback failed"):
            producer.poll(1)
        assert served == [0, 1, 2, 3, 4]
