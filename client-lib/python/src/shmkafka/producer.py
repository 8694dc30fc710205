"""The Producer: the Python face of libshmkafka's producer handle."""

import itertools
import time
import weakref
from ctypes import byref, c_size_t, c_uint64
from dataclasses import dataclass

from . import _native
from .errors import ProducerClosed, ReportsNotEnabled, RingFull, check

# Default wait in flush/close, seconds.
DEFAULT_TIMEOUT = 10.0
# Default wait of a send on a full ring, seconds (the library's default).
DEFAULT_BLOCK_TIMEOUT = 60.0
# Reports taken from the library per call.
REPORT_BATCH = 256
# How long a send on a full ring waits for reports at a time, seconds.
FULL_RING_POLL = 0.05


def error_name(code):
    """librdkafka's name for an error code (``rd_kafka_err2name``), e.g.
    ``_MSG_TIMED_OUT``; ``UNKNOWN`` for a code it does not define."""
    return _native.lib().shmkafka_error_name(code).decode()


def error_description(code):
    """librdkafka's description of an error code (``rd_kafka_err2str``),
    e.g. ``Local: Message timed out``."""
    return _native.lib().shmkafka_error_description(code).decode()


class KafkaError:
    """Why a record was not delivered, as given to an ``on_delivery``
    callback (like confluent-kafka's ``KafkaError``, with attributes)."""

    __slots__ = ("code", "persistence")

    def __init__(self, code, persistence):
        self.code = code
        """librdkafka's error code (``rd_kafka_resp_err_t``)."""
        self.persistence = persistence
        """Whether the broker may have stored it anyway: 0 no, 1 possibly, 2 yes."""

    @property
    def name(self):
        """librdkafka's name for the code, e.g. ``MSG_SIZE_TOO_LARGE``."""
        return error_name(self.code)

    @property
    def description(self):
        """librdkafka's description, e.g. ``Broker: Message size too large``."""
        return error_description(self.code)

    def __eq__(self, other):
        return isinstance(other, KafkaError) and (self.code, self.persistence) == (
            other.code, other.persistence)

    def __hash__(self):
        return hash((self.code, self.persistence))

    def __str__(self):
        return f"{self.name} ({self.code}): {self.description}"

    def __repr__(self):
        return f"KafkaError({self.name}, code={self.code}, persistence={self.persistence})"


@dataclass(frozen=True)
class DeliveryReport:
    """Where a record landed (or was meant to), as given to an
    ``on_delivery`` callback with the error (``None`` when delivered)."""

    seq: int
    """The sequence number ``send`` returned for it."""
    topic: str
    partition: int
    """Partition it went to (-1 if a failed record had none chosen)."""
    offset: int
    """Offset in the partition; -1 when it failed."""
    timestamp: int
    """Timestamp the broker stored, ms since the epoch (the create time
    unless the broker reports a log-append time); a failed record's create
    time, or -1."""


@dataclass(frozen=True)
class Failure:
    """A record the daemon could not deliver (it is also in the daemon's
    dead-letter spool)."""

    seq: int
    """The sequence number ``send`` returned for it."""
    code: int
    """librdkafka's ``rd_kafka_resp_err_t`` for broker errors."""
    persistence: int
    """Whether the broker may have stored it anyway: 0 no, 1 possibly, 2 yes."""

    @property
    def name(self):
        """librdkafka's name for the code, e.g. ``MSG_SIZE_TOO_LARGE``."""
        return error_name(self.code)

    @property
    def description(self):
        """librdkafka's description of the code."""
        return error_description(self.code)


@dataclass(frozen=True)
class Stats:
    """Counters of a producer."""

    capacity: int
    unacknowledged_bytes: int
    aborted: int
    full_events: int
    reconnects: int
    client_id: "int | None"
    connected: bool


class Topic:
    """A topic registered with the daemon; valid while its producer is open."""

    __slots__ = ("name", "_ptr", "_producer", "__weakref__")

    def __init__(self, name, ptr, producer):
        self.name = name
        self._ptr = ptr
        self._producer = producer

    def __repr__(self):
        return f"Topic({self.name!r})"


def _as_bytes(data, what):
    """Bytes for a key, value or header value; ``None`` stays null."""
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray, memoryview, str or None, not {type(data).__name__}")


