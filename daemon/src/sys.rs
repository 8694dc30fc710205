//! The few system calls nix does not wrap.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Most supplementary groups a process can have (`NGROUPS_MAX` on Linux);
/// bounds what [`peer_groups`] allocates for one peer.
const NGROUPS_MAX: usize = 65536;

/// The supplementary groups of a Unix socket's peer (`SO_PEERGROUPS`), as
/// they were when it connected. `None` if the kernel cannot tell (before
/// Linux 4.13).
pub fn peer_groups(socket: std::os::fd::BorrowedFd<'_>) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    // Most processes have a handful of groups; one retry with the size the
    // kernel asks for covers the rest.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is valid for writes of `len` bytes, and the kernel
        // writes at most `len` bytes and stores the size it used (or the
        // size it needs, with ERANGE) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count.min(groups.len()));
            return Some(groups);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE)
            || count > NGROUPS_MAX
        {
            return None;
        }
        groups = vec![0; count];
    }
    None
}
