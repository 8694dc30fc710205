//! Routes librdkafka's log lines into `tracing`.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, CStr};

use rdkafka_sys::bindings as rd;

/// Target of every event emitted for librdkafka, so it can be filtered on its
/// own (`RUST_LOG=librdkafka=debug`).
pub const LOG_TARGET: &str = "librdkafka";

/// librdkafka's facility for a connection attempt that failed.
const RECONNECT_FACILITY: &str = "FAIL";

/// A tracing level for a syslog level as librdkafka uses them (0 emerg .. 7
/// debug). librdkafka emits level 7 only for the contexts named in its `debug`
/// property, so those lines are wanted when they come: debug, not trace.
pub(crate) fn level_for_syslog(level: c_int) -> tracing::Level {
    match level {
        i32::MIN..=3 => tracing::Level::ERROR, // emerg, alert, crit, err
        4 => tracing::Level::WARN,             // warning
        5 | 6 => tracing::Level::INFO,         // notice, info
        _ => tracing::Level::DEBUG,            // debug
    }
}

fn lossy<'a>(ptr: *const c_char) -> Cow<'a, str> {
    if ptr.is_null() {
        return Cow::Borrowed("");
    }
    // SAFETY: non-NULL strings librdkafka passes to callbacks are
    // NUL-terminated and valid for the duration of the callback, which bounds
    // every use of the result (callers do not let it escape).
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy()
}

/// `log_cb`: called from librdkafka's own threads (we leave `log.queue` off so
/// lines appear even while nobody polls), hence no access to the poll-thread
/// state, only to `rk`.
///
/// # Safety
/// Called by librdkafka only: `rk` is a live handle or NULL, `fac` and `buf`
/// are NULL or NUL-terminated strings valid for the call.
pub(crate) unsafe extern "C" fn log_cb(
    rk: *const rd::rd_kafka_t,
    level: c_int,
    fac: *const c_char,
    buf: *const c_char,
) {
    let client = if rk.is_null() {
        Cow::Borrowed("")
    } else {
        // SAFETY: rk is live for the callback; rd_kafka_name returns a string
        // owned by it.
        lossy(unsafe { rd::rd_kafka_name(rk) })
    };
    let facility = lossy(fac);
    let message = lossy(buf);
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(target: LOG_TARGET, $level, client = %client, facility = %facility, "{message}")
        };
    }
    let level = level_for_syslog(level);
    // A failed connection (a broker down, a refused TLS handshake or
    // password) is logged under FAIL with every reconnect attempt, twice a
    // second: one line per interval. Other facilities say distinct things
    // and pass through.
    if level <= tracing::Level::WARN && facility == RECONNECT_FACILITY {
        match super::client_errors::note_log_line(&facility) {
            super::client_errors::LogDecision::HoldBack => return,
            super::client_errors::LogDecision::Write { held_back: 0 } => {}
            super::client_errors::LogDecision::Write { held_back } => {
                tracing::info!(target: LOG_TARGET, %facility, held_back, "librdkafka lines of this facility held back since the last one");
            }
        }
    }
    match level {
        tracing::Level::ERROR => emit!(tracing::Level::ERROR),
        tracing::Level::WARN => emit!(tracing::Level::WARN),
        tracing::Level::INFO => emit!(tracing::Level::INFO),
        _ => emit!(tracing::Level::DEBUG),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_levels_map() {
        assert_eq!(level_for_syslog(0), tracing::Level::ERROR);
        assert_eq!(level_for_syslog(3), tracing::Level::ERROR);
        assert_eq!(level_for_syslog(4), tracing::Level::WARN);
        assert_eq!(level_for_syslog(5), tracing::Level::INFO);
        assert_eq!(level_for_syslog(6), tracing::Level::INFO);
        assert_eq!(level_for_syslog(7), tracing::Level::DEBUG);
    }
}
