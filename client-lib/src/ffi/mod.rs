//! The C ABI: the only code in this crate with `unsafe`.
//!
//! Built into `libshmkafka.so` / `libshmkafka.a` by the `shmkafka-ffi`
//! crate (`client-lib/ffi/`); the header `client-lib/include/shmkafka.h` is
//! generated from this module by cbindgen (`client-lib/check-header.sh`).
//!
//! Conventions, the same for every function:
//! - A fallible call returns a [`shmkafka_result`]; `SHMKAFKA_RESULT_OK` is 0.
//!   On failure [`shmkafka_last_error`] describes what went wrong.
//! - Results come back through out-parameters, written only on success.
//! - Handles are opaque and created by `_connect` / `_topic` / `_reserve`;
//!   a producer is freed exactly once by `shmkafka_producer_close`, a
//!   reservation exactly once by `_commit` or `_abort`. Topic handles belong
//!   to their producer and are freed with it.
//! - Every pointer argument is checked: NULL gives
//!   `SHMKAFKA_RESULT_NULL_ARGUMENT` (some out-parameters are documented as
//!   optional), never a crash. Dangling or foreign pointers cannot be
//!   detected and are undefined behaviour, as everywhere in C.
//! - A panic inside the library is caught at the boundary and returned as
//!   `SHMKAFKA_RESULT_PANIC`; it never unwinds into the caller.
//! - Byte fields are (pointer, length, is-null flag): a null key or value is
//!   `is_null != 0`, an empty one is length 0; the pointer is not read when
//!   the length is 0, so it may be NULL then. (Bindings whose empty buffers
//!   pin to NULL, such as C# `fixed` or Go's nil slices, need nothing special.)
//! - A producer and its topics may be used from many threads at once; a
//!   reservation by one thread at a time.

#![allow(non_camel_case_types)] // C names, so the header reads like C.

mod batch;
mod producer;
mod reports;
mod reservation;

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::Error;

pub use batch::{
    shmkafka_batch, shmkafka_batch_abort, shmkafka_batch_commit, shmkafka_batch_key,
    shmkafka_batch_value, shmkafka_producer_reserve_batch, shmkafka_producer_send_batch,
};
pub use producer::{
    shmkafka_failure, shmkafka_header, shmkafka_producer, shmkafka_producer_close,
    shmkafka_producer_connect, shmkafka_producer_failures, shmkafka_producer_flush,
    shmkafka_producer_options, shmkafka_producer_send, shmkafka_producer_stats,
    shmkafka_producer_topic, shmkafka_record, shmkafka_stats, shmkafka_topic, SHMKAFKA_FAIL_FAST,
    SHMKAFKA_PARTITION_UNASSIGNED, SHMKAFKA_TIMESTAMP_NOW,
};
pub use reports::{
    shmkafka_delivery_report, shmkafka_error_description, shmkafka_error_name,
    shmkafka_producer_poll, shmkafka_producer_poll_reports, shmkafka_producer_send_opaque,
};
pub use reservation::{
    shmkafka_producer_reserve, shmkafka_reservation, shmkafka_reservation_abort,
    shmkafka_reservation_commit, shmkafka_reservation_key, shmkafka_reservation_value,
};

/// What a call did. The value of each code is fixed forever; new codes get
/// new values.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shmkafka_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range or malformed (not UTF-8, negative
    /// partition, topic handle of another producer, ...).
    InvalidArgument = 2,
    /// The library panicked (a bug); the message says where. The handle
    /// involved may be unusable.
    Panic = 3,
    /// The daemon's socket could not be reached (not running, permissions).
    Connect = 4,
    /// The daemon refused this client.
    Refused = 5,
    /// The daemon refused the topic (not on its allow list).
    TopicRefused = 6,
    /// The topic name is not a legal Kafka topic name.
    InvalidTopic = 7,
    /// The daemon is not connected right now (restarting); records keep
    /// landing in the ring, but topics cannot be registered.
    Disconnected = 8,
    /// The ring stayed full for the whole block timeout (or at once with
    /// fail-fast): the broker is not keeping up.
    Full = 9,
    /// The record (or a header) can never fit this ring's record limit.
    TooLarge = 10,
    /// `flush` or `close` did not see every record acknowledged in time.
    TimedOut = 11,
    /// The shared-memory ring could not be created (see the message).
    Segment = 12,
    /// The ring's shared cursors are corrupted.
    Corrupted = 13,
    /// The control connection to the daemon failed.
    Protocol = 14,
    /// A delivery-report call on a producer connected without
    /// `delivery_reports`.
    ReportsNotEnabled = 15,
}

