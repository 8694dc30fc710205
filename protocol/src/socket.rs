//! Sending and receiving framed messages over a blocking Unix stream socket,
//! with the segment fd passed as `SCM_RIGHTS`, and reading the peer's
//! credentials.
//!
//! Timeouts are the caller's: set them on the stream
//! (`set_read_timeout`/`set_write_timeout`) and they surface here as
//! `TimedOut`. A read timeout bounds the wait for a frame to begin and then
//! the whole rest of the frame, not each read: a peer that trickles a byte
//! at a time cannot stretch one frame beyond it. The timeout belongs to the
//! socket, so two threads must not receive on one socket (or its clones)
//! at once. The helpers expect a blocking socket; on a non-blocking one
//! "would block" is reported as `TimedOut` too.
//!
//! `recv_message` reads exactly one frame and never a byte of the next, so it
//! keeps no state between calls and a descriptor can never be attributed to
//! the wrong frame: the kernel delivers `SCM_RIGHTS` with the bytes of the
//! `sendmsg` that carried it, and those belong to the frame being read.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};
use thiserror::Error;

use crate::codec::{
    decode_frame, encode_frame, frame_len, DecodeError, EncodeError, WireMessage, LENGTH_PREFIX_LEN,
};
use crate::message::RefusalCode;

/// Most descriptors the kernel passes in one `SCM_RIGHTS` message
/// (`SCM_MAX_FD` in `include/net/scm.h`). Sizing the control buffer for this
/// many means the kernel never truncates the descriptors a hostile peer sends,
/// so every one of them is received, owned and closed here instead of leaking.
const SCM_MAX_FD: usize = 253;

/// Why a message could not be sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The message cannot be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] EncodeError),
    /// The message must travel with a descriptor and none was given.
    #[error("message {tag:#06x} must be sent with a file descriptor")]
    MissingFd {
        /// Tag of the message.
        tag: u16,
    },
    /// A descriptor was given for a message that does not carry one.
    #[error("message {tag:#06x} does not carry a file descriptor")]
    UnexpectedFd {
        /// Tag of the message.
        tag: u16,
    },
    /// The write timeout expired. With `sent > 0` the peer holds part of a
    /// frame and the connection must be dropped.
    #[error("timed out after sending {sent} of {total} bytes")]
    TimedOut {
        /// Bytes of the frame already sent.
        sent: usize,
        /// Size of the frame.
        total: usize,
    },
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Disconnected,
    /// Any other socket error.
    #[error("send failed: {0}")]
    Io(#[source] io::Error),
}

