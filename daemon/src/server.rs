//! The control socket: admit clients, map their segments, register topics,
//! notice when they go away, answer status requests.
//!
//! One thread accepts; each connection gets a small thread of its own that
//! spends its life blocked in `recv`. A connection that stalls therefore
//! stalls only itself, and EOF on it is the client's liveness signal.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmkafka_protocol::{
    peer_credentials, recv_message, send_message, validate_topic_name, ClientMessage,
    DaemonMessage, Hello, RecvError, RefusalCode, Refused, StatusReply, TopicAccepted,
    TopicRefused, TopicVerdict, Welcome, PROTOCOL_VERSION,
};
use shmkafka_ringbuf::Segment;
use tracing::{info, info_span, warn};

use crate::client::Client;
use crate::config::topic_allowed;
use crate::metrics::Telemetry;
use crate::registry::Registry;

/// How long a new connection may take to send its first message.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Stack of a per-connection thread: it only decodes small frames.
const CONNECTION_STACK: usize = 128 * 1024;
/// How long `accept` waits before looking at the stop flag again.
const ACCEPT_POLL_MS: u16 = 200;
/// Connections beyond `max_clients` that may be open at once (status
/// queries, clients still registering).
const EXTRA_CONNECTIONS: usize = 64;
/// Most topics one client may register (bounds the per-client table).
pub const MAX_TOPICS_PER_CLIENT: usize = 4096;

/// Who may connect and what they may write.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Admitted uids.
    pub uids: Vec<u32>,
    /// Admitted gids.
    pub gids: Vec<u32>,
    /// Topic allowlist.
    pub topics: Vec<String>,
    /// Most clients at once.
    pub max_clients: usize,
}