impl shmkafka_result {
    const ALL: [shmkafka_result; 16] = [
        Self::Ok,
        Self::NullArgument,
        Self::InvalidArgument,
        Self::Panic,
        Self::Connect,
        Self::Refused,
        Self::TopicRefused,
        Self::InvalidTopic,
        Self::Disconnected,
        Self::Full,
        Self::TooLarge,
        Self::TimedOut,
        Self::Segment,
        Self::Corrupted,
        Self::Protocol,
        Self::ReportsNotEnabled,
    ];

    /// The enumerator's name in the header, NUL-terminated.
    fn name(self) -> &'static [u8] {
        match self {
            Self::Ok => b"SHMKAFKA_RESULT_OK\0",
            Self::NullArgument => b"SHMKAFKA_RESULT_NULL_ARGUMENT\0",
            Self::InvalidArgument => b"SHMKAFKA_RESULT_INVALID_ARGUMENT\0",
            Self::Panic => b"SHMKAFKA_RESULT_PANIC\0",
            Self::Connect => b"SHMKAFKA_RESULT_CONNECT\0",
            Self::Refused => b"SHMKAFKA_RESULT_REFUSED\0",
            Self::TopicRefused => b"SHMKAFKA_RESULT_TOPIC_REFUSED\0",
            Self::InvalidTopic => b"SHMKAFKA_RESULT_INVALID_TOPIC\0",
            Self::Disconnected => b"SHMKAFKA_RESULT_DISCONNECTED\0",
            Self::Full => b"SHMKAFKA_RESULT_FULL\0",
            Self::TooLarge => b"SHMKAFKA_RESULT_TOO_LARGE\0",
            Self::TimedOut => b"SHMKAFKA_RESULT_TIMED_OUT\0",
            Self::Segment => b"SHMKAFKA_RESULT_SEGMENT\0",
            Self::Corrupted => b"SHMKAFKA_RESULT_CORRUPTED\0",
            Self::Protocol => b"SHMKAFKA_RESULT_PROTOCOL\0",
            Self::ReportsNotEnabled => b"SHMKAFKA_RESULT_REPORTS_NOT_ENABLED\0",
        }
    }
}

/// A failed call: its code and the text for `shmkafka_last_error`.
pub(crate) struct Failed {
    code: shmkafka_result,
    message: String,
}