/// Why a message could not be received.
#[derive(Debug, Error)]
pub enum RecvError {
    /// The peer closed the connection between frames: a clean end.
    #[error("peer closed the connection")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("peer closed the connection after {received} bytes of a frame")]
    ClosedMidFrame {
        /// Bytes of the frame received.
        received: usize,
    },
    /// The read timeout expired. With `received == 0` nothing was consumed and
    /// the call may be repeated; otherwise the stream is out of step and the
    /// connection must be dropped.
    #[error("timed out after receiving {received} bytes of a frame")]
    TimedOut {
        /// Bytes of the frame received before the timeout.
        received: usize,
    },
    /// The frame is malformed. Unless the error is `FrameTooLarge` or
    /// `FrameTooSmall`, the whole frame was consumed.
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    /// More than one descriptor came with the frame; all were closed.
    #[error("{count} file descriptors came with one frame, at most one is allowed")]
    TooManyFds {
        /// Number of descriptors received.
        count: usize,
    },
    /// The message must come with a descriptor and none came.
    #[error("message {tag:#06x} came without its file descriptor")]
    MissingFd {
        /// Tag of the message.
        tag: u16,
    },
    /// A descriptor came with a message that does not carry one; it was
    /// closed.
    #[error("message {tag:#06x} came with an unexpected file descriptor")]
    UnexpectedFd {
        /// Tag of the message.
        tag: u16,
    },
    /// The kernel truncated the control data (`MSG_CTRUNC`). Should not happen
    /// with the buffer sized for `SCM_MAX_FD`; descriptors that did arrive may
    /// be leaked because nix does not expose truncated control data.
    #[error("control data was truncated by the kernel")]
    ControlTruncated,
    /// Any other socket error.
    #[error("receive failed: {0}")]
    Io(#[source] io::Error),
}

impl RecvError {
    /// The refusal a daemon sends before closing a connection that failed
    /// this way, or `None` when the peer is gone or out of step and there is
    /// no point in answering.
    pub fn refusal_code(&self) -> Option<RefusalCode> {
        match self {
            RecvError::Decode(err) => Some(err.refusal_code()),
            RecvError::MissingFd { .. } => Some(RefusalCode::BadSegment),
            RecvError::TooManyFds { .. } | RecvError::UnexpectedFd { .. } => {
                Some(RefusalCode::Malformed)
            }
            RecvError::Closed
            | RecvError::ClosedMidFrame { .. }
            | RecvError::TimedOut { .. }
            | RecvError::ControlTruncated
            | RecvError::Io(_) => None,
        }
    }
}

/// Sends `msg` as one frame, with `fd` attached to its first byte.
///
/// `fd` must be `Some` exactly when the message carries one (`Hello`). Uses
/// `MSG_NOSIGNAL`: a client library loaded into a C or Python program must not
/// kill it with `SIGPIPE` when the daemon goes away.
pub fn send_message<M: WireMessage>(
    stream: &UnixStream,
    msg: &M,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), SendError> {
    let tag = msg.tag();
    match (msg.carries_fd(), fd.is_some()) {
        (true, false) => return Err(SendError::MissingFd { tag }),
        (false, true) => return Err(SendError::UnexpectedFd { tag }),
        _ => {}
    }
    let frame = encode_frame(msg)?;
    let fds: Vec<RawFd> = fd.iter().map(AsRawFd::as_raw_fd).collect();
    let mut sent = 0;
    while sent < frame.len() {
        let iov = [IoSlice::new(&frame[sent..])];
        // The descriptor rides with the first bytes only; once any byte has
        // gone, the kernel has it.
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !fds.is_empty() {
            &[ControlMessage::ScmRights(&fds)]
        } else {
            &[]
        };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                return Err(SendError::TimedOut {
                    sent,
                    total: frame.len(),
                })
            }
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(SendError::Disconnected),
            Err(errno) => return Err(SendError::Io(errno.into())),
        }
    }
    Ok(())
}

/// Receives one whole frame and the descriptor that came with it.
///
/// The descriptor is `Some` exactly when the message carries one (`Hello`);
/// any other combination is an error, and every descriptor received is
/// closed on error. Descriptors are received with `MSG_CMSG_CLOEXEC` so they
/// do not leak into children the daemon spawns.
pub fn recv_message<M: WireMessage>(
    stream: &UnixStream,
) -> Result<(M, Option<OwnedFd>), RecvError> {
    let mut fd_reader = FdReader::new(stream)?;

    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    fd_reader.read_exact(&mut prefix, 0)?;
    // Checked before allocating: a hostile length costs nothing.
    let total = frame_len(prefix)?;
    let mut frame = vec![0u8; total];
    frame[..LENGTH_PREFIX_LEN].copy_from_slice(&prefix);
    fd_reader.read_exact(&mut frame[LENGTH_PREFIX_LEN..], LENGTH_PREFIX_LEN)?;

    let mut fds = fd_reader.into_fds()?;
    if fds.len() > 1 {
        return Err(RecvError::TooManyFds { count: fds.len() });
    }
    let (msg, consumed) = decode_frame::<M>(&frame)?;
    debug_assert_eq!(consumed, total, "frame_len and decode_frame disagree");
    let fd = fds.pop();
    match (msg.carries_fd(), fd.is_some()) {
        (true, false) => Err(RecvError::MissingFd { tag: msg.tag() }),
        (false, true) => Err(RecvError::UnexpectedFd { tag: msg.tag() }),
        _ => Ok((msg, fd)),
    }
}

/// Reads exact byte counts with `recvmsg`, collecting every descriptor that
/// arrives on the way as an `OwnedFd` so that none can leak.
struct FdReader<'s> {
    stream: &'s UnixStream,
    /// Control buffer, reused for every `recvmsg` of the frame.
    cmsg: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// The stream's read timeout as the caller set it, and when the frame
    /// must be complete by it.
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Whether the socket's timeout was shortened for the frame's rest.
    shortened: bool,
}

