//! The record an application sends.

use shmkafka_ringbuf::Header;

/// A Kafka record to send: optional key, value, headers, partition and
/// timestamp. Built with chained setters:
///
/// ```
/// use shmkafka_client::Message;
/// let m = Message::new().key(b"k").value(b"v").header("trace", Some(b"abc")).partition(3);
/// assert_eq!(m.partition, Some(3));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Message<'a> {
    /// Key; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a null value.
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: Vec<Header<'a>>,
    /// Partition; `None` lets the daemon's partitioner choose (by key hash).
    pub partition: Option<i32>,
    /// Create time in ms since the epoch; `None` takes the current time.
    pub timestamp_ms: Option<i64>,
}

impl<'a> Message<'a> {
    /// An empty record (null key, null value).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }
    /// Sets the value.
    pub fn value(mut self, value: &'a [u8]) -> Self {
        self.value = Some(value);
        self
    }
    /// Appends a header.
    pub fn header(mut self, name: &'a str, value: Option<&'a [u8]>) -> Self {
        self.headers.push(Header { name, value });
        self
    }
    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    /// Sets the create time.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}
