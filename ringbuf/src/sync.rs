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
loom::lazy_static! {
    /// Wake-ups issued in the current loom execution.
    static ref FUTEX_WAKES: loom::sync::atomic::AtomicUsize =
        loom::sync::atomic::AtomicUsize::new(0);
}

/// Under loom a wake-up wakes nobody (waits are yields); it is counted, so
/// a model can check that whoever had to wake a sleeper did.
#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32, _count: i32) {
    FUTEX_WAKES.fetch_add(1, Ordering::SeqCst);
}

/// Loom models only: wake-ups issued so far in this execution.
#[cfg(loom)]
#[doc(hidden)]
pub fn futex_wakes() -> usize {
    FUTEX_WAKES.load(Ordering::SeqCst)
}

/// The wake-up handshake between a committing producer and a parking
/// consumer is a Dekker pattern: the producer stores a record's state word
/// then reads `consumer_parked`; the consumer stores `consumer_parked` then
/// reads the state word. Each side needs a full barrier between its store
/// and its load, or both may miss the other's store and the consumer sleeps
/// on a committed record.
///
/// The producer commits millions of times a second; the consumer parks only
/// after it found nothing to do for a while. So the barrier is made
/// asymmetric (as Folly's `asymmetricLightBarrier`/`HeavyBarrier`): producer
/// processes register with `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)`
/// and pay only a compiler fence; the consumer, before it reads the state
/// words, issues `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a
/// full barrier on every CPU currently running a registered process. A
/// producer that could not register keeps the SeqCst fence. Under loom both
/// sides use SeqCst fences (loom cannot model membarrier), which checks the
/// handshake itself.
#[cfg(not(loom))]
mod membarrier {
    use std::sync::OnceLock;

    const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
    const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

    fn membarrier(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes two integers (command, flags) and touches
        // no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0) == 0 }
    }

    /// Registers this process for expedited global barriers (once); true if
    /// the kernel accepted it.
    pub(crate) fn register_light_side() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| membarrier(CMD_REGISTER_GLOBAL_EXPEDITED))
    }

    /// Runs a full barrier on every CPU running a registered process.
    pub(crate) fn heavy() -> bool {
        membarrier(CMD_GLOBAL_EXPEDITED)
    }
}

/// Whether producers in this process may use the light side of the wake-up
/// barrier (see [`membarrier`]).
pub(crate) fn producer_may_use_light_barrier() -> bool {
    #[cfg(loom)]
    return false;
    #[cfg(not(loom))]
    membarrier::register_light_side()
}

/// The producer's side of the wake-up handshake, between its commit store
/// and its load of `consumer_parked`.
#[inline]
pub(crate) fn producer_barrier(light: bool) {
    if light {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The consumer's side, between its store of `consumer_parked` and its load
/// of the state words. Returns false if the heavy barrier is unavailable;
/// the caller then bounds its sleep, because a producer on the light side
/// may miss the parked flag.
pub(crate) fn consumer_barrier() -> bool {
    fence(Ordering::SeqCst);
    #[cfg(loom)]
    return true;
    #[cfg(not(loom))]
    membarrier::heavy()
}

/// Longest sleep of a consumer whose heavy barrier failed: a wake-up may be
/// lost, so it polls at this interval instead.
pub(crate) const UNBARRIERED_PARK_LIMIT: Duration = Duration::from_millis(1);

/// A hint inside spin loops; a real yield under loom so models terminate.
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
