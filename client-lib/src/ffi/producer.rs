//! The producer handle: connect, topics, send, flush, failures, stats, close.

use std::collections::VecDeque;
use std::ffi::{c_char, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shmkafka_ringbuf::{Failure, Header, WhenFull, PARTITION_UNASSIGNED};

use super::{bytes, c_str, deref, guard, out, shmkafka_result, Failed};
use crate::producer::DEFAULT_MAX_BLOCK;
use crate::{Message, Producer, ProducerOptions, Topic};

/// `block_timeout_ms` value: fail at once with `SHMKAFKA_RESULT_FULL` when
/// the ring is full.
pub const SHMKAFKA_FAIL_FAST: i64 = -1;
/// `partition` value: let the daemon's partitioner choose (by key hash).
pub const SHMKAFKA_PARTITION_UNASSIGNED: i32 = -1;
// A literal above so that cbindgen can write it into the header.
const _: () = assert!(SHMKAFKA_PARTITION_UNASSIGNED == PARTITION_UNASSIGNED);
/// `timestamp_ms` value: stamp the record with the current time.
pub const SHMKAFKA_TIMESTAMP_NOW: i64 = 0;

/// How to connect. A zero-initialised struct (`= {0}`) means all defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmkafka_producer_options {
    /// Daemon socket, NUL-terminated; NULL: `$SHMKAFKA_SOCKET`, else
    /// `/run/shmkafka/shmkafkad.sock`.
    pub socket_path: *const c_char,
    /// Ring size in bytes, a power of two; 0: 64 MiB. Size it as record
    /// rate x acknowledgement latency, with headroom for broker hiccups.
    pub ring_capacity: usize,
    /// Largest record (key + value + headers + 48 bytes); 0: 1 MiB (capped
    /// at half the ring).
    pub max_record_len: usize,
    /// What `send` and `reserve` do on a full ring: 0 waits up to 60 s (as
    /// Kafka's `max.block.ms`), a positive value waits that many ms,
    /// `SHMKAFKA_FAIL_FAST` (any negative value) fails at once.
    pub block_timeout_ms: i64,
    /// Label in the daemon's logs and metrics, NUL-terminated UTF-8; NULL:
    /// the executable's name.
    pub client_name: *const c_char,
    /// Nonzero: read a delivery report for every record with
    /// `shmkafka_producer_poll_reports` or `shmkafka_producer_poll`. The
    /// daemon keeps each record's ring space until its report is read, so
    /// a caller that stops reading is held back at `send` (never dropped).
    pub delivery_reports: u8,
}

/// A connected producer. Opaque; thread-safe: any number of threads may
/// call functions on one handle at once. Freed by `shmkafka_producer_close`.
pub struct shmkafka_producer {
    /// Shared with outstanding reservations, which borrow its ring.
    pub(super) producer: Arc<Producer>,
    /// Topic handles given out; they live as long as this producer (`Arc`
    /// rather than `Box` so growing the list never asserts unique ownership
    /// over a handle the caller holds a pointer to).
    pub(super) topics: Mutex<Vec<Arc<shmkafka_topic>>>,
    /// Failures `flush` took from the ring but the caller has not read yet.
    failures: Mutex<VecDeque<Failure>>,
}

/// A registered topic. Opaque; owned by the producer that registered it and
/// valid until that producer is closed.
pub struct shmkafka_topic {
    /// Address of the owning `shmkafka_producer`, to refuse a topic handle
    /// passed to another producer (whose ids would mean other topics).
    owner: usize,
    pub(super) topic: Topic,
    /// The name, NUL-terminated, for delivery reports.
    pub(super) name_c: std::ffi::CString,
}

impl shmkafka_topic {
    pub(super) fn check_owner(&self, producer: &shmkafka_producer) -> Result<&Topic, Failed> {
        if self.owner == producer as *const shmkafka_producer as usize {
            Ok(&self.topic)
        } else {
            Err(Failed::invalid(format!(
                "topic handle {:?} belongs to another producer",
                self.topic.name()
            )))
        }
    }
}