def _header_array(headers):
    """A C array of shmkafka_header for (name, value) pairs or a dict, and
    the bytes objects it points into, which the caller keeps alive until the
    call returns."""
    items = list(headers.items() if isinstance(headers, dict) else headers)
    array = (_native.Header * len(items))()
    keep = []
    for slot, (name, value) in zip(array, items):
        name = name.encode("utf-8") if isinstance(name, str) else _as_bytes(name, "header name")
        value = _as_bytes(value, "header value")
        slot.name = name
        slot.name_len = len(name)
        slot.value = value
        slot.value_len = 0 if value is None else len(value)
        slot.value_is_null = value is None
        keep.append((name, value))
    return array, len(items), keep


class Producer:
    """A connected producer: one ring in shared memory, registered with the
    host's shmkafkad. Safe to share between threads (but not to close while
    other threads still use it). Use as a context manager, or call
    :meth:`close`."""

    def __init__(self, socket_path=None, ring_capacity=None, max_record_len=None,
                 block_timeout=None, client_name=None, delivery_reports=False,
                 on_delivery=None):
        """Same as :meth:`connect`."""
        lib = _native.lib()
        if on_delivery is not None and not delivery_reports:
            raise ValueError("on_delivery needs delivery_reports=True")
        options = _native.ProducerOptions()
        if socket_path is not None:
            options.socket_path = str(socket_path).encode()
        options.ring_capacity = ring_capacity or 0
        options.max_record_len = max_record_len or 0
        if delivery_reports:
            # A send that waits for room must serve reports, which only
            # this binding can do (see `_send_serving`): the library fails
            # at once and the wait happens here.
            options.block_timeout_ms = _native.FAIL_FAST
            self._block_timeout = (DEFAULT_BLOCK_TIMEOUT if block_timeout is None
                                   else max(0.0, block_timeout))
        elif block_timeout is None:
            options.block_timeout_ms = 0  # the library's default, 60 s
        elif block_timeout <= 0:
            options.block_timeout_ms = _native.FAIL_FAST
        else:
            options.block_timeout_ms = max(1, round(block_timeout * 1000))
        if client_name is not None:
            options.client_name = client_name.encode()
        options.delivery_reports = bool(delivery_reports)
        handle = _native.ProducerPtr()
        check(lib.shmkafka_producer_connect(byref(options), byref(handle)))
        self._handle = handle.value
        self._topics = {}
        self._delivery_reports = bool(delivery_reports)
        self._on_delivery = on_delivery
        # Per-record callbacks by the opaque their record was sent with.
        self._callbacks = {}
        self._tokens = itertools.count(1)
        # Bound once: attribute lookups are a visible share of a send.
        self._send = lib.shmkafka_producer_send
        self._lib = lib
        # Frees the handle if the producer is garbage-collected unclosed
        # (records stay with the daemon, which delivers them).
        self._finalizer = weakref.finalize(self, lib.shmkafka_producer_close, self._handle, 0)

    @classmethod
    def connect(cls, socket_path=None, ring_capacity=None, max_record_len=None,
                block_timeout=None, client_name=None, delivery_reports=False,
                on_delivery=None):
        """Creates a ring and registers it with the daemon.

        socket_path: the daemon's socket (default ``$SHMKAFKA_SOCKET`` or
        ``/run/shmkafka/shmkafkad.sock``); ring_capacity: bytes, a power of
        two (default 64 MiB); max_record_len: bytes (default 1 MiB);
        block_timeout: seconds ``send`` waits on a full ring (default 60;
        ``0`` fails at once with :class:`RingFull`); client_name: label in
        the daemon's logs and metrics.

        delivery_reports: report every record's outcome to an
        ``on_delivery(err, report)`` callback (given here for all records,
        or to :meth:`send` for one), called by :meth:`poll`. The daemon
        keeps each record's ring space until its report has been read, so
        call :meth:`poll` regularly; a ``send`` that finds the ring full
        serves callbacks itself while it waits.
        """
        return cls(socket_path, ring_capacity, max_record_len, block_timeout, client_name,
                   delivery_reports, on_delivery)

    def _live(self):
        handle = self._handle
        if handle is None:
            raise ProducerClosed("the producer is closed")
        return handle

    def topic(self, name):
        """Registers topic ``name`` with the daemon (which checks its allow
        list); returns a :class:`Topic` for :meth:`send`."""
        topic = self._topics.get(name)
        if topic is not None:
            return topic
        handle = self._live()
        ptr = _native.TopicPtr()
        check(self._lib.shmkafka_producer_topic(handle, name.encode("utf-8"), byref(ptr)))
        topic = Topic(name, ptr.value, self)
        self._topics[name] = topic
        return topic

    def send(self, topic, value=None, key=None, headers=None, partition=None, timestamp_ms=None,
             on_delivery=None):
        """Copies one record into the ring and returns its sequence number.
        When this returns, the record is committed: it is delivered even if
        this process exits right after.

        topic: a :class:`Topic` or a name; value, key: bytes-like or str
        (UTF-8), ``None`` for null; headers: ``[(name, value), ...]`` or a
        dict, values bytes-like, str or ``None``; partition: ``None`` lets the
        daemon's partitioner choose; timestamp_ms: ``None`` is now;
        on_delivery: ``callback(err, report)`` for this record's outcome
        (instead of the producer's), called by :meth:`poll`; needs
        ``delivery_reports=True``.
        """
        handle = self._live()
        if type(topic) is not Topic:
            topic = self.topic(topic)
        elif topic._producer is not self:
            raise ValueError(f"{topic!r} belongs to another producer")
        key = _as_bytes(key, "key")
        value = _as_bytes(value, "value")
        if headers:
            header_array, header_count, _keep = _header_array(headers)
        else:
            header_array, header_count = None, 0
        args = (
            handle, topic._ptr,
            key, 0 if key is None else len(key), key is None,
            value, 0 if value is None else len(value), value is None,
            header_array, header_count,
            _native.PARTITION_UNASSIGNED if partition is None else partition,
            _native.TIMESTAMP_NOW if timestamp_ms is None else timestamp_ms,
        )
        seq = c_uint64()
        if not self._delivery_reports:
            if on_delivery is not None:
                raise ReportsNotEnabled(
                    "on_delivery needs a producer connected with delivery_reports=True",
                    _native.REPORTS_NOT_ENABLED)
            check(self._send(*args, byref(seq)))
            return seq.value
        if on_delivery is None:
            self._send_serving(self._send, args, seq)
            return seq.value
        # The callback is filed under a token sent as the record's opaque
        # before the record exists, so a poll on another thread finds it.
        token = next(self._tokens)
        self._callbacks[token] = on_delivery
        try:
            self._send_serving(self._lib.shmkafka_producer_send_opaque, args + (token,), seq)
        except BaseException:
            self._callbacks.pop(token, None)
            raise
        return seq.value

    def send_batch(self, topic, records):
        """Copies a list of records into the ring with one claim and one call
        into the library, and commits them; returns the first sequence
        number (the others follow it, in list order). All or none; the
        batch may take at most half the ring.

        records: ``(value, key)`` pairs or dicts with the keyword arguments
        of :meth:`send` (``value``, ``key``, ``headers``, ``partition``,
        ``timestamp_ms``). Delivery reports of batched records go to the
        producer's ``on_delivery``.
        """
        handle = self._live()
        if type(topic) is not Topic:
            topic = self.topic(topic)
        elif topic._producer is not self:
            raise ValueError(f"{topic!r} belongs to another producer")
        records = list(records)
        array = (_native.RecordStruct * len(records))()
        keep = []
        for slot, record in zip(array, records):
            if isinstance(record, dict):
                fields = dict(record)
            else:
                value, key = record
                fields = {"value": value, "key": key}
            key = _as_bytes(fields.get("key"), "key")
            value = _as_bytes(fields.get("value"), "value")
            headers = fields.get("headers")
            if headers:
                header_array, header_count, header_keep = _header_array(headers)
                keep.append((header_array, header_keep))
                slot.headers = header_array
                slot.headers_len = header_count
            slot.key = key
            slot.key_len = 0 if key is None else len(key)
            slot.key_is_null = key is None
            slot.value = value
            slot.value_len = 0 if value is None else len(value)
            slot.value_is_null = value is None
            partition = fields.get("partition")
            slot.partition = _native.PARTITION_UNASSIGNED if partition is None else partition
            timestamp = fields.get("timestamp_ms")
            slot.timestamp_ms = _native.TIMESTAMP_NOW if timestamp is None else timestamp
            keep.append((key, value))
        first = c_uint64()
        args = (handle, topic._ptr, array, len(records))
        if self._delivery_reports:
            self._send_serving(self._lib.shmkafka_producer_send_batch, args, first)
        else:
            check(self._lib.shmkafka_producer_send_batch(*args, byref(first)))
        return first.value

    def _send_serving(self, send, args, seq):
        """Sends; while the ring is full, serves delivery reports (which
        give their records' space back) until the block timeout."""
        code = send(*args, byref(seq))
        if code != _native.FULL:
            check(code)
            return
        deadline = time.monotonic() + self._block_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RingFull(
                    f"ring full for {self._block_timeout} s with delivery reports "
                    "served: the broker is not keeping up", _native.FULL)
            self.poll(min(left, FULL_RING_POLL))
            code = send(*args, byref(seq))
            if code != _native.FULL:
                check(code)
                return

    def poll(self, timeout=0.0):
        """Serves delivery reports: calls each record's ``on_delivery(err,
        report)`` (``err`` is ``None`` or a :class:`KafkaError`; ``report``
        a :class:`DeliveryReport`), oldest first, waiting up to ``timeout``
        seconds for the first; returns how many were served. Every report
        ready is served. Reading reports gives their records' ring space
        back. An exception from a callback is raised after the other
        reports read with it were served. Needs ``delivery_reports=True``."""
        handle = self._live()
        # Per call: threads may poll at once.
        reports = (_native.DeliveryReportStruct * REPORT_BATCH)()
        count = c_size_t()
        served = 0
        wait_ms = _millis(timeout)
        error = None
        while True:
            check(self._lib.shmkafka_producer_poll_reports(
                handle, wait_ms, reports, REPORT_BATCH, byref(count)))
            for r in reports[: count.value]:
                callback = (self._callbacks.pop(r.opaque, None) if r.has_opaque
                            else self._on_delivery)
                if callback is None:
                    continue
                report = DeliveryReport(
                    seq=r.seq,
                    topic=r.topic.decode("utf-8", "replace") if r.topic else "",
                    partition=r.partition,
                    offset=r.offset,
                    timestamp=r.timestamp_ms,
                )
                err = None if r.error_code == 0 else KafkaError(r.error_code, r.persistence)
                try:
                    callback(err, report)
                except Exception as e:  # served the rest first, then raised
                    if error is None:
                        error = e
            served += count.value
            if count.value < REPORT_BATCH:
                break
            wait_ms = 0
        if error is not None:
            raise error
        return served

    def flush(self, timeout=DEFAULT_TIMEOUT):
        """Waits up to ``timeout`` seconds until every record sent before is
        acknowledged by the broker or reported failed; returns the failures
        (a list of :class:`Failure`, usually empty). Raises
        :class:`TimedOut` if records are still in flight. With
        ``delivery_reports=True`` failures come in the reports instead (the
        list is empty) and no callback runs here: call :meth:`poll`."""
        handle = self._live()
        count = c_size_t()
        check(self._lib.shmkafka_producer_flush(handle, _millis(timeout), byref(count)))
        return self.failures() if count.value else []

    def failures(self):
        """Takes the failures reported since the last call."""
        handle = self._live()
        taken = []
        batch = (_native.FailureStruct * 64)()
        count = c_size_t()
        while True:
            check(self._lib.shmkafka_producer_failures(handle, batch, len(batch), byref(count)))
            taken.extend(Failure(f.seq, f.code, f.persistence) for f in batch[: count.value])
            if count.value < len(batch):
                return taken

    def stats(self):
        """Counters of this producer."""
        handle = self._live()
        s = _native.StatsStruct()
        check(self._lib.shmkafka_producer_stats(handle, byref(s)))
        return Stats(
            capacity=s.capacity,
            unacknowledged_bytes=s.unacknowledged_bytes,
            aborted=s.aborted,
            full_events=s.full_events,
            reconnects=s.reconnects,
            client_id=s.client_id if s.connected else None,
            connected=bool(s.connected),
        )

    def close(self, timeout=DEFAULT_TIMEOUT):
        """Flushes for up to ``timeout`` seconds, then disconnects. Records
        not yet acknowledged stay with the daemon, which delivers them after
        we are gone; :class:`TimedOut` says some were. Idempotent."""
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        self._topics.clear()
        self._finalizer.detach()
        check(self._lib.shmkafka_producer_close(handle, _millis(timeout)))

    @property
    def closed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            # Do not mask the exception in flight with a flush timeout.
            try:
                self.close()
            except Exception:
                pass
        return False

    def __repr__(self):
        return f"<shmkafka.Producer {'closed' if self.closed else 'open'}>"


def _millis(seconds):
    if seconds is None or seconds < 0:
        raise ValueError("timeout must be a number of seconds >= 0")
    return int(seconds * 1000)


def connect(socket_path=None, ring_capacity=None, max_record_len=None, block_timeout=None,
            client_name=None, delivery_reports=False, on_delivery=None):
    """Shorthand for :meth:`Producer.connect`."""
    return Producer.connect(socket_path, ring_capacity, max_record_len, block_timeout, client_name,
                            delivery_reports, on_delivery)