impl Failed {
    fn new(code: shmkafka_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(argument: &str) -> Self {
        Self::new(
            shmkafka_result::NullArgument,
            format!("argument `{argument}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(shmkafka_result::InvalidArgument, message)
    }
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        use shmkafka_ringbuf::CreateError;
        // Exhaustive on purpose: a new error variant must get a code here.
        let code = match &error {
            Error::Connect(_) => shmkafka_result::Connect,
            Error::Refused { .. } => shmkafka_result::Refused,
            Error::TopicRefused { .. } => shmkafka_result::TopicRefused,
            Error::InvalidTopic { .. } => shmkafka_result::InvalidTopic,
            Error::Disconnected => shmkafka_result::Disconnected,
            Error::Full { .. } => shmkafka_result::Full,
            Error::TooLarge { .. } | Error::HeaderTooLarge => shmkafka_result::TooLarge,
            Error::FlushTimeout { .. } => shmkafka_result::TimedOut,
            Error::Segment(
                CreateError::InvalidCapacity(_) | CreateError::InvalidMaxRecord { .. },
            ) => shmkafka_result::InvalidArgument,
            Error::Segment(_) => shmkafka_result::Segment,
            Error::Corrupted(_) => shmkafka_result::Corrupted,
            Error::Protocol(_) => shmkafka_result::Protocol,
            Error::ReportsNotEnabled => shmkafka_result::ReportsNotEnabled,
        };
        Self::new(code, error.to_string())
    }
}

thread_local! {
    /// The message of the last failed call on this thread, NUL-terminated.
    /// Cleared and rewritten in place, so its buffer is reused.
    static LAST_ERROR: RefCell<Vec<u8>> = RefCell::new(vec![0]);
}

fn set_last_error(message: &str) {
    LAST_ERROR.with(|cell| {
        let mut buffer = cell.borrow_mut();
        buffer.clear();
        // An interior NUL would cut the C string short; none of our messages
        // has one, but a daemon's refusal text is not ours.
        buffer.extend(message.bytes().map(|b| if b == 0 { b'?' } else { b }));
        buffer.push(0);
    });
}

/// Runs the body of an exported function: a panic becomes
/// `SHMKAFKA_RESULT_PANIC`, an error its code; both set the last error.
/// Success leaves the last error untouched (nothing to pay on the hot path).
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failed>) -> shmkafka_result {
    let failed = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return shmkafka_result::Ok,
        Ok(Err(failed)) => failed,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            Failed::new(
                shmkafka_result::Panic,
                format!("panic inside libshmkafka (a bug, please report it): {what}"),
            )
        }
    };
    set_last_error(&failed.message);
    failed.code
}

/// Borrows `*ptr`, or fails with NULL_ARGUMENT naming `argument`.
///
/// # Safety
/// `ptr` is NULL or valid for reads of a `T` for `'a`.
pub(crate) unsafe fn deref<'a, T>(ptr: *const T, argument: &str) -> Result<&'a T, Failed> {
    // SAFETY: the caller promises NULL or a valid pointer; `as_ref` maps NULL
    // to None.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failed::null(argument))
}

/// Checks a required out-parameter; the write happens later, on success.
pub(crate) fn out<T>(ptr: *mut T, argument: &str) -> Result<*mut T, Failed> {
    if ptr.is_null() {
        Err(Failed::null(argument))
    } else {
        Ok(ptr)
    }
}

/// Reads a (pointer, length, is-null) byte field.
///
/// # Safety
/// Unless `is_null != 0` or `len == 0`, `ptr` is NULL or valid for reads
/// of `len` bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    is_null: u8,
    argument: &str,
) -> Result<Option<&'a [u8]>, Failed> {
    if is_null != 0 {
        return Ok(None);
    }
    if len == 0 {
        return Ok(Some(&[]));
    }
    if ptr.is_null() {
        return Err(Failed::null(argument));
    }
    if len > isize::MAX as usize {
        return Err(Failed::invalid(format!(
            "`{argument}` length {len} is impossibly large"
        )));
    }
    // SAFETY: non-NULL, `len` within isize::MAX, and the caller promises
    // `len` readable bytes that nothing mutates during the call.
    Ok(Some(unsafe { std::slice::from_raw_parts(ptr, len) }))
}

/// Reads a NUL-terminated string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, argument: &str) -> Result<&'a [u8], Failed> {
    if ptr.is_null() {
        return Err(Failed::null(argument));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    Ok(unsafe { std::ffi::CStr::from_ptr(ptr) }.to_bytes())
}

/// The message of the last failed `shmkafka_*` call on this thread: a
/// NUL-terminated string, empty if no call has failed yet. A successful call
/// does not clear it. The pointer stays valid until the next `shmkafka_*`
/// call on this thread (copy it with `shmkafka_last_error_copy` to keep it).
/// Never NULL.
#[no_mangle]
pub extern "C" fn shmkafka_last_error() -> *const c_char {
    LAST_ERROR.with(|cell| cell.borrow().as_ptr().cast())
}