/// One Kafka record header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmkafka_header {
    /// Header name, UTF-8, not NUL-terminated; may be NULL when `name_len` is 0.
    pub name: *const c_char,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// Header value; not read when `value_is_null` or `value_len` is 0.
    pub value: *const u8,
    /// Length of `value` in bytes.
    pub value_len: usize,
    /// Nonzero: the value is null (distinct from empty).
    pub value_is_null: u8,
}

/// A record the daemon could not deliver.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct shmkafka_failure {
    /// The sequence number `send` or `commit` returned for it.
    pub seq: u64,
    /// Error code: librdkafka's `rd_kafka_resp_err_t` for broker errors.
    pub code: i32,
    /// Whether the broker may have stored it anyway: 0 no, 1 possibly, 2 yes.
    pub persistence: u32,
}

impl From<Failure> for shmkafka_failure {
    fn from(f: Failure) -> Self {
        Self {
            seq: f.seq,
            code: f.code,
            persistence: f.persistence,
        }
    }
}

/// Counters of a producer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct shmkafka_stats {
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// Bytes written and not yet acknowledged (ring fill).
    pub unacknowledged_bytes: u64,
    /// Reservations aborted.
    pub aborted: u64,
    /// Times the ring was found full.
    pub full_events: u64,
    /// Successful registrations after the first.
    pub reconnects: u64,
    /// The daemon's id for this client; meaningful only when `connected`.
    pub client_id: u64,
    /// 1 while the daemon is connected, 0 while it is away.
    pub connected: u8,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data; a panic elsewhere (already reported as PANIC) leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options_from_c(options: &shmkafka_producer_options) -> Result<ProducerOptions, Failed> {
    let mut rust = ProducerOptions::default();
    if !options.socket_path.is_null() {
        // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
        let path = unsafe { c_str(options.socket_path, "options->socket_path") }?;
        rust.socket_path = Some(PathBuf::from(OsStr::from_bytes(path)));
    }
    if options.ring_capacity != 0 {
        rust.ring_capacity = options.ring_capacity;
    }
    if options.max_record_len != 0 {
        rust.max_record_len = options.max_record_len;
    }
    rust.when_full = match options.block_timeout_ms {
        0 => WhenFull::Block(DEFAULT_MAX_BLOCK),
        ms if ms < 0 => WhenFull::Fail,
        ms => WhenFull::Block(Duration::from_millis(ms as u64)),
    };
    if !options.client_name.is_null() {
        // SAFETY: as for socket_path.
        let name = unsafe { c_str(options.client_name, "options->client_name") }?;
        rust.client_name = std::str::from_utf8(name)
            .map_err(|_| Failed::invalid("options->client_name is not UTF-8"))?
            .to_owned();
    }
    rust.delivery_reports = options.delivery_reports != 0;
    Ok(rust)
}

