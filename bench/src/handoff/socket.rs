//! The socket variants of `handoff`: how producer daemons without shared
//! memory receive records.
//!
//! - `datagram`: a Unix datagram socket, one `send` per record, the
//!   transport of the classic producer daemons (Bruce, Dory).
//! - `stream`: a Unix stream socket carrying `[len: u32 LE | payload]`
//!   frames, written the way a well-written stream client does: frames are
//!   appended to a user-space buffer that goes out in one `write(2)` once it
//!   holds at least `--stream-batch` bytes (default [`STREAM_BATCH`], 64 KiB:
//!   ~3000 frames of 16 B, one of 64 KiB), and at the end. The consumer
//!   reads up to [`READ_BUFFER`] bytes per `read(2)` and parses the frames
//!   in place. Batching trades latency for throughput; a real
//!   client would also flush on a timer, which never fires here because
//!   the producer always has the next record ready.
//!
//! Both use the kernel's default socket buffer sizes. The producer child
//! creates a socketpair and passes the consumer's end over the control
//! socket with `SCM_RIGHTS`. Sends block while the receiver's queue is full
//! (a daemon of the classic kind would drop the message instead).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context};

use super::common::{checksum, expected_sum, pin_producer, produce_each, wait_go, Peer};
use super::ChildArgs;
use crate::fdpass;

/// Bytes a stream producer buffers before one `write(2)`, by default.
pub const STREAM_BATCH: usize = 64 << 10;
/// Bytes a stream consumer asks for per `read(2)` (at least two frames).
pub const READ_BUFFER: usize = 256 << 10;
/// Length prefix of a stream frame.
const PREFIX: usize = 4;
/// How long a blocked datagram `recv` waits before checking the producer.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// Consumer of the datagram variant: one `recv` per record.
pub fn consume_datagram(peer: &mut Peer, args: &ChildArgs) -> anyhow::Result<(u64, Duration)> {
    let receiver = UnixDatagram::from(fdpass::recv_fd(&peer.socket)?);
    // A datagram receiver is not told when its sender is gone: wake up now
    // and then to check on the producer.
    receiver
        .set_read_timeout(Some(RECV_TIMEOUT))
        .context("SO_RCVTIMEO")?;
    let mut buf = vec![0u8; args.size + 1];
    let start = peer.go()?;
    let mut sum = 0u64;
    let mut got = 0;
    while got < args.records {
        match receiver.recv(&mut buf) {
            Ok(len) => {
                ensure!(len == args.size, "datagram of {len} bytes");
                sum = sum.wrapping_add(checksum(&buf[..len]));
                got += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                peer.check()?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("recv"),
        }
    }
    Ok((sum, start.elapsed()))
}

/// Producer of the datagram variant.
pub fn produce_datagram(socket: &UnixStream, args: &ChildArgs) -> anyhow::Result<u64> {
    ensure!(args.threads == 1, "the datagram variant has one producer");
    let (sender, receiver) = UnixDatagram::pair().context("socketpair")?;
    fdpass::send_fd(socket, receiver.as_raw_fd())?;
    drop(receiver);
    wait_go(socket)?;
    pin_producer(&args.cpus, 0)?;
    let index_sum = produce_each(args.size, 0, args.records, |payload| {
        sender.send(payload).context("send")?;
        Ok(())
    })?;
    Ok(expected_sum(index_sum, args.size, args.records))
}

/// Consumer of the stream variant: large reads, frames parsed in place.
pub fn consume_stream(peer: &mut Peer, args: &ChildArgs) -> anyhow::Result<(u64, Duration)> {
    let mut reader = UnixStream::from(fdpass::recv_fd(&peer.socket)?);
    let mut buf = vec![0u8; READ_BUFFER.max(2 * (PREFIX + args.size + args.stream_batch))];
    // Unparsed bytes are buf[begin..end].
    let (mut begin, mut end) = (0usize, 0usize);
    let start = peer.go()?;
    let mut sum = 0u64;
    let mut got = 0;
    while got < args.records {
        // Every complete frame in the buffer.
        while end - begin >= PREFIX {
            let len = u32::from_le_bytes(buf[begin..begin + PREFIX].try_into().expect("4 bytes"))
                as usize;
            ensure!(len == args.size, "frame of {len} bytes");
            if end - begin < PREFIX + len {
                break;
            }
            sum = sum.wrapping_add(checksum(&buf[begin + PREFIX..begin + PREFIX + len]));
            begin += PREFIX + len;
            got += 1;
        }
        if got == args.records {
            break;
        }
        // Keep a partial frame, at the front so the largest one still fits.
        buf.copy_within(begin..end, 0);
        end -= begin;
        begin = 0;
        match reader.read(&mut buf[end..]) {
            Ok(0) => bail!("the producer closed the stream after {got} records"),
            Ok(n) => end += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read"),
        }
    }
    ensure!(begin == end, "bytes after the last record");
    Ok((sum, start.elapsed()))
}

/// Producer of the stream variant: frames batched in user space.
pub fn produce_stream(socket: &UnixStream, args: &ChildArgs) -> anyhow::Result<u64> {
    ensure!(args.threads == 1, "the stream variant has one producer");
    let len = u32::try_from(args.size).context("message size")?;
    let (mut writer, reader) = UnixStream::pair().context("socketpair")?;
    fdpass::send_fd(socket, reader.as_raw_fd())?;
    drop(reader);
    wait_go(socket)?;
    pin_producer(&args.cpus, 0)?;
    let batch_bytes = args.stream_batch.max(1);
    let mut batch = Vec::with_capacity(batch_bytes + PREFIX + args.size);
    let index_sum = produce_each(args.size, 0, args.records, |payload| {
        batch.extend_from_slice(&len.to_le_bytes());
        batch.extend_from_slice(payload);
        if batch.len() >= batch_bytes {
            writer.write_all(&batch).context("write")?;
            batch.clear();
        }
        Ok(())
    })?;
    writer.write_all(&batch).context("write")?;
    Ok(expected_sum(index_sum, args.size, args.records))
}
