"""Loading libshmkafka and declaring its functions (mirrors include/shmkafka.h)."""

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

LIB_ENV = "SHMKAFKA_LIB"
SONAME = "libshmkafka.so.0"

# Result codes (enum shmkafka_result); values are fixed forever.
OK = 0
NULL_ARGUMENT = 1
INVALID_ARGUMENT = 2
PANIC = 3
CONNECT = 4
REFUSED = 5
TOPIC_REFUSED = 6
INVALID_TOPIC = 7
DISCONNECTED = 8
FULL = 9
TOO_LARGE = 10
TIMED_OUT = 11
SEGMENT = 12
CORRUPTED = 13
PROTOCOL = 14
REPORTS_NOT_ENABLED = 15

FAIL_FAST = -1
PARTITION_UNASSIGNED = -1
TIMESTAMP_NOW = 0


class ProducerOptions(Structure):
    _fields_ = [
        ("socket_path", c_char_p),
        ("ring_capacity", c_size_t),
        ("max_record_len", c_size_t),
        ("block_timeout_ms", c_int64),
        ("client_name", c_char_p),
        ("delivery_reports", c_uint8),
    ]


class Header(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("name_len", c_size_t),
        ("value", c_char_p),
        ("value_len", c_size_t),
        ("value_is_null", c_uint8),
    ]


class RecordStruct(Structure):
    """shmkafka_record: one record of shmkafka_producer_send_batch."""

    _fields_ = [
        ("key", c_char_p),
        ("key_len", c_size_t),
        ("key_is_null", c_uint8),
        ("value", c_char_p),
        ("value_len", c_size_t),
        ("value_is_null", c_uint8),
        ("headers", POINTER(Header)),
        ("headers_len", c_size_t),
        ("partition", c_int32),
        ("timestamp_ms", c_int64),
    ]


class FailureStruct(Structure):
    _fields_ = [("seq", c_uint64), ("code", c_int32), ("persistence", c_uint32)]


class StatsStruct(Structure):
    _fields_ = [
        ("capacity", c_uint64),
        ("unacknowledged_bytes", c_uint64),
        ("aborted", c_uint64),
        ("full_events", c_uint64),
        ("reconnects", c_uint64),
        ("client_id", c_uint64),
        ("connected", c_uint8),
    ]


class DeliveryReportStruct(Structure):
    _fields_ = [
        ("seq", c_uint64),
        ("opaque", c_uint64),
        ("topic", c_char_p),
        ("error_code", c_int32),
        ("partition", c_int32),
        ("offset", c_int64),
        ("timestamp_ms", c_int64),
        ("persistence", c_uint32),
        ("has_opaque", c_uint8),
    ]


# Opaque handles are plain pointers on this side.
ProducerPtr = c_void_p
TopicPtr = c_void_p

_SIGNATURES = {
    "shmkafka_last_error": (c_char_p, []),
    "shmkafka_last_error_copy": (c_size_t, [POINTER(c_char), c_size_t]),
    "shmkafka_result_name": (c_char_p, [c_int32]),
    "shmkafka_version": (c_char_p, []),
    "shmkafka_producer_connect": (c_int32, [POINTER(ProducerOptions), POINTER(ProducerPtr)]),
    "shmkafka_producer_topic": (c_int32, [ProducerPtr, c_char_p, POINTER(TopicPtr)]),
    "shmkafka_producer_send": (
        c_int32,
        [
            ProducerPtr,
            TopicPtr,
            c_char_p,  # key
            c_size_t,
            c_uint8,
            c_char_p,  # value
            c_size_t,
            c_uint8,
            POINTER(Header),
            c_size_t,
            c_int32,  # partition
            c_int64,  # timestamp_ms
            POINTER(c_uint64),
        ],
    ),
    "shmkafka_producer_send_opaque": (
        c_int32,
        [
            ProducerPtr,
            TopicPtr,
            c_char_p,  # key
            c_size_t,
            c_uint8,
            c_char_p,  # value
            c_size_t,
            c_uint8,
            POINTER(Header),
            c_size_t,
            c_int32,  # partition
            c_int64,  # timestamp_ms
            c_uint64,  # opaque
            POINTER(c_uint64),
        ],
    ),
    "shmkafka_producer_send_batch": (
        c_int32,
        [ProducerPtr, TopicPtr, POINTER(RecordStruct), c_size_t, POINTER(c_uint64)],
    ),
    "shmkafka_producer_poll_reports": (
        c_int32,
        [ProducerPtr, c_uint64, POINTER(DeliveryReportStruct), c_size_t, POINTER(c_size_t)],
    ),
    "shmkafka_error_name": (c_char_p, [c_int32]),
    "shmkafka_error_description": (c_char_p, [c_int32]),
    "shmkafka_producer_flush": (c_int32, [ProducerPtr, c_uint64, POINTER(c_size_t)]),
    "shmkafka_producer_failures": (
        c_int32,
        [ProducerPtr, POINTER(FailureStruct), c_size_t, POINTER(c_size_t)],
    ),
    "shmkafka_producer_stats": (c_int32, [ProducerPtr, POINTER(StatsStruct)]),
    "shmkafka_producer_close": (c_int32, [ProducerPtr, c_uint64]),
}

_lock = threading.Lock()
_lib = None


def _candidates():
    explicit = os.environ.get(LIB_ENV)
    if explicit:
        return [explicit], True
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, name) for name in ("libshmkafka.so", SONAME)]
    found = [path for path in found if os.path.exists(path)]
    system = ctypes.util.find_library("shmkafka")
    return found + ([system] if system else []) + [SONAME, "libshmkafka.so"], False


def lib():
    """The loaded library, declared; loaded on first use so that importing
    the package never fails."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            candidates, explicit = _candidates()
            errors = []
            for name in candidates:
                try:
                    loaded = ctypes.CDLL(name)
                    break
                except OSError as e:
                    errors.append(f"{name}: {e}")
                    if explicit:
                        break
            else:
                loaded = None
            if loaded is None:
                raise OSError(
                    "cannot load libshmkafka ("
                    + "; ".join(errors)
                    + f"). Set {LIB_ENV} to the path of libshmkafka.so, or install it "
                    "with `make -C client-lib install`."
                )
            for name, (restype, argtypes) in _SIGNATURES.items():
                function = getattr(loaded, name)
                function.restype = restype
                function.argtypes = argtypes
            _lib = loaded
    return _lib


def last_error():
    """The thread's last error text (read right after a failed call, on the
    same thread: ctypes calls run on the calling thread)."""
    message = lib().shmkafka_last_error()
    return message.decode("utf-8", "replace") if message else ""


def result_name(code):
    return lib().shmkafka_result_name(code).decode()
