"""Exceptions: one class per result code of the C ABI, carrying the library's
own message (``shmkafka_last_error``)."""

from . import _native


class ShmkafkaError(Exception):
    """A call into libshmkafka failed. ``code`` is the C result code
    (``None`` for errors raised by the binding itself), ``code_name`` its
    name in the header, ``message`` the library's explanation."""

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def code_name(self):
        return _native.result_name(self.code) if self.code is not None else None


class InvalidArgument(ShmkafkaError, ValueError):
    """An argument is out of range or malformed."""

    code = _native.INVALID_ARGUMENT


class NullArgument(InvalidArgument):
    """A required pointer was NULL (a bug in this binding if it ever shows)."""

    code = _native.NULL_ARGUMENT


class LibraryPanic(ShmkafkaError):
    """libshmkafka panicked (a bug; please report it)."""

    code = _native.PANIC


class ConnectFailed(ShmkafkaError, ConnectionError):
    """The daemon's socket could not be reached (not running, permissions)."""

    code = _native.CONNECT


class Refused(ShmkafkaError):
    """The daemon refused this client."""

    code = _native.REFUSED


class TopicRefused(ShmkafkaError):
    """The daemon refused the topic (not on its allow list)."""

    code = _native.TOPIC_REFUSED


class InvalidTopic(ShmkafkaError, ValueError):
    """Not a legal Kafka topic name."""

    code = _native.INVALID_TOPIC


class Disconnected(ShmkafkaError):
    """The daemon is away (restarting); records still land in the ring, but
    topics cannot be registered now."""

    code = _native.DISCONNECTED


class RingFull(ShmkafkaError):
    """The ring stayed full for the whole block timeout: the broker is not
    keeping up."""

    code = _native.FULL


class TooLarge(ShmkafkaError, ValueError):
    """The record can never fit the ring's record limit."""

    code = _native.TOO_LARGE


class TimedOut(ShmkafkaError, TimeoutError):
    """flush/close did not see every record acknowledged in time."""

    code = _native.TIMED_OUT


class SegmentError(ShmkafkaError):
    """The shared-memory ring could not be created."""

    code = _native.SEGMENT


class Corrupted(ShmkafkaError):
    """The ring's shared cursors are corrupted."""

    code = _native.CORRUPTED


class ProtocolError(ShmkafkaError):
    """The control connection to the daemon failed."""

    code = _native.PROTOCOL


class ReportsNotEnabled(ShmkafkaError):
    """A delivery-report call on a producer connected without
    ``delivery_reports=True``."""

    code = _native.REPORTS_NOT_ENABLED


class ProducerClosed(ShmkafkaError):
    """The producer was closed."""


_BY_CODE = {
    cls.code: cls
    for cls in (
        NullArgument,
        InvalidArgument,
        LibraryPanic,
        ConnectFailed,
        Refused,
        TopicRefused,
        InvalidTopic,
        Disconnected,
        RingFull,
        TooLarge,
        TimedOut,
        SegmentError,
        Corrupted,
        ProtocolError,
        ReportsNotEnabled,
    )
}


def check(code):
    """Raises the exception for a non-OK result code."""
    if code != _native.OK:
        cls = _BY_CODE.get(code, ShmkafkaError)
        raise cls(_native.last_error(), code)