/// Creates a ring and registers it with the daemon. On success
/// `*out_producer` is a new handle, to be freed with
/// `shmkafka_producer_close`.
///
/// # Safety
/// `options` is NULL (all defaults) or points to a valid
/// `shmkafka_producer_options` whose string fields are NULL or
/// NUL-terminated; `out_producer` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_connect(
    options: *const shmkafka_producer_options,
    out_producer: *mut *mut shmkafka_producer,
) -> shmkafka_result {
    guard(|| {
        let out_producer = out(out_producer, "out_producer")?;
        // SAFETY: the caller promises NULL or a valid struct.
        let options = match unsafe { options.as_ref() } {
            Some(options) => options_from_c(options)?,
            None => ProducerOptions::default(),
        };
        let producer = Producer::connect_with(options)?;
        let handle = Box::new(shmkafka_producer {
            producer: Arc::new(producer),
            topics: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_producer.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Registers topic `name` (NUL-terminated) with the daemon, which checks its
/// allow list. `*out_topic` is valid until the producer is closed; asking
/// again for the same name returns the same handle.
///
/// # Safety
/// `producer` is NULL or a live handle from `shmkafka_producer_connect`;
/// `name` is NULL or NUL-terminated; `out_topic` is NULL or valid for a
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_topic(
    producer: *const shmkafka_producer,
    name: *const c_char,
    out_topic: *mut *const shmkafka_topic,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let handle = unsafe { deref(producer, "producer") }?;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = unsafe { c_str(name, "name") }?;
        let out_topic = out(out_topic, "out_topic")?;
        let name =
            std::str::from_utf8(name).map_err(|_| Failed::invalid("topic name is not UTF-8"))?;
        // Held across registration so two threads asking for a new name
        // end up with one handle.
        let mut topics = lock(&handle.topics);
        let existing = topics.iter().find(|t| t.topic.name() == name).cloned();
        let entry = match existing {
            Some(entry) => entry,
            None => {
                let topic = handle.producer.topic(name)?;
                let entry = Arc::new(shmkafka_topic {
                    owner: handle as *const shmkafka_producer as usize,
                    topic,
                    // Topic names have no NUL (validated by `topic`).
                    name_c: std::ffi::CString::new(name)
                        .map_err(|_| Failed::invalid("topic name contains a NUL byte"))?,
                });
                topics.push(Arc::clone(&entry));
                entry
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable. The
        // pointee stays alive in `topics` until the producer is closed.
        unsafe { out_topic.write(Arc::as_ptr(&entry)) };
        Ok(())
    })
}

/// Copies one record into the ring. On success the record is committed: it
/// is delivered even if the process exits right after, and `*out_seq` (if
/// `out_seq` is not NULL) is its sequence number, as failures report it.
///
/// Key and value: see the byte-field convention in the header's
/// introduction. `headers` points to `headers_len` headers (may be NULL when
/// `headers_len` is 0). `partition` is `SHMKAFKA_PARTITION_UNASSIGNED` or a
/// partition number; `timestamp_ms` is `SHMKAFKA_TIMESTAMP_NOW` or ms since
/// the epoch. A full ring blocks or fails as the producer's
/// `block_timeout_ms` says.
///
/// # Safety
/// `producer` and `topic` are NULL or live handles, `topic` from this
/// producer; every non-NULL buffer is readable for its length; `headers`
/// is NULL or readable for `headers_len` entries; `out_seq` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_send(
    producer: *const shmkafka_producer,
    topic: *const shmkafka_topic,
    key: *const u8,
    key_len: usize,
    key_is_null: u8,
    value: *const u8,
    value_len: usize,
    value_is_null: u8,
    headers: *const shmkafka_header,
    headers_len: usize,
    partition: i32,
    timestamp_ms: i64,
    out_seq: *mut u64,
) -> shmkafka_result {
    let record = shmkafka_record {
        key,
        key_len,
        key_is_null,
        value,
        value_len,
        value_is_null,
        headers,
        headers_len,
        partition,
        timestamp_ms,
    };
    // SAFETY: forwarded from this function's own contract.
    unsafe { send_record(producer, topic, &record, None, out_seq) }
}

/// The body of `shmkafka_producer_send` and `_send_opaque`.
///
/// # Safety
/// As `shmkafka_producer_send`, for the buffers `record` points to.
pub(super) unsafe fn send_record(
    producer: *const shmkafka_producer,
    topic: *const shmkafka_topic,
    record: &shmkafka_record,
    opaque: Option<u64>,
    out_seq: *mut u64,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or live handles.
        let handle = unsafe { deref(producer, "producer") }?;
        // SAFETY: as above.
        let topic = unsafe { deref(topic, "topic") }?.check_owner(handle)?;
        // SAFETY: the caller promises readable buffers and headers.
        let message = unsafe { record.message() }?;
        let seq = match opaque {
            None => handle.producer.send(topic, &message)?,
            Some(opaque) => handle.producer.send_with_opaque(topic, &message, opaque)?,
        };
        if !out_seq.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_seq.write(seq) };
        }
        Ok(())
    })
}