/// Copies the last error message (see `shmkafka_last_error`) into `buffer`
/// of `capacity` bytes, truncated and always NUL-terminated when `capacity`
/// is at least 1. Returns the message length without the NUL, as `snprintf`
/// does: a result `>= capacity` means it was truncated. `buffer` may be
/// NULL when `capacity` is 0, to ask for the length.
///
/// # Safety
/// `buffer` is NULL or valid for writes of `capacity` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_last_error_copy(buffer: *mut c_char, capacity: usize) -> usize {
    LAST_ERROR.with(|cell| {
        let message = cell.borrow();
        let len = message.len() - 1; // without the NUL
        if !buffer.is_null() && capacity > 0 {
            let n = len.min(capacity - 1);
            // SAFETY: the caller promises `capacity` writable bytes at
            // `buffer`; we write n + 1 <= capacity of them, from our own
            // buffer, which cannot overlap caller memory.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), n);
                *buffer.add(n) = 0;
            }
        }
        len
    })
}

/// The enumerator name of a result code (`"SHMKAFKA_RESULT_FULL"`), or
/// `"SHMKAFKA_RESULT_UNKNOWN"`. Takes an `int32_t` so that any value is safe
/// to pass. The string is static.
#[no_mangle]
pub extern "C" fn shmkafka_result_name(code: i32) -> *const c_char {
    let name = shmkafka_result::ALL
        .iter()
        .find(|r| **r as i32 == code)
        .map_or(&b"SHMKAFKA_RESULT_UNKNOWN\0"[..], |r| r.name());
    name.as_ptr().cast()
}

/// The library version (`"0.1.0"`), a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn shmkafka_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: shmkafka_last_error never returns NULL and the string is
        // NUL-terminated; we copy it before the next call.
        unsafe { CStr::from_ptr(shmkafka_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, shmkafka_result::Panic);
        assert!(last_error().contains("boom 42"), "{}", last_error());
    }

    #[test]
    fn success_leaves_the_last_error_alone() {
        assert_eq!(
            guard(|| Err(Failed::invalid("first"))),
            shmkafka_result::InvalidArgument
        );
        assert_eq!(guard(|| Ok(())), shmkafka_result::Ok);
        assert_eq!(last_error(), "first");
    }

    #[test]
    fn copy_truncates_and_reports_the_full_length() {
        set_last_error("hello world");
        let mut buffer = [0x55 as c_char; 6];
        // SAFETY: buffer has 6 writable bytes.
        let n = unsafe { shmkafka_last_error_copy(buffer.as_mut_ptr(), buffer.len()) };
        assert_eq!(n, 11);
        // SAFETY: the copy NUL-terminated the buffer.
        let copied = unsafe { CStr::from_ptr(buffer.as_ptr()) };
        assert_eq!(copied.to_str().unwrap(), "hello");
        // SAFETY: NULL with capacity 0 only asks for the length.
        let needed = unsafe { shmkafka_last_error_copy(std::ptr::null_mut(), 0) };
        assert_eq!(needed, 11);
    }

    #[test]
    fn every_code_has_its_header_name() {
        for (i, code) in shmkafka_result::ALL.iter().enumerate() {
            assert_eq!(*code as i32, i as i32, "codes are dense and in order");
            // SAFETY: static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(shmkafka_result_name(*code as i32)) };
            assert!(name.to_str().unwrap().starts_with("SHMKAFKA_RESULT_"));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmkafka_result_name(-7)) };
        assert_eq!(unknown.to_str().unwrap(), "SHMKAFKA_RESULT_UNKNOWN");
    }

    #[test]
    fn interior_nul_does_not_cut_the_message() {
        set_last_error("a\0b");
        assert_eq!(last_error(), "a?b");
    }
}
