"""shmkafka: write Kafka records into shared memory; the host's shmkafkad
delivers them. A ctypes binding of libshmkafka (the C ABI of the Rust client
library).

    import shmkafka

    with shmkafka.Producer.connect() as producer:
        orders = producer.topic("orders")
        producer.send(orders, value=b'{"qty":3}', key=b"id-1", headers=[("trace-id", b"abc")])
        failures = producer.flush(timeout=10)
"""

from . import _native
from .errors import (
    ConnectFailed,
    Corrupted,
    Disconnected,
    InvalidArgument,
    InvalidTopic,
    LibraryPanic,
    NullArgument,
    ProducerClosed,
    ProtocolError,
    Refused,
    RingFull,
    SegmentError,
    ShmkafkaError,
    TimedOut,
    TooLarge,
    TopicRefused,
)
from .producer import Failure, Producer, Stats, Topic, connect

__version__ = "0.1.0"


def library_version():
    """Version of the loaded libshmkafka."""
    return _native.lib().shmkafka_version().decode()


__all__ = [
    "ConnectFailed",
    "Corrupted",
    "Disconnected",
    "Failure",
    "InvalidArgument",
    "InvalidTopic",
    "LibraryPanic",
    "NullArgument",
    "Producer",
    "ProducerClosed",
    "ProtocolError",
    "Refused",
    "RingFull",
    "SegmentError",
    "ShmkafkaError",
    "Stats",
    "TimedOut",
    "TooLarge",
    "Topic",
    "TopicRefused",
    "connect",
    "library_version",
]
