//! What every hand-off variant shares: the payload and its checksum, the
//! control handshake with the producer child, waiting, pinning and CPU
//! accounting.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Sum of the payload as little-endian u64 words (and trailing bytes):
/// touches every byte, cheaply.
#[inline]
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum = 0u64;
    for w in &mut words {
        sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    for &b in words.remainder() {
        sum = sum.wrapping_add(u64::from(b));
    }
    sum
}

/// A payload of `size` bytes; the first 8 are overwritten per record with
/// its index.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(151) ^ 0x5A)
        .collect()
}

/// The checksum a consumer must arrive at for `records` payloads of `size`
/// bytes whose indices sum to `index_sum`.
pub fn expected_sum(index_sum: u64, size: usize, records: u64) -> u64 {
    index_sum.wrapping_add(checksum(&pattern(size)[8..]).wrapping_mul(records))
}

/// Produces records `first..first + count` as [`pattern`] payloads through
/// `send`; returns the sum of their indices.
pub fn produce_each(
    size: usize,
    first: u64,
    count: u64,
    mut send: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut payload = pattern(size);
    let mut sum = 0u64;
    for i in first..first + count {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        send(&payload)?;
        sum = sum.wrapping_add(i);
    }
    Ok(sum)
}

/// Waiting for space: spin briefly, then yield the CPU, so that on an
/// oversubscribed machine a waiting producer does not burn the time slice
/// of a thread that holds a claim (or of the consumer).
#[derive(Default)]
pub struct Backoff {
    spins: u32,
}

impl Backoff {
    /// Spins a little longer each time, then yields.
    pub fn snooze(&mut self) {
        if self.spins < 6 {
            for _ in 0..1 << self.spins {
                std::hint::spin_loop();
            }
            self.spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Idle polls of a consumer between two checks that the producer lives.
const IDLE_CHECK_EVERY: u32 = 1 << 16;
/// How long a consumer waits for missing records after the producer exited
/// successfully before it reports them lost.
const GRACE_AFTER_EXIT: Duration = Duration::from_secs(1);

/// The producer child as the consumer (parent) sees it: its process and the
/// control socket.
pub struct Peer {
    /// The child process.
    pub child: Child,
    /// The control socket (fd passing, "go", the child's report).
    pub socket: UnixStream,
    idle: u32,
    exited_at: Option<Instant>,
}

impl Peer {
    /// Wraps a child started by [`crate::fdpass::spawn_self`].
    pub fn new(child: Child, socket: UnixStream) -> Peer {
        Peer {
            child,
            socket,
            idle: 0,
            exited_at: None,
        }
    }

    /// Tells the child to start producing; returns the start of the clock.
    pub fn go(&self) -> anyhow::Result<Instant> {
        (&self.socket).write_all(b"G").context("go")?;
        Ok(Instant::now())
    }

    /// Called by a consumer that found nothing to read: spins, and every so
    /// often checks that the producer can still deliver (so a crashed child
    /// fails the measurement instead of hanging it).
    pub fn idle(&mut self) -> anyhow::Result<()> {
        self.idle = self.idle.wrapping_add(1);
        if self.idle.is_multiple_of(IDLE_CHECK_EVERY) {
            self.check()?;
        }
        std::hint::spin_loop();
        Ok(())
    }

    /// Fails if the producer died, or exited a while ago while records are
    /// still missing.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(at) = self.exited_at {
            if at.elapsed() > GRACE_AFTER_EXIT {
                bail!("the producer exited but records are missing");
            }
            return Ok(());
        }
        if let Some(status) = self.child.try_wait().context("wait child")? {
            if !status.success() {
                bail!("producer child failed: {status}");
            }
            self.exited_at = Some(Instant::now());
        }
        Ok(())
    }
}

/// Child side of [`Peer::go`].
pub fn wait_go(mut socket: &UnixStream) -> anyhow::Result<()> {
    let mut go = [0u8; 1];
    socket.read_exact(&mut go).context("wait for go")?;
    Ok(())
}

/// Allocates the memfd's pages up front so page faults are not measured.
pub fn prefault(fd: impl AsFd, len: i64) {
    // Best effort: an error only means first-touch faults are measured.
    let _ = nix::fcntl::fallocate(
        fd.as_fd().as_raw_fd(),
        nix::fcntl::FallocateFlags::empty(),
        0,
        len,
    );
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .context("sched_getaffinity")?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("cpu index")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .context("sched_setaffinity")?;
    Ok(())
}

/// Pins producer thread `thread` to one of `cpus`, round robin (none: no
/// pinning).
pub fn pin_producer(cpus: &[usize], thread: usize) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    pin_current_thread(cpus[thread % cpus.len()])
}

/// User + system CPU time of this process so far, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out-parameter for getrusage, which fills
    // it completely on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised (it was
    // zeroed before, too).
    let usage = unsafe { usage.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_touches_every_byte() {
        let mut bytes = pattern(4099);
        let before = checksum(&bytes);
        for i in [0, 7, 8, 4095, 4098] {
            bytes[i] ^= 1;
            assert_ne!(checksum(&bytes), before, "byte {i}");
            bytes[i] ^= 1;
        }
    }

    #[test]
    fn produce_each_matches_expected_sum() {
        let mut sum = 0u64;
        let index_sum = produce_each(64, 10, 5, |p| {
            sum = sum.wrapping_add(checksum(p));
            Ok(())
        })
        .unwrap();
        assert_eq!(index_sum, 10 + 11 + 12 + 13 + 14);
        assert_eq!(sum, expected_sum(index_sum, 64, 5));
    }
}
