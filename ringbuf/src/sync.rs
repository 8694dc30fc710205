//! The one place atomics and futexes come from.
//!
//! Under `cfg(loom)` the atomics are loom's, so the model checker sees every
//! access of the ring protocol; the futex calls become yields, because loom
//! cannot model a kernel wait queue (the protocol never relies on a wake-up
//! for correctness, only for latency: every wait has a timeout or a re-check).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

/// Blocks while `*word == expected`, for at most `timeout`.
///
/// Spurious returns are allowed; callers re-check their condition. The futex
/// is a shared (not `FUTEX_PRIVATE_FLAG`) one, because the word lives in a
/// mapping shared between processes.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, 4-byte aligned atomic for the duration of the
    // call; FUTEX_WAIT only reads it. `ts_ptr` is null or points at a local
    // timespec that outlives the call. Errors (EAGAIN when the value already
    // changed, EINTR, ETIMEDOUT) all mean "re-check", so they are ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes up to `count` waiters blocked on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE does not access the word's memory beyond using its
    // address as a key; the address is valid for the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
    }
}

#[cfg(loom)]
pub(crate) fn futex_wait(_word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) {
    loom::thread::yield_now();
}

#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32, _count: i32) {}

/// A hint inside spin loops; a real yield under loom so models terminate.
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
