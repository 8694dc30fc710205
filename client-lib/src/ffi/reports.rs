//! Delivery reports and error names: send with an opaque, poll reports into
//! an array or through a callback run by the polling thread.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;
use std::time::Duration;

use super::producer::{
    send_record, shmkafka_header, shmkafka_producer, shmkafka_record, shmkafka_topic,
};
use super::{deref, guard, out, shmkafka_result, Failed};
use crate::{DeliveryReport, Persistence};

/// One record's outcome. `topic` points to the topic's NUL-terminated name,
/// valid until the producer is closed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmkafka_delivery_report {
    /// The sequence number `send` returned for the record.
    pub seq: u64,
    /// The opaque given to `shmkafka_producer_send_opaque`; 0 otherwise.
    pub opaque: u64,
    /// Topic name, NUL-terminated.
    pub topic: *const c_char,
    /// 0 when delivered; else librdkafka's `rd_kafka_resp_err_t` (see
    /// `shmkafka_error_name` and `shmkafka_error_description`).
    pub error_code: i32,
    /// Partition it went to (or was meant for; -1 if none was chosen).
    pub partition: i32,
    /// Offset in the partition; -1 when failed.
    pub offset: i64,
    /// Timestamp the broker stored (ms since the epoch); for a failure, the
    /// record's create time.
    pub timestamp_ms: i64,
    /// Whether the record may be in the log: 0 no, 1 possibly, 2 yes (2 when
    /// delivered).
    pub persistence: u32,
    /// 1 if sent with an opaque.
    pub has_opaque: u8,
}

/// Called by `shmkafka_producer_poll`, on the polling thread, once per
/// report. The report is valid for the duration of the call.
pub type shmkafka_report_callback =
    Option<unsafe extern "C" fn(report: *const shmkafka_delivery_report, user_data: *mut c_void)>;

fn report_to_c(handle: &shmkafka_producer, report: &DeliveryReport) -> shmkafka_delivery_report {
    let topic = topic_name_c(handle, &report.topic);
    let (error_code, partition, offset, timestamp_ms, persistence) = match report.result {
        Ok(d) => (0, d.partition, d.offset, d.timestamp_ms, 2),
        Err(e) => (
            e.code,
            e.partition,
            -1,
            -1,
            match e.persistence {
                Persistence::NotPersisted => 0,
                Persistence::PossiblyPersisted => 1,
                Persistence::Persisted => 2,
            },
        ),
    };
    shmkafka_delivery_report {
        seq: report.seq,
        opaque: report.opaque.unwrap_or(0),
        topic,
        error_code,
        partition,
        offset,
        timestamp_ms,
        persistence,
        has_opaque: u8::from(report.opaque.is_some()),
    }
}

/// The NUL-terminated name of a topic registered through this handle.
fn topic_name_c(handle: &shmkafka_producer, name: &str) -> *const c_char {
    let topics = handle.topics.lock().unwrap_or_else(|p| p.into_inner());
    topics
        .iter()
        .find(|t| t.topic.name() == name)
        .map_or(c"".as_ptr(), |t: &std::sync::Arc<shmkafka_topic>| {
            t.name_c.as_ptr()
        })
}

/// As `shmkafka_producer_send`, and the record's delivery report carries
/// `opaque`. Needs a producer connected with `delivery_reports`.
///
/// # Safety
/// As `shmkafka_producer_send`.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_send_opaque(
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
    opaque: u64,
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
    unsafe { send_record(producer, topic, &record, Some(opaque), out_seq) }
}

/// Takes up to `capacity` delivery reports (oldest first, in commit order)
/// into `out`, waiting up to `timeout_ms` for the first; `*out_count` is how
/// many were written. Reading reports gives their records' ring space back.
/// Needs a producer connected with `delivery_reports`.
///
/// # Safety
/// `producer` is NULL or a live handle; `out` is NULL or writable for
/// `capacity` entries; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_poll_reports(
    producer: *const shmkafka_producer,
    timeout_ms: u64,
    out: *mut shmkafka_delivery_report,
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
        let mut written = 0;
        handle
            .producer
            .poll_reports(Duration::from_millis(timeout_ms), capacity, |report| {
                // SAFETY: poll_reports hands at most `capacity` reports, and
                // the caller promises `capacity` writable entries at `out`.
                unsafe { out.add(written).write(report_to_c(handle, &report)) };
                written += 1;
            })?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_count.write(written) };
        Ok(())
    })
}

/// Serves up to `max` delivery reports by calling `callback(report,
/// user_data)` for each, on this thread, waiting up to `timeout_ms` for the
/// first; `*out_count` (if not NULL) is how many were served. The callback
/// may send; it must not close the producer.
///
/// # Safety
/// `producer` is NULL or a live handle; `callback` is safe to call with a
/// report and `user_data`; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_poll(
    producer: *const shmkafka_producer,
    timeout_ms: u64,
    max: usize,
    callback: shmkafka_report_callback,
    user_data: *mut c_void,
    out_count: *mut usize,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let handle = unsafe { deref(producer, "producer") }?;
        let callback = callback.ok_or_else(|| Failed::null("callback"))?;
        let mut served = 0usize;
        handle
            .producer
            .poll_reports(Duration::from_millis(timeout_ms), max, |report| {
                let report = report_to_c(handle, &report);
                // SAFETY: the caller promises the callback may be called with
                // a report (valid during the call) and its user_data.
                unsafe { callback(&report, user_data) };
                served += 1;
            })?;
        if !out_count.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_count.write(served) };
        }
        Ok(())
    })
}

/// librdkafka's name for an error code (`rd_kafka_err2name`), e.g.
/// `_MSG_TIMED_OUT`; "UNKNOWN" for a code it does not define. A static
/// NUL-terminated string: never freed.
#[no_mangle]
pub extern "C" fn shmkafka_error_name(code: i32) -> *const c_char {
    error_texts(code).0.as_ptr()
}

/// librdkafka's description of an error code (`rd_kafka_err2str`), e.g.
/// "Local: Message timed out". A static NUL-terminated string: never freed.
#[no_mangle]
pub extern "C" fn shmkafka_error_description(code: i32) -> *const c_char {
    error_texts(code).1.as_ptr()
}

/// NUL-terminated copies of the error table, made once.
fn error_texts(code: i32) -> &'static (CString, CString) {
    static TEXTS: OnceLock<HashMap<i32, (CString, CString)>> = OnceLock::new();
    static UNKNOWN: OnceLock<(CString, CString)> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        shmkafka_protocol::kafka_error::codes()
            .map(|code| {
                let c = |s: &str| CString::new(s).unwrap_or_default();
                (
                    code,
                    (
                        c(crate::error_name(code)),
                        c(crate::error_description(code)),
                    ),
                )
            })
            .collect()
    });
    texts.get(&code).unwrap_or_else(|| {
        UNKNOWN.get_or_init(|| {
            (
                CString::new(crate::error_name(i32::MIN)).unwrap_or_default(),
                CString::new(crate::error_description(i32::MIN)).unwrap_or_default(),
            )
        })
    })
}
