//! Delivery reports: what librdkafka says became of each produced message.

use std::ffi::{c_void, CStr};

use rdkafka_sys::bindings as rd;

use super::error::KafkaErrorCode;

/// Whether a record may have reached the broker's log
/// (`rd_kafka_message_status`). On failure this decides whether re-producing
/// risks a duplicate.
///
/// The one representation of it in the daemon: delivery reports, the spool
/// format (one byte) and the client's failure queue (a `u32`) all use these
/// discriminants. Ordered by risk, so the verdict over several attempts of
/// one record is the [`Ord::max`] of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Persistence {
    /// Never sent, or the broker answered with an error: re-producing cannot
    /// duplicate it.
    NotPersisted = 0,
    /// Sent without an answer (timeout, connection loss, purged in flight):
    /// it may be in the log, so re-producing may duplicate it.
    PossiblyPersisted = 1,
    /// Acknowledged by the broker.
    Persisted = 2,
}

impl Persistence {
    /// The encoding in spool frames and the client's failure queue.
    pub const fn as_byte(self) -> u8 {
        self as u8
    }

    /// The inverse of [`Persistence::as_byte`]; `None` for other values.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::NotPersisted),
            1 => Some(Self::PossiblyPersisted),
            2 => Some(Self::Persisted),
            _ => None,
        }
    }

    /// Lower-case name for listings and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotPersisted => "not_persisted",
            Self::PossiblyPersisted => "possibly_persisted",
            Self::Persisted => "persisted",
        }
    }

    fn from_native(status: rd::rd_kafka_msg_status_t) -> Self {
        use rd::rd_kafka_msg_status_t::*;
        match status {
            RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Self::NotPersisted,
            RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => Self::PossiblyPersisted,
            RD_KAFKA_MSG_STATUS_PERSISTED => Self::Persisted,
        }
    }
}

/// The outcome of one produced message, copied out of librdkafka inside the
/// delivery-report callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The `opaque` the message was produced with.
    pub opaque: usize,
    /// `Ok` once the broker acknowledged the message (per `acks`).
    pub result: Result<(), KafkaErrorCode>,
    /// Whether the message may be in the log; see [`Persistence`].
    pub status: Persistence,
    /// The partition it went to (-1 if none was ever chosen).
    pub partition: i32,
    /// Its offset in the partition, or -1 (`RD_KAFKA_OFFSET_INVALID`) when
    /// unknown (failures, `acks=0`).
    pub offset: i64,
    /// The timestamp the broker stored (ms since the epoch): the create
    /// time, or the broker's log-append time if the topic uses it; -1 if
    /// unknown.
    pub timestamp_ms: i64,
    /// Microseconds from produce to delivery report, or -1 if unknown.
    pub latency_us: i64,
    /// librdkafka's detail for a failure (e.g. the broker's error message),
    /// when it has one beyond the code.
    pub error_detail: Option<String>,
}

impl DeliveryReport {
    /// Copies the report out of a message handed to `dr_msg_cb`.
    ///
    /// # Safety
    /// `msg` must point to a live `rd_kafka_message_t` given to a delivery
    /// report callback, for the duration of this call.
    pub(crate) unsafe fn from_native(msg: *const rd::rd_kafka_message_t) -> Self {
        // SAFETY: msg is live (caller contract). The err field is read as the
        // raw int because brokers may return codes the bindgen enum lacks.
        let raw_err = unsafe { std::ptr::addr_of!((*msg).err).cast::<i32>().read() };
        let code = KafkaErrorCode::from_raw(raw_err);
        // SAFETY: msg is live; these are plain field reads.
        let (partition, offset, opaque) =
            unsafe { ((*msg).partition, (*msg).offset, (*msg)._private) };
        // SAFETY: msg is live; these functions only read it (the timestamp
        // type is written to a local).
        let (status, latency_us, timestamp_ms) = unsafe {
            let mut timestamp_type =
                rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            (
                rd::rd_kafka_message_status(msg),
                rd::rd_kafka_message_latency(msg),
                rd::rd_kafka_message_timestamp(msg, &mut timestamp_type),
            )
        };
        let error_detail = if code.is_ok() {
            None
        } else {
            // SAFETY: msg is live; the errstr (or NULL) is owned by it and
            // copied before the callback returns.
            let ptr = unsafe { rd::rd_kafka_message_produce_errstr(msg) };
            (!ptr.is_null()).then(|| {
                // SAFETY: checked non-NULL; NUL-terminated, owned by msg.
                unsafe { CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned()
            })
        };
        Self {
            opaque: opaque_from_ptr(opaque),
            result: if code.is_ok() { Ok(()) } else { Err(code) },
            status: Persistence::from_native(status),
            partition,
            offset,
            timestamp_ms,
            latency_us,
            error_detail,
        }
    }
}

/// The one place a caller's opaque becomes librdkafka's `msg_opaque`; it is
/// only ever carried, never dereferenced.
pub(crate) fn opaque_to_ptr(opaque: usize) -> *mut c_void {
    opaque as *mut c_void
}

/// The inverse of [`opaque_to_ptr`].
pub(crate) fn opaque_from_ptr(ptr: *mut c_void) -> usize {
    ptr as usize
}
