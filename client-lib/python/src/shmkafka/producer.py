"""The Producer: the Python face of libshmkafka's producer handle."""

import weakref
from ctypes import byref, c_size_t, c_uint64
from dataclasses import dataclass

from . import _native
from .errors import ProducerClosed, check

# Default wait in flush/close, seconds.
DEFAULT_TIMEOUT = 10.0


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


@dataclass(frozen=True)
class Stats:
    """Counters of a producer."""

    capacity: int
    unacknowledged_bytes: int
    aborted: int
    full_events: int
    failures_overflowed: int
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
                 block_timeout=None, client_name=None):
        """Same as :meth:`connect`."""
        lib = _native.lib()
        options = _native.ProducerOptions()
        if socket_path is not None:
            options.socket_path = str(socket_path).encode()
        options.ring_capacity = ring_capacity or 0
        options.max_record_len = max_record_len or 0
        if block_timeout is None:
            options.block_timeout_ms = 0  # the library's default, 60 s
        elif block_timeout <= 0:
            options.block_timeout_ms = _native.FAIL_FAST
        else:
            options.block_timeout_ms = max(1, round(block_timeout * 1000))
        if client_name is not None:
            options.client_name = client_name.encode()
        handle = _native.ProducerPtr()
        check(lib.shmkafka_producer_connect(byref(options), byref(handle)))
        self._handle = handle.value
        self._topics = {}
        # Bound once: attribute lookups are a visible share of a send.
        self._send = lib.shmkafka_producer_send
        self._lib = lib
        # Frees the handle if the producer is garbage-collected unclosed
        # (records stay with the daemon, which delivers them).
        self._finalizer = weakref.finalize(self, lib.shmkafka_producer_close, self._handle, 0)

    @classmethod
    def connect(cls, socket_path=None, ring_capacity=None, max_record_len=None,
                block_timeout=None, client_name=None):
        """Creates a ring and registers it with the daemon.

        socket_path: the daemon's socket (default ``$SHMKAFKA_SOCKET`` or
        ``/run/shmkafka/shmkafkad.sock``); ring_capacity: bytes, a power of
        two (default 64 MiB); max_record_len: bytes (default 1 MiB);
        block_timeout: seconds ``send`` waits on a full ring (default 60;
        ``0`` fails at once with :class:`RingFull`); client_name: label in
        the daemon's logs and metrics.
        """
        return cls(socket_path, ring_capacity, max_record_len, block_timeout, client_name)

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

    def send(self, topic, value=None, key=None, headers=None, partition=None, timestamp_ms=None):
        """Copies one record into the ring and returns its sequence number.
        When this returns, the record is committed: it is delivered even if
        this process exits right after.

        topic: a :class:`Topic` or a name; value, key: bytes-like or str
        (UTF-8), ``None`` for null; headers: ``[(name, value), ...]`` or a
        dict, values bytes-like, str or ``None``; partition: ``None`` lets the
        daemon's partitioner choose; timestamp_ms: ``None`` is now.
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
        seq = c_uint64()
        check(self._send(
            handle, topic._ptr,
            key, 0 if key is None else len(key), key is None,
            value, 0 if value is None else len(value), value is None,
            header_array, header_count,
            _native.PARTITION_UNASSIGNED if partition is None else partition,
            _native.TIMESTAMP_NOW if timestamp_ms is None else timestamp_ms,
            byref(seq),
        ))
        return seq.value

    def flush(self, timeout=DEFAULT_TIMEOUT):
        """Waits up to ``timeout`` seconds until every record sent before is
        acknowledged by the broker or reported failed; returns the failures
        (a list of :class:`Failure`, usually empty). Raises
        :class:`TimedOut` if records are still in flight."""
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
            failures_overflowed=s.failures_overflowed,
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
            client_name=None):
    """Shorthand for :meth:`Producer.connect`."""
    return Producer.connect(socket_path, ring_capacity, max_record_len, block_timeout, client_name)
