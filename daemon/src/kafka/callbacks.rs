//! The state librdkafka's poll-served callbacks write into, and those
//! callbacks (delivery report, error, statistics).
//!
//! librdkafka runs these three on the thread that calls `rd_kafka_poll` or
//! `rd_kafka_flush` (we enable no background queue), so they only collect
//! data: nothing here calls back into the daemon's code while it is inside a
//! `Producer` method.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rdkafka_sys::bindings as rd;

use super::delivery::DeliveryReport;
use super::error::KafkaErrorCode;
use super::handle::{errstr_to_string, ERRSTR_LEN};

/// Shared with librdkafka through `rd_kafka_conf_set_opaque`; boxed so its
/// address is stable, and dropped only after `rd_kafka_destroy` returned.
#[derive(Default)]
pub(crate) struct CallbackState {
    /// Reports collected by `dr_msg_cb`, moved out by `Producer::poll`. A
    /// mutex rather than a cell so `Producer` can be `Sync` soundly; it is
    /// uncontended when one thread polls, as the daemon does.
    reports: Mutex<Vec<DeliveryReport>>,
    /// The latest `statistics.interval.ms` JSON document; shared with
    /// [`StatisticsFeed`]s, which hold no librdkafka handle.
    statistics: Arc<Mutex<Option<Arc<str>>>>,
    /// Error callbacks seen, for tests and metrics.
    errors_seen: AtomicU64,
    /// The error name of the latest failed transaction, from librdkafka's
    /// `TXNERR` log line (the transactional API offers no other way to
    /// learn why a transaction entered its abortable state; the reports of
    /// the records it purged say only `_PURGE_QUEUE`).
    txn_error: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data inconsistent
    // (pushes and swaps only), and a callback must never panic across FFI.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// librdkafka's log facility of a failed transaction: "Current transaction
/// failed in state S: reason (ERROR_NAME[, requires epoch bump])".
const TXN_ERROR_FACILITY: &[u8] = b"TXNERR";

/// The error name in a `TXNERR` line.
fn txn_error_name(line: &str) -> Option<&str> {
    let inside = &line[line.rfind('(')? + 1..];
    let end = inside.find([',', ')']).unwrap_or(inside.len());
    let name = inside[..end].trim();
    (!name.is_empty()).then_some(name)
}

impl CallbackState {
    /// Takes the error name of the latest failed transaction.
    pub(crate) fn take_txn_error(&self) -> Option<String> {
        lock(&self.txn_error).take()
    }

    /// A state that publishes statistics into `feed`, if given, so the
    /// feed's readers keep seeing the latest document across producers
    /// that replace one another.
    pub(crate) fn publishing_to(feed: Option<&StatisticsFeed>) -> Self {
        Self {
            statistics: feed.map_or_else(Arc::default, |f| Arc::clone(&f.0)),
            ..Self::default()
        }
    }

    /// Moves every collected report to the end of `out`; returns how many.
    pub(crate) fn take_reports(&self, out: &mut Vec<DeliveryReport>) -> usize {
        let mut reports = lock(&self.reports);
        let n = reports.len();
        out.append(&mut reports);
        n
    }

    pub(crate) fn statistics(&self) -> Option<String> {
        lock(&self.statistics).as_deref().map(str::to_owned)
    }

    pub(crate) fn statistics_feed(&self) -> StatisticsFeed {
        StatisticsFeed(Arc::clone(&self.statistics))
    }

