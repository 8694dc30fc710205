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
    ReportsNotEnabled,
    RingFull,
    SegmentError,
    ShmkafkaError,
    TimedOut,
    TooLarge,
    TopicRefused,
)
from .producer import (
    DeliveryReport,
    Failure,
    KafkaError,
    Producer,
    Stats,
    Topic,
    connect,
    error_description,
    error_name,
)

__version__ = "0.1.0"


def library_version():
    """Version of the loaded libshmkafka."""
    return _native.lib().shmkafka_version().decode()


__all__ = [
    "ConnectFailed",
    "Corrupted",
    "DeliveryReport",
    "Disconnected",
    "Failure",
    "InvalidArgument",
    "InvalidTopic",
    "KafkaError",
    "LibraryPanic",
    "NullArgument",
    "Producer",
    "ProducerClosed",
    "ProtocolError",
    "Refused",
    "ReportsNotEnabled",
    "RingFull",
    "SegmentError",
    "ShmkafkaError",
    "Stats",
    "TimedOut",
    "TooLarge",
    "Topic",
    "TopicRefused",
    "connect",
    "error_description",
    "error_name",
    "library_version",
]