/// One record: the record arguments of `shmkafka_producer_send`, with the
/// same conventions; an array of them for `shmkafka_producer_send_batch`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmkafka_record {
    /// Key bytes (see the byte-field convention).
    pub key: *const u8,
    /// Key length.
    pub key_len: usize,
    /// Nonzero: null key.
    pub key_is_null: u8,
    /// Value bytes.
    pub value: *const u8,
    /// Value length.
    pub value_len: usize,
    /// Nonzero: null value.
    pub value_is_null: u8,
    /// `headers_len` headers, or NULL when 0.
    pub headers: *const shmkafka_header,
    /// Number of headers.
    pub headers_len: usize,
    /// `SHMKAFKA_PARTITION_UNASSIGNED` or a partition.
    pub partition: i32,
    /// `SHMKAFKA_TIMESTAMP_NOW` or ms since the epoch.
    pub timestamp_ms: i64,
}

impl shmkafka_record {
    /// The message these fields describe, checked.
    ///
    /// # Safety
    /// Every non-NULL buffer is readable for its length, and `headers` is
    /// NULL or readable for `headers_len` entries, for `'a`.
    pub(super) unsafe fn message<'a>(&self) -> Result<Message<'a>, Failed> {
        // SAFETY: the caller promises readable buffers of the given lengths.
        let key = unsafe { bytes(self.key, self.key_len, self.key_is_null, "key") }?;
        // SAFETY: as above.
        let value = unsafe { bytes(self.value, self.value_len, self.value_is_null, "value") }?;
        let mut message = Message {
            key,
            value,
            // SAFETY: the caller promises `headers_len` readable entries.
            headers: unsafe { headers_from_c(self.headers, self.headers_len) }?,
            partition: partition_from_c(self.partition)?,
            timestamp_ms: None,
        };
        if self.timestamp_ms != SHMKAFKA_TIMESTAMP_NOW {
            if self.timestamp_ms < 0 {
                return Err(Failed::invalid(format!(
                    "timestamp_ms {} is negative",
                    self.timestamp_ms
                )));
            }
            message.timestamp_ms = Some(self.timestamp_ms);
        }
        Ok(message)
    }
}

pub(super) fn partition_from_c(partition: i32) -> Result<Option<i32>, Failed> {
    match partition {
        SHMKAFKA_PARTITION_UNASSIGNED => Ok(None),
        p if p >= 0 => Ok(Some(p)),
        p => Err(Failed::invalid(format!(
            "partition {p} is neither a partition number nor SHMKAFKA_PARTITION_UNASSIGNED (-1)"
        ))),
    }
}

/// # Safety
/// `headers` is NULL or readable for `len` entries whose buffers are
/// readable for their lengths, all for `'a`.
unsafe fn headers_from_c<'a>(
    headers: *const shmkafka_header,
    len: usize,
) -> Result<Vec<Header<'a>>, Failed> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if headers.is_null() {
        return Err(Failed::null("headers"));
    }
    if len > isize::MAX as usize / std::mem::size_of::<shmkafka_header>() {
        return Err(Failed::invalid(format!(
            "headers_len {len} is impossibly large"
        )));
    }
    // SAFETY: non-NULL, size within isize::MAX, `len` readable entries as
    // the caller promises; `shmkafka_header` is plain data of any bit pattern
    // except that its pointers are only read below under the same promise.
    let headers = unsafe { std::slice::from_raw_parts(headers, len) };
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // SAFETY: the caller promises readable name and value buffers.
            let name = unsafe { bytes(h.name.cast(), h.name_len, 0, "headers[].name") }?
                .unwrap_or_default();
            let name = std::str::from_utf8(name)
                .map_err(|_| Failed::invalid(format!("headers[{i}].name is not UTF-8")))?;
            // SAFETY: as above.
            let value = unsafe { bytes(h.value, h.value_len, h.value_is_null, "headers[].value") }?;
            Ok(Header { name, value })
        })
        .collect()
}

