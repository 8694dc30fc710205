//! The control connection to the daemon: register the segment, register
//! topics, notice when the daemon goes away and register again when it is
//! back.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmkafka_protocol::{
    connect, recv_message, send_message, ClientMessage, DaemonMessage, Hello, RegisterTopic,
    TopicBinding, PROTOCOL_VERSION,
};
use shmkafka_ringbuf::Segment;

use crate::error::Error;

/// How long to wait for the daemon's answer to a request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted registration of our segment.
pub(crate) struct Connection {
    stream: UnixStream,
    /// Daemon-assigned id, for logs.
    pub(crate) client_id: u64,
}

/// Connects, passes the segment and the topics already in use, and waits for
/// the verdict.
pub(crate) fn register(
    path: &Path,
    segment: &Segment,
    client_name: &str,
    topics: &[TopicBinding],
) -> Result<Connection, Error> {
    let stream = connect(Some(path))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let hello = ClientMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_pid: std::process::id(),
        client_name: client_name.to_owned(),
        topics: topics.to_vec(),
    });
    send_message(&stream, &hello, Some(segment.fd()))?;
    match recv_message::<DaemonMessage>(&stream)?.0 {
        DaemonMessage::Welcome(welcome) => Ok(Connection {
            stream,
            client_id: welcome.client_id,
        }),
        DaemonMessage::Refused(refused) => Err(Error::Refused {
            path: path.to_owned(),
            reason: refused.reason,
            message: refused.message,
        }),
        other => Err(Error::Protocol(format!(
            "unexpected answer to hello: {other:?}"
        ))),
    }
}

impl Connection {
    /// Registers topic `name` under `id`.
    pub(crate) fn register_topic(&self, id: u32, name: &str) -> Result<(), Error> {
        let request = ClientMessage::RegisterTopic(RegisterTopic {
            id,
            name: name.to_owned(),
        });
        send_message(&self.stream, &request, None)?;
        match recv_message::<DaemonMessage>(&self.stream)?.0 {
            DaemonMessage::TopicAccepted(a) if a.id == id => Ok(()),
            DaemonMessage::TopicRefused(r) => Err(Error::TopicRefused {
                topic: name.to_owned(),
                reason: r.reason,
                message: r.message,
            }),
            DaemonMessage::Refused(_) => Err(Error::Disconnected),
            other => Err(Error::Protocol(format!(
                "unexpected answer to topic registration: {other:?}"
            ))),
        }
    }

    /// Whether the daemon end is still open: waits up to `timeout` for a
    /// hang-up. Unsolicited data (the daemon only sends `Refused` unasked, as
    /// it shuts down) also counts as closed.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(_) => false,
            Ok(_) => {
                let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    return true;
                }
                // Readable: EOF, or a message nobody asked for. A reply to a
                // request in flight would be consumed by the requester, which
                // holds the connection lock; we peek without taking it.
                use nix::sys::socket::{recv, MsgFlags};
                let mut byte = [0u8; 1];
                matches!(
                    recv(
                        self.stream.as_raw_fd(),
                        &mut byte,
                        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
                    ),
                    Ok(0)
                )
            }
        }
    }
}

/// The socket path this client uses: explicit, else `$SHMKAFKA_SOCKET`, else
/// the default.
pub(crate) fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    shmkafka_protocol::socket_path(explicit)
}