impl<'s> FdReader<'s> {
    fn new(stream: &'s UnixStream) -> Result<Self, RecvError> {
        // Room for the kernel's maximum of descriptors plus the credentials
        // and pidfd the kernel adds if the daemon enables SO_PASSCRED or
        // SO_PASSPIDFD; those precede SCM_RIGHTS in the buffer.
        let cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD], libc::ucred, RawFd);
        let timeout = stream.read_timeout().map_err(RecvError::Io)?;
        Ok(FdReader {
            stream,
            cmsg,
            fds: Vec::new(),
            timeout,
            deadline: None,
            shortened: false,
        })
    }

    /// Before every read after the frame's first bytes: the socket waits
    /// only for what is left of the frame's time, counted from those first
    /// bytes. Waiting for a frame to begin keeps the caller's full timeout
    /// (a frame that starts late but arrives whole is read whole).
    fn limit_wait(&mut self, received: usize) -> Result<(), RecvError> {
        let Some(timeout) = self.timeout else {
            return Ok(());
        };
        if received == 0 {
            return Ok(());
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RecvError::TimedOut { received });
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(RecvError::Io)?;
        self.shortened = true;
        Ok(())
    }

    /// Fills `buf`. `frame_offset` is where `buf` starts in the frame, for
    /// error reports.
    fn read_exact(&mut self, buf: &mut [u8], frame_offset: usize) -> Result<(), RecvError> {
        let mut filled = 0;
        while filled < buf.len() {
            let received = frame_offset + filled;
            self.limit_wait(received)?;
            let mut iov = [IoSliceMut::new(&mut buf[filled..])];
            let result = recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut self.cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let msg = match result {
                Ok(msg) => msg,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(RecvError::TimedOut { received }),
                Err(Errno::ECONNRESET) if received == 0 => return Err(RecvError::Closed),
                Err(Errno::ECONNRESET) => return Err(RecvError::ClosedMidFrame { received }),
                Err(errno) => return Err(RecvError::Io(errno.into())),
            };
            let cmsgs = msg.cmsgs().map_err(|_| RecvError::ControlTruncated)?;
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
                    for raw in raw_fds {
                        // SAFETY: the kernel has just installed `raw` in this
                        // process's descriptor table for this recvmsg call;
                        // nothing else knows its number, so this is its only
                        // owner.
                        self.fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
            match msg.bytes {
                0 if received == 0 => return Err(RecvError::Closed),
                0 => return Err(RecvError::ClosedMidFrame { received }),
                n => filled += n,
            }
        }
        Ok(())
    }

    /// The descriptors received, with the caller's read timeout back in
    /// place.
    fn into_fds(mut self) -> Result<Vec<OwnedFd>, RecvError> {
        self.restore_timeout()?;
        Ok(std::mem::take(&mut self.fds))
    }

    fn restore_timeout(&mut self) -> Result<(), RecvError> {
        if self.shortened {
            self.stream
                .set_read_timeout(self.timeout)
                .map_err(RecvError::Io)?;
            self.shortened = false;
        }
        Ok(())
    }
}

impl Drop for FdReader<'_> {
    /// A frame that failed part-way leaves the caller's timeout in place too.
    fn drop(&mut self) {
        let _ = self.restore_timeout();
    }
}

/// Credentials of the process at the other end of a Unix socket, as the
/// kernel recorded them when the connection was made (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Process id of the peer at `connect` time. It can be reused once that
    /// process exits, so it identifies the peer only while the connection
    /// is open.
    pub pid: libc::pid_t,
    /// Effective user id of the peer.
    pub uid: libc::uid_t,
    /// Effective group id of the peer.
    pub gid: libc::gid_t,
}

/// Reads the peer's credentials with `SO_PEERCRED`. Unlike fields in `Hello`,
/// these come from the kernel and cannot be forged by the peer.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<PeerCredentials> {
    let creds = getsockopt(stream, sockopt::PeerCredentials)?;
    Ok(PeerCredentials {
        pid: creds.pid(),
        uid: creds.uid(),
        gid: creds.gid(),
    })
}