    pub(crate) fn errors_seen(&self) -> u64 {
        self.errors_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn as_opaque(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }

    /// # Safety
    /// `opaque` must be the pointer given to `rd_kafka_conf_set_opaque`, i.e.
    /// from [`CallbackState::as_opaque`] on a state that is still alive.
    unsafe fn from_opaque<'a>(opaque: *mut c_void) -> &'a Self {
        // SAFETY: per the contract the pointer came from `as_opaque` on a
        // live, boxed state; we only create shared references to it.
        unsafe { &*opaque.cast::<Self>() }
    }
}

/// Read access to a producer's latest statistics document that does not
/// keep the producer alive (so it cannot delay `rd_kafka_destroy` past the
/// unmapping of the rings its in-flight records point into).
#[derive(Debug, Clone, Default)]
pub struct StatisticsFeed(Arc<Mutex<Option<Arc<str>>>>);

impl StatisticsFeed {
    /// The latest JSON document, if one arrived yet.
    pub fn latest(&self) -> Option<Arc<str>> {
        lock(&self.0).clone()
    }
}

/// `dr_msg_cb`.
///
/// # Safety
/// Called by librdkafka only, with the opaque of a live [`CallbackState`] and
/// a message valid for the call.
pub(crate) unsafe extern "C" fn dr_msg_cb(
    _rk: *mut rd::rd_kafka_t,
    msg: *const rd::rd_kafka_message_t,
    opaque: *mut c_void,
) {
    // SAFETY: librdkafka passes back the opaque we configured, whose state
    // outlives the client (see `CallbackState`).
    let state = unsafe { CallbackState::from_opaque(opaque) };
    // SAFETY: msg is valid for the duration of the callback.
    let report = unsafe { DeliveryReport::from_native(msg) };
    lock(&state.reports).push(report);
}

extern "C" {
    // The bindings return the bindgen enum; the underlying fatal error can be
    // a broker code the enum does not know, so read it as the raw int.
    #[link_name = "rd_kafka_fatal_error"]
    fn rd_kafka_fatal_error_raw(
        rk: *mut rd::rd_kafka_t,
        errstr: *mut c_char,
        errstr_size: usize,
    ) -> i32;
}

/// The fatal error raised on `rk`, if any.
///
/// # Safety
/// `rk` must be a live handle.
pub(crate) unsafe fn fatal_error(rk: *mut rd::rd_kafka_t) -> Option<(KafkaErrorCode, String)> {
    let mut errstr = [0 as c_char; ERRSTR_LEN];
    // SAFETY: rk is live (caller contract); errstr is writable for its length.
    let code = KafkaErrorCode::from_raw(unsafe {
        rd_kafka_fatal_error_raw(rk, errstr.as_mut_ptr(), errstr.len())
    });
    (!code.is_ok()).then(|| (code, errstr_to_string(&errstr)))
}

/// `error_cb`: librdkafka reports client-level errors here (all brokers
/// down, authentication, fatal). Most are informational because librdkafka
/// recovers by itself; a fatal one means the instance is finished.
///
/// # Safety
/// Called by librdkafka only, with a live `rk`, the opaque of a live
/// [`CallbackState`], and `reason` NULL or NUL-terminated.
pub(crate) unsafe extern "C" fn error_cb(
    rk: *mut rd::rd_kafka_t,
    err: c_int,
    reason: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: as in `dr_msg_cb`.
    let state = unsafe { CallbackState::from_opaque(opaque) };
    state.errors_seen.fetch_add(1, Ordering::Relaxed);
    let code = KafkaErrorCode::from_raw(err);
    let reason = if reason.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL and NUL-terminated for the callback's duration.
        unsafe { CStr::from_ptr(reason) }
            .to_string_lossy()
            .into_owned()
    };
    if code.known() == Some(rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FATAL) {
        // SAFETY: rk is live during the callback.
        let (fatal_code, fatal_reason) =
            unsafe { fatal_error(rk) }.unwrap_or((code, reason.clone()));
        // Counted and shown in `status`; always logged (it is rare, and the
        // producer is replaced because of it).
        let _ = super::client_errors::note_error(&fatal_code.name(), &fatal_reason);
        tracing::error!(
            target: super::log::LOG_TARGET,
            code = %fatal_code.name(),
            reason = %fatal_reason,
            "fatal librdkafka error: this producer instance must be replaced"
        );
    } else if code.name() == crate::log_summary::ALL_BROKERS_DOWN {
        // Counted; the supervisor logs the outage when it begins and ends,
        // and summarises it meanwhile (crate::log_summary).
        let _ = super::client_errors::note_error(&code.name(), &reason);
        tracing::debug!(target: super::log::LOG_TARGET, %reason, "all brokers down");
    } else if let super::client_errors::LogDecision::Write { held_back } =
        super::client_errors::note_error(&code.name(), &reason)
    {
        // Repeated with every reconnect: once per interval, with a count.
        tracing::warn!(
            target: super::log::LOG_TARGET,
            code = %code.name(),
            %reason,
            held_back,
            "librdkafka error (repeats are summarised once a minute)"
        );
    }
}

/// `stats_cb`: keeps the latest JSON document.
///
/// # Safety
/// Called by librdkafka only, with the opaque of a live [`CallbackState`] and
/// `json` valid for `json_len` bytes.
pub(crate) unsafe extern "C" fn stats_cb(
    _rk: *mut rd::rd_kafka_t,
    json: *mut c_char,
    json_len: usize,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: as in `dr_msg_cb`.
    let state = unsafe { CallbackState::from_opaque(opaque) };
    if !json.is_null() {
        // SAFETY: json is valid for json_len bytes during the callback.
        let bytes = unsafe { std::slice::from_raw_parts(json.cast::<u8>(), json_len) };
        *lock(&state.statistics) = Some(Arc::from(String::from_utf8_lossy(bytes)));
    }
    // 0: we copied the document, librdkafka frees its buffer.
    0
}

/// The producers' `log_cb`: notes why a transaction failed, then logs the
/// line as [`super::log::log_cb`] does.
///
/// # Safety
/// Called by librdkafka only, on a producer whose opaque is a live
/// [`CallbackState`] (set by `Producer::new` before creation), with
/// NUL-terminated `fac` and `buf` or NULL.
pub(crate) unsafe extern "C" fn producer_log_cb(
    rk: *const rd::rd_kafka_t,
    level: c_int,
    fac: *const c_char,
    buf: *const c_char,
) {
    // SAFETY: per the contract the strings are NUL-terminated when non-NULL.
    let is_txn_error =
        !fac.is_null() && unsafe { CStr::from_ptr(fac) }.to_bytes() == TXN_ERROR_FACILITY;
    if is_txn_error && !rk.is_null() && !buf.is_null() {
        // SAFETY: rk is live during its callback; its opaque is our state.
        let opaque = unsafe { rd::rd_kafka_opaque(rk) };
        if !opaque.is_null() {
            // SAFETY: the opaque of a producer is its live CallbackState.
            let state = unsafe { CallbackState::from_opaque(opaque) };
            // SAFETY: non-NULL and NUL-terminated per the contract.
            let line = unsafe { CStr::from_ptr(buf) }.to_string_lossy();
            if let Some(name) = txn_error_name(&line) {
                // The first line says why; later ones (the abort's own
                // failure) follow from it.
                lock(&state.txn_error).get_or_insert_with(|| name.to_owned());
            }
        }
    }
    // SAFETY: the same contract as ours.
    unsafe { super::log::log_cb(rk, level, fac, buf) }
}

#[cfg(test)]
mod txn_error_tests {
    use super::txn_error_name;

    #[test]
    fn the_error_name_is_read_from_librdkafkas_line() {
        let line = "Current transaction failed in state InTransaction: Failed to add partition(s) \
                    to transaction on broker 1: Broker: Topic authorization failed \
                    (TOPIC_AUTHORIZATION_FAILED)";
        assert_eq!(txn_error_name(line), Some("TOPIC_AUTHORIZATION_FAILED"));
        let bump = "Current transaction failed in state BeginCommit: x (INVALID_PRODUCER_EPOCH, requires epoch bump)";
        assert_eq!(txn_error_name(bump), Some("INVALID_PRODUCER_EPOCH"));
        assert_eq!(txn_error_name("no parenthesis"), None);
    }
}
