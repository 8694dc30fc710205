//! Child processes that hand a memfd to their parent, as a shmkafka client
//! hands its segment to the daemon: over a Unix socketpair with
//! `SCM_RIGHTS`. The child inherits its end of the socketpair (its number
//! travels in an environment variable); the same socket then carries a few
//! control bytes both ways.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Environment variable holding the child's socket fd number.
pub const SOCKET_ENV: &str = "SHMKAFKA_BENCH_SOCKET";

/// Runs this executable again with `args`, handing it one end of a
/// socketpair; returns the child and the parent's end.
pub fn spawn_self(args: &[String]) -> anyhow::Result<(Child, UnixStream)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    // Only this end survives the exec.
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).context("clear CLOEXEC")?;
    let child = Command::new(std::env::current_exe().context("current_exe")?)
        .args(args)
        .env(SOCKET_ENV, theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn child")?;
    drop(theirs);
    Ok((child, UnixStream::from(ours)))
}

/// The socket a child inherited from [`spawn_self`].
pub fn child_socket() -> anyhow::Result<UnixStream> {
    let fd: RawFd = std::env::var(SOCKET_ENV)
        .context("not started by spawn_self")?
        .parse()
        .context("socket fd number")?;
    if fcntl(fd, FcntlArg::F_GETFD).is_err() {
        bail!("inherited socket fd {fd} is not open");
    }
    // SAFETY: the parent created this fd for us without CLOEXEC and checked
    // above to be open; nothing else in this process owns it.
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Sends `fd` over `socket` with `SCM_RIGHTS`.
pub fn send_fd(socket: &UnixStream, fd: RawFd) -> anyhow::Result<()> {
    let fds = [fd];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("sendmsg(SCM_RIGHTS)")?;
    Ok(())
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(socket: &UnixStream) -> anyhow::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("recvmsg")?;
    for cmsg in msg.cmsgs().context("control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd in our table for this
                // message; we are its only owner.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("peer sent no fd")
}