impl AccessPolicy {
    fn admits(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// The listening side.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    policy: Arc<Mutex<AccessPolicy>>,
    registry: Arc<Registry>,
    telemetry: Arc<Telemetry>,
    stopping: Arc<AtomicBool>,
    next_client_id: AtomicU64,
    /// Connection threads alive now.
    connections: AtomicUsize,
}

impl ControlServer {
    /// Binds the socket at `path` with `mode`, replacing a stale socket file.
    pub fn bind(
        path: &Path,
        mode: u32,
        policy: Arc<Mutex<AccessPolicy>>,
        registry: Arc<Registry>,
        telemetry: Arc<Telemetry>,
        stopping: Arc<AtomicBool>,
    ) -> io::Result<ControlServer> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another shmkafkad is listening on {}", path.display()),
                ))
            }
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
        let listener = UnixListener::bind(path)?;
        // Non-blocking: `run` polls, and a connection that vanished between
        // the poll and the accept must not block the accept thread.
        listener.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            policy,
            registry,
            telemetry,
            stopping,
            next_client_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
        })
    }

    /// Socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `stopping` is set.
    ///
    /// `accept` waits in `poll` with a timeout rather than blocking, so a
    /// stop is noticed even when the socket file was removed from under the
    /// daemon and nobody can connect to wake it.
    pub fn run(self: Arc<Self>) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ACCEPT_POLL_MS)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "poll on the control socket failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            match self.listener.accept().map(|(stream, _)| stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(stream) => {
                    if let Err(e) = stream.set_nonblocking(false) {
                        warn!(error = %e, "cannot make a connection blocking; dropped");
                        continue;
                    }
                    // Bound the threads a flood of connections can cost:
                    // registered clients plus a little room for status
                    // queries and clients in the middle of registering.
                    let limit = self
                        .policy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .max_clients
                        + EXTRA_CONNECTIONS;
                    // Relaxed: the count only bounds how many connection
                    // threads run; no memory is published through it.
                    if self.connections.load(Ordering::Relaxed) >= limit {
                        warn!(limit, "too many open control connections; refusing one");
                        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                        refuse(
                            &stream,
                            RefusalCode::TooManyClients,
                            &format!("shmkafkad has {limit} open control connections (daemon.max_clients)"),
                        );
                        continue;
                    }
                    self.connections.fetch_add(1, Ordering::Relaxed);
                    let server = Arc::clone(&self);
                    let spawned = std::thread::Builder::new()
                        .name("shmkafkad-conn".into())
                        .stack_size(CONNECTION_STACK)
                        .spawn(move || {
                            server.serve(stream);
                            server.connections.fetch_sub(1, Ordering::Relaxed);
                        });
                    if let Err(e) = spawned {
                        self.connections.fetch_sub(1, Ordering::Relaxed);
                        warn!(error = %e, "cannot start a connection thread; connection dropped");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Makes `run` notice `stopping` at once instead of at its next poll.
    pub fn wake(&self) {
        let _ = UnixStream::connect(&self.path);
    }

    fn serve(&self, stream: UnixStream) {
        let creds = match peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "SO_PEERCRED failed; connection dropped");
                return;
            }
        };
        let span = info_span!("conn", pid = creds.pid, uid = creds.uid, gid = creds.gid);
        let _entered = span.enter();
        let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(HELLO_TIMEOUT));
        let first = match recv_message::<ClientMessage>(&stream) {
            Ok(m) => m,
            Err(RecvError::Closed) => return,
            Err(e) => {
                warn!(error = %e, "malformed first message");
                refuse(
                    &stream,
                    e.refusal_code().unwrap_or(RefusalCode::Malformed),
                    &e.to_string(),
                );
                return;
            }
        };
        match first {
            (ClientMessage::StatusRequest(request), None) => {
                let body = self.telemetry.status(request.json);
                let _ = send_message(
                    &stream,
                    &DaemonMessage::StatusReply(StatusReply { body }),
                    None,
                );
            }
            (ClientMessage::Hello(hello), Some(fd)) => {
                let policy = self
                    .policy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if !policy.admits(creds.uid, creds.gid) {
                    warn!("peer not in the access list; refused");
                    refuse(
                        &stream,
                        RefusalCode::NotAuthorized,
                        &format!(
                            "uid {} / gid {} is not allowed by shmkafkad's [access] list (allowed uids {:?}, gids {:?}); \
                             run as an allowed user or join an allowed group",
                            creds.uid, creds.gid, policy.uids, policy.gids
                        ),
                    );
                    return;
                }
                if self.stopping.load(Ordering::Acquire) {
                    refuse(
                        &stream,
                        RefusalCode::ShuttingDown,
                        "shmkafkad is shutting down; retry shortly",
                    );
                    return;
                }
                self.register(stream, creds, hello, fd, &policy);
            }
            (other, _) => {
                warn!(message = ?other, "unexpected first message");
                refuse(
                    &stream,
                    RefusalCode::Malformed,
                    "expected Hello or StatusRequest first",
                );
            }
        }
    }

    fn register(
        &self,
        stream: UnixStream,
        creds: shmkafka_protocol::PeerCredentials,
        hello: Hello,
        fd: std::os::fd::OwnedFd,
        policy: &AccessPolicy,
    ) {
        if hello.protocol_version != PROTOCOL_VERSION {
            refuse(
                &stream,
                RefusalCode::UnsupportedVersion,
                &format!(
                    "client speaks protocol {}, shmkafkad speaks {PROTOCOL_VERSION}; upgrade the client library or the daemon",
                    hello.protocol_version
                ),
            );
            return;
        }
        if self.registry.len() >= policy.max_clients {
            refuse(
                &stream,
                RefusalCode::TooManyClients,
                &format!(
                    "shmkafkad already serves {} clients (daemon.max_clients)",
                    policy.max_clients
                ),
            );
            return;
        }
        let segment = match Segment::open(fd) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "segment refused");
                refuse(&stream, RefusalCode::BadSegment, &e.to_string());
                return;
            }
        };
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client::new(
            id,
            hello.client_name.clone(),
            creds.pid as u32,
            creds.uid,
            segment,
        ));
        let mut verdicts = Vec::with_capacity(hello.topics.len());
        for binding in &hello.topics {
            let verdict = authorise_topic(policy, &binding.name);
            client.bind_topic(
                binding.id,
                verdict.is_ok().then(|| Arc::from(binding.name.as_str())),
            );
            verdicts.push(TopicVerdict {
                id: binding.id,
                accepted: verdict.is_ok(),
                message: verdict.err().unwrap_or_default(),
            });
        }
        let welcome = DaemonMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            client_id: id,
            topics: verdicts,
        });
        if let Err(e) = send_message(&stream, &welcome, None) {
            warn!(error = %e, "could not answer hello");
        }
        info!(
            client = id,
            name = %hello.client_name,
            capacity = client.segment.capacity(),
            topics = hello.topics.len(),
            "client registered"
        );
        self.registry.add(Arc::clone(&client));
        self.converse(&stream, &client);
        client.mark_disconnected();
        info!(
            client = id,
            "client disconnected; draining what it committed"
        );
    }

    /// Serves topic registrations until the client hangs up.
    fn converse(&self, stream: &UnixStream, client: &Client) {
        let _ = stream.set_read_timeout(None);
        loop {
            let message = match recv_message::<ClientMessage>(stream) {
                Ok((message, None)) => message,
                Ok((_, Some(_))) => {
                    refuse(stream, RefusalCode::Malformed, "unexpected file descriptor");
                    return;
                }
                Err(RecvError::Closed) => return,
                Err(e) => {
                    warn!(client = client.id, error = %e, "protocol error; closing the control connection");
                    refuse(
                        stream,
                        e.refusal_code().unwrap_or(RefusalCode::Malformed),
                        &e.to_string(),
                    );
                    return;
                }
            };
            let reply = match message {
                ClientMessage::RegisterTopic(request) => {
                    let policy = self
                        .policy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let verdict = if request.id as usize >= MAX_TOPICS_PER_CLIENT {
                        Err(format!(
                            "topic id {} exceeds the limit of {MAX_TOPICS_PER_CLIENT}",
                            request.id
                        ))
                    } else {
                        authorise_topic(&policy, &request.name)
                    };
                    match verdict {
                        Ok(()) => {
                            client.bind_topic(request.id, Some(Arc::from(request.name.as_str())));
                            info!(client = client.id, topic = %request.name, id = request.id, "topic registered");
                            DaemonMessage::TopicAccepted(TopicAccepted { id: request.id })
                        }
                        Err(message) => {
                            warn!(client = client.id, topic = %request.name, reason = %message, "topic refused");
                            DaemonMessage::TopicRefused(TopicRefused {
                                id: request.id,
                                reason: RefusalCode::NotAuthorized,
                                message,
                            })
                        }
                    }
                }
                ClientMessage::StatusRequest(request) => DaemonMessage::StatusReply(StatusReply {
                    body: self.telemetry.status(request.json),
                }),
                ClientMessage::Hello(_) => {
                    refuse(stream, RefusalCode::Malformed, "Hello sent twice");
                    return;
                }
            };
            if send_message(stream, &reply, None).is_err() {
                return;
            }
        }
    }
}

fn authorise_topic(policy: &AccessPolicy, name: &str) -> Result<(), String> {
    validate_topic_name(name).map_err(|e| e.to_string())?;
    if topic_allowed(&policy.topics, name) {
        Ok(())
    } else {
        Err(format!(
            "topic {name:?} is not in shmkafkad's [topics] allow list"
        ))
    }
}

fn refuse(stream: &UnixStream, reason: RefusalCode, message: &str) {
    let refused = DaemonMessage::Refused(Refused {
        reason,
        message: message.to_owned(),
    });
    let _ = send_message(stream, &refused, None);
}
