//! Parking one consumer thread on many rings at once.

use std::time::Duration;

use crate::consumer::RingConsumer;

/// `futex_waitv(2)`, Linux 5.16+; the same number on every architecture that
/// uses the generic syscall table (x86_64 and aarch64 included).
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// Waiter flag: 32-bit futex word (`FUTEX2_SIZE_U32`), shared (not private).
const FUTEX2_SIZE_U32: u32 = 0x02;
/// The most waiters the kernel accepts in one call.
const FUTEX_WAITV_MAX: usize = 128;

#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// Sleeps until a producer of any of `consumers` commits a record, or
/// `timeout` passes. Returns at once if a record is already waiting.
///
/// Uses `futex_waitv` over the rings' park words (up to 128; beyond that, or
/// where the call is unavailable, the timeout bounds the sleep).
pub fn park_any(consumers: &[&RingConsumer], timeout: Duration) {
    for consumer in consumers {
        consumer.announce_park();
    }
    // One heavy barrier covers every ring (see `sync::consumer_barrier`).
    let barriered = crate::sync::consumer_barrier();
    let timeout = if barriered {
        timeout
    } else {
        timeout.min(crate::sync::UNBARRIERED_PARK_LIMIT)
    };
    if !consumers.iter().all(|c| c.withdraw_if_ready()) {
        for consumer in consumers {
            consumer.finish_park();
        }
        return;
    }
    let waiters: Vec<FutexWaitv> = consumers
        .iter()
        .take(FUTEX_WAITV_MAX)
        .map(|c| FutexWaitv {
            val: 1,
            uaddr: c.park_word().as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-parameter for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let nanos = now.tv_nsec as u128 + timeout.subsec_nanos() as u128;
    let deadline = libc::timespec {
        tv_sec: now.tv_sec
            + timeout.as_secs() as libc::time_t
            + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    };
    if waiters.is_empty() {
        std::thread::sleep(timeout);
    } else {
        // SAFETY: `waiters` is a live array of `waiters.len()` (<= 128)
        // futex_waitv entries whose addresses point at the consumers' park
        // words, which outlive the call; `deadline` outlives the call. Any
        // error (EAGAIN: a word changed, ETIMEDOUT, ENOSYS on old kernels)
        // just ends the sleep early, which callers tolerate.
        let rc = unsafe {
            libc::syscall(
                SYS_FUTEX_WAITV,
                waiters.as_ptr(),
                waiters.len() as libc::c_uint,
                0 as libc::c_uint,
                &deadline as *const libc::timespec,
                libc::CLOCK_MONOTONIC,
            )
        };
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }
    for consumer in consumers {
        consumer.finish_park();
    }
}