/// Waits until every record sent before this call is acknowledged by the
/// broker or reported failed, for at most `timeout_ms`. On success
/// `*out_failures` (if not NULL) is the number of failures now waiting to be
/// read with `shmkafka_producer_failures`. `SHMKAFKA_RESULT_TIMED_OUT` if
/// records are still in flight at the deadline (the daemon keeps trying).
///
/// # Safety
/// `producer` is NULL or a live handle; `out_failures` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_flush(
    producer: *const shmkafka_producer,
    timeout_ms: u64,
    out_failures: *mut usize,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let handle = unsafe { deref(producer, "producer") }?;
        let report = handle.producer.flush(Duration::from_millis(timeout_ms))?;
        let mut pending = lock(&handle.failures);
        pending.extend(report.failures);
        if !out_failures.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_failures.write(pending.len()) };
        }
        Ok(())
    })
}

/// Takes up to `capacity` failures (oldest first) into `out`; `*out_count`
/// is how many were written. Failures not taken stay for the next call.
/// `out` may be NULL when `capacity` is 0.
///
/// # Safety
/// `producer` is NULL or a live handle; `out` is NULL or writable for
/// `capacity` entries; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_failures(
    producer: *const shmkafka_producer,
    out: *mut shmkafka_failure,
    capacity: usize,
    out_count: *mut usize,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let handle = unsafe { deref(producer, "producer") }?;
        let out_count = self::out(out_count, "out_count")?;
        if capacity > 0 && out.is_null() {
            return Err(Failed::null("out"));
        }
        let mut pending = lock(&handle.failures);
        pending.extend(handle.producer.failures());
        let n = capacity.min(pending.len());
        for (i, failure) in pending.drain(..n).enumerate() {
            // SAFETY: i < n <= capacity, and the caller promises `capacity`
            // writable entries at `out`.
            unsafe { out.add(i).write(failure.into()) };
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_count.write(n) };
        Ok(())
    })
}

/// Fills `*out` with the producer's counters.
///
/// # Safety
/// `producer` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_stats(
    producer: *const shmkafka_producer,
    out: *mut shmkafka_stats,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let handle = unsafe { deref(producer, "producer") }?;
        let out = self::out(out, "out")?;
        let s = handle.producer.stats();
        let stats = shmkafka_stats {
            capacity: s.capacity,
            unacknowledged_bytes: s.unacknowledged_bytes,
            aborted: s.aborted,
            full_events: s.full_events,
            reconnects: s.reconnects,
            client_id: s.client_id.unwrap_or(0),
            connected: u8::from(s.connected),
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Flushes for at most `timeout_ms`, disconnects and frees the producer and
/// its topic handles, whatever the result: the handle is invalid afterwards.
/// Records not yet acknowledged stay with the daemon, which delivers them
/// after we are gone; `SHMKAFKA_RESULT_TIMED_OUT` says some were. Failures
/// not yet read are lost to the caller (the daemon's spool has them): call
/// `shmkafka_producer_flush` and `shmkafka_producer_failures` first if they
/// matter. Commit or abort every reservation first; the ring stays mapped
/// until the last one is finished.
///
/// # Safety
/// `producer` is NULL or a live handle, not used by any other thread during
/// or after this call.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_close(
    producer: *mut shmkafka_producer,
    timeout_ms: u64,
) -> shmkafka_result {
    guard(|| {
        if producer.is_null() {
            return Err(Failed::null("producer"));
        }
        // SAFETY: a live handle made by Box::into_raw in connect, which the
        // caller gives back exactly once and no longer uses.
        let handle = unsafe { Box::from_raw(producer) };
        let flushed = handle.producer.flush(Duration::from_millis(timeout_ms));
        // Dropping the last Arc stops the supervisor and disconnects
        // (Producer's Drop), as `Producer::close` does.
        drop(handle);
        flushed.map(drop).map_err(Failed::from)
    })
}
