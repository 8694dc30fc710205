//! The control socket: admit clients, map their segments, register topics,
//! notice when they go away, answer status requests.
//!
//! One thread accepts; each connection gets a small thread of its own that
//! spends its life blocked in `recv`. A connection that stalls therefore
//! stalls only itself, and EOF on it is the client's liveness signal.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmkafka_protocol::{
    peer_credentials, recv_message, send_message, validate_topic_name, ClientMessage,
    DaemonMessage, Hello, RecvError, RefusalCode, Refused, StatusReply, TopicAccepted,
    TopicRefused, TopicVerdict, Welcome, PROTOCOL_VERSION,
};
use shmkafka_ringbuf::layout::HEADER_SIZE;
use shmkafka_ringbuf::Segment;
use tracing::{info, info_span, warn};

use crate::client::Client;
pub use crate::client::MAX_TOPICS_PER_CLIENT;
use crate::config::{topic_allowed, LimitsSection};
use crate::metrics::Telemetry;
use crate::registry::{Quota, QuotaError, Registry};
use crate::socket_path::SocketPathError;

/// Stack of a per-connection thread: it only decodes small frames.
const CONNECTION_STACK: usize = 128 * 1024;
/// How long `accept` waits before looking at the stop flag again.
const ACCEPT_POLL_MS: u16 = 200;
/// Connections of admitted peers beyond `max_clients` that may be open at
/// once (status queries, clients still registering).
const EXTRA_CONNECTIONS: usize = 64;
/// How long a refusal may take to write before the connection is dropped:
/// refusals at accept are written by the accept thread itself.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// At most one log line per peer uid and kind of refusal per this
/// interval; the line carries how many were not logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Peers (uid, kind) whose refusals are remembered for rate limiting;
/// beyond it, entries older than the interval are forgotten.
const REFUSAL_LOG_PEERS: usize = 4096;

/// Connections and registrations refused since the daemon started (access
/// list, connection budgets, quotas, malformed handshakes); for status and
/// metrics.
pub static REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Who may connect and what they may write.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Admitted uids.
    pub uids: Vec<u32>,
    /// Admitted gids (primary or supplementary).
    pub gids: Vec<u32>,
    /// Topic allowlist.
    pub topics: Vec<String>,
    /// Most clients at once.
    pub max_clients: usize,
    /// Per-uid and total bounds.
    pub limits: LimitsSection,
}

impl AccessPolicy {
    fn admits(&self, peer: &Peer) -> bool {
        self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
            || peer.groups.iter().any(|g| self.gids.contains(g))
    }

    fn quota(&self) -> Quota {
        Quota {
            max_clients: self.max_clients,
            rings_per_uid: self.limits.max_rings_per_uid,
            bytes_per_uid: self.limits.max_mapped_bytes_per_uid,
            bytes_total: self.limits.max_mapped_bytes,
        }
    }
}

/// A connected peer as the kernel describes it.
#[derive(Debug, Clone)]
struct Peer {
    pid: i32,
    uid: u32,
    gid: u32,
    /// Supplementary groups (`SO_PEERGROUPS`; empty if the kernel cannot say).
    groups: Vec<u32>,
}

/// Open control connections, counted before a connection gets a thread.
/// Invariant: `admitted` is the sum of `by_uid`.
#[derive(Debug, Default)]
struct Connections {
    admitted: usize,
    by_uid: HashMap<u32, usize>,
    /// Connections of peers off the access list (status queries only).
    unauthenticated: usize,
}

/// What a connection counts against; given back when its thread ends.
struct ConnectionSlot<'a> {
    server: &'a ControlServer,
    uid: Option<u32>,
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.server.open();
        match self.uid {
            Some(uid) => {
                open.admitted -= 1;
                if let Some(n) = open.by_uid.get_mut(&uid) {
                    *n -= 1;
                    if *n == 0 {
                        open.by_uid.remove(&uid);
                    }
                }
            }
            None => open.unauthenticated -= 1,
        }
    }
}

/// Rate limit of refusal log lines: per peer uid and kind of refusal, one
/// line per [`REFUSAL_LOG_INTERVAL`] carrying the count since the last.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Per (uid, kind): when a line was last logged, and the refusals since.
    peers: Mutex<HashMap<RefusalKey, (Instant, u64)>>,
}

/// A peer uid and the kind of refusal.
type RefusalKey = (u32, &'static str);

impl RefusalLog {
    /// Counts a refusal; `Some(refusals not logged since the last line)`
    /// when this one should be logged.
    fn note(&self, uid: u32, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= REFUSAL_LOG_PEERS && !peers.contains_key(&(uid, kind)) {
            peers.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_INTERVAL);
        }
        match peers.get_mut(&(uid, kind)) {
            Some((at, suppressed)) if now.duration_since(*at) < REFUSAL_LOG_INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                if peers.len() < REFUSAL_LOG_PEERS {
                    peers.insert((uid, kind), (now, 0));
                }
                Some(0)
            }
        }
    }
}

/// Refused topic names logged one by one per connection; a client asking
/// for more is summarised per uid (see `log_topic_refusal`).
const TOPIC_NAMES_LOGGED_PER_CONNECTION: usize = 64;

/// The listening side.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file bound, so that the stop removes
    /// that file and not whatever replaced it meanwhile.
    bound_file: Option<(u64, u64)>,
    policy: Arc<Mutex<AccessPolicy>>,
    registry: Arc<Registry>,
    telemetry: Arc<Telemetry>,
    stopping: Arc<AtomicBool>,
    next_client_id: AtomicU64,
    /// Connections open now (each has a thread).
    connections: Mutex<Connections>,
    refusals: RefusalLog,
}

impl ControlServer {
    /// Binds the socket at `path` with `mode`, replacing a stale socket file
    /// and nothing else (see [`crate::socket_path`]).
    pub fn bind(
        path: &Path,
        mode: u32,
        policy: Arc<Mutex<AccessPolicy>>,
        registry: Arc<Registry>,
        telemetry: Arc<Telemetry>,
        stopping: Arc<AtomicBool>,
    ) -> io::Result<ControlServer> {
        crate::socket_path::prepare(path).map_err(io::Error::other)?;
        let listener = UnixListener::bind(path).map_err(|e| {
            io::Error::other(SocketPathError::io(path, "bind the control socket")(e))
        })?;
        // Non-blocking: `run` polls, and a connection that vanished between
        // the poll and the accept must not block the accept thread.
        listener.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            io::Error::other(SocketPathError::io(path, "set the socket's permissions")(e))
        })?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            bound_file: std::fs::symlink_metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino())),
            policy,
            registry,
            telemetry,
            stopping,
            next_client_id: AtomicU64::new(1),
            connections: Mutex::new(Connections::default()),
            refusals: RefusalLog::default(),
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
                Ok(stream) => Arc::clone(&self).admit_connection(stream),
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let still_ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
            .is_some_and(|file| Some(file) == self.bound_file);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy(&self) -> AccessPolicy {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the peer's credentials, then gives the connection a thread if
    /// its uid (or, for peers off the access list, the small shared budget
    /// for status queries) has room; refuses it otherwise. Runs on the
    /// accept thread: nothing here waits on the peer for long.
    fn admit_connection(self: Arc<Self>, stream: UnixStream) {
        if let Err(e) = stream.set_nonblocking(false) {
            warn!(error = %e, "cannot make a connection blocking; dropped");
            return;
        }
        let peer = match peer_credentials(&stream) {
            Ok(c) => Peer {
                pid: c.pid,
                uid: c.uid,
                gid: c.gid,
                groups: crate::sys::peer_groups(stream.as_fd()).unwrap_or_default(),
            },
            Err(e) => {
                warn!(error = %e, "SO_PEERCRED failed; connection dropped");
                return;
            }
        };
        let policy = self.policy();
        let admitted = policy.admits(&peer);
        let refusal = {
            let mut open = self.open();
            if admitted {
                let total_limit = policy.max_clients + EXTRA_CONNECTIONS;
                let mine = open.by_uid.get(&peer.uid).copied().unwrap_or(0);
                if mine >= policy.limits.max_connections_per_uid {
                    Some((
                        "connections per uid",
                        format!(
                            "uid {} already has {mine} of {} open control connections (limits.max_connections_per_uid)",
                            peer.uid, policy.limits.max_connections_per_uid
                        ),
                    ))
                } else if open.admitted >= total_limit {
                    Some((
                        "connections",
                        format!(
                            "shmkafkad has {} of {total_limit} open control connections (daemon.max_clients + {EXTRA_CONNECTIONS})",
                            open.admitted
                        ),
                    ))
                } else {
                    open.admitted += 1;
                    *open.by_uid.entry(peer.uid).or_default() += 1;
                    None
                }
            } else if open.unauthenticated >= policy.limits.unauthenticated_connections {
                Some((
                    "unauthenticated connections",
                    format!(
                        "uid {} / gid {} is not on shmkafkad's access list, and {} of {} connections of such peers are open (limits.unauthenticated_connections)",
                        peer.uid,
                        peer.gid,
                        open.unauthenticated,
                        policy.limits.unauthenticated_connections
                    ),
                ))
            } else {
                open.unauthenticated += 1;
                None
            }
        };
        if let Some((kind, message)) = refusal {
            self.log_refusal(&peer, kind, &message);
            let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
            refuse(&stream, RefusalCode::TooManyClients, &message);
            return;
        }
        let uid = admitted.then_some(peer.uid);
        let server = Arc::clone(&self);
        let spawned = std::thread::Builder::new()
            .name("shmkafkad-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _slot = ConnectionSlot {
                    server: &server,
                    uid,
                };
                server.serve(stream, peer, admitted);
            });
        if let Err(e) = spawned {
            // The closure (and the slot it would have made) never ran.
            drop(ConnectionSlot { server: &self, uid });
            warn!(error = %e, "cannot start a connection thread; connection dropped");
        }
    }

    /// Logs a refused connection, at most once per peer uid and kind per
    /// interval.
    fn log_refusal(&self, peer: &Peer, kind: &'static str, message: &str) {
        REFUSALS.fetch_add(1, Ordering::Relaxed);
        if let Some(repeats) = self.refusals.note(peer.uid, kind) {
            warn!(uid = peer.uid, gid = peer.gid, pid = peer.pid, limit = kind, repeats,
                reason = %message, "connection refused (logged once per uid per 10 s; repeats counts the others)");
        }
    }

    /// Logs a refused topic registration: each name once per connection
    /// (up to [`TOPIC_NAMES_LOGGED_PER_CONNECTION`]), so an operator sees
    /// every topic an application was refused; a client asking again, or
    /// for ever more names, is logged once per uid per interval.
    fn log_topic_refusal(
        &self,
        client: &Client,
        logged: &mut HashSet<String>,
        topic: &str,
        message: &str,
    ) {
        REFUSALS.fetch_add(1, Ordering::Relaxed);
        if !logged.contains(topic) && logged.len() < TOPIC_NAMES_LOGGED_PER_CONNECTION {
            logged.insert(topic.to_owned());
            warn!(client = client.id, uid = client.uid, pid = client.pid, topic,
                reason = %message, "topic refused");
        } else if let Some(repeats) = self.refusals.note(client.uid, "topic refused again") {
            warn!(client = client.id, uid = client.uid, pid = client.pid, topic, repeats,
                reason = %message, "topic refused again (logged once per uid per 10 s; repeats counts the others)");
        }
    }

    /// Makes `run` notice `stopping` at once instead of at its next poll.
    pub fn wake(&self) {
        let _ = UnixStream::connect(&self.path);
    }

    fn serve(&self, stream: UnixStream, peer: Peer, admitted: bool) {
        let span = info_span!("conn", pid = peer.pid, uid = peer.uid, gid = peer.gid);
        let _entered = span.enter();
        let policy = self.policy();
        let deadline = policy.limits.handshake_timeout();
        let _ = stream.set_read_timeout(Some(deadline));
        let _ = stream.set_write_timeout(Some(deadline));
        let first = match recv_message::<ClientMessage>(&stream) {
            Ok(m) => m,
            Err(RecvError::Closed) => return,
            Err(e) => {
                self.log_refusal(&peer, "malformed first message", &e.to_string());
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
                if !admitted {
                    let message = format!(
                        "uid {} / gid {} / supplementary gids {:?} is not allowed by shmkafkad's [access] list \
                         (allowed uids {:?}, gids {:?}); run as an allowed user or join an allowed group \
                         (a new group membership counts from the next login)",
                        peer.uid, peer.gid, peer.groups, policy.uids, policy.gids
                    );
                    self.log_refusal(&peer, "not on the access list", &message);
                    refuse(&stream, RefusalCode::NotAuthorized, &message);
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
                self.register(stream, &peer, hello, fd, &policy);
            }
            (other, _) => {
                self.log_refusal(&peer, "unexpected first message", &format!("{other:?}"));
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
        peer: &Peer,
        hello: Hello,
        fd: OwnedFd,
        policy: &AccessPolicy,
    ) {
        if hello.protocol_version != PROTOCOL_VERSION {
            let message = format!(
                "client speaks protocol {}, shmkafkad speaks {PROTOCOL_VERSION}; upgrade the client library or the daemon",
                hello.protocol_version
            );
            self.log_refusal(peer, "protocol version", &message);
            refuse(&stream, RefusalCode::UnsupportedVersion, &message);
            return;
        }
        // The segment's size, from the kernel, before anything is mapped:
        // `Segment::open` maps exactly this many bytes or refuses.
        let size = match nix::sys::stat::fstat(fd.as_raw_fd()) {
            Ok(stat) => stat.st_size.max(0) as u64,
            Err(e) => {
                refuse(
                    &stream,
                    RefusalCode::BadSegment,
                    &format!("fstat on the segment failed: {e}"),
                );
                return;
            }
        };
        let reservation = match self.registry.reserve(peer.uid, size, &policy.quota()) {
            Ok(r) => r,
            Err(e) => {
                let (kind, code) = match e {
                    QuotaError::TooManyClients { .. } => ("clients", RefusalCode::TooManyClients),
                    QuotaError::TooManyRings { .. } => {
                        ("rings per uid", RefusalCode::TooManyClients)
                    }
                    QuotaError::UidBytes { .. } => ("mapped bytes per uid", RefusalCode::Other),
                    QuotaError::TotalBytes { .. } => ("mapped bytes", RefusalCode::Other),
                };
                let orphaned = self
                    .registry
                    .clients()
                    .iter()
                    .filter(|c| c.uid == peer.uid && c.is_orphaned())
                    .count();
                let message = if orphaned > 0 {
                    format!(
                        "{e}; {orphaned} of them are orphaned (connection closed, process alive)"
                    )
                } else {
                    e.to_string()
                };
                self.log_refusal(peer, kind, &message);
                refuse(&stream, code, &message);
                return;
            }
        };
        let segment = match Segment::open(fd) {
            // The size may have changed between `fstat` and the seals
            // `open` checks (a client that grows its memfd, then seals it):
            // what is mapped must be what was reserved.
            Ok(s) if (HEADER_SIZE + s.capacity()) as u64 == size => s,
            Ok(s) => {
                let message = format!(
                    "segment of {} bytes, {size} when it was counted against the quota; it changed size while being registered",
                    HEADER_SIZE + s.capacity()
                );
                self.log_refusal(peer, "bad segment", &message);
                refuse(&stream, RefusalCode::BadSegment, &message);
                return;
            }
            Err(e) => {
                self.log_refusal(peer, "bad segment", &e.to_string());
                refuse(&stream, RefusalCode::BadSegment, &e.to_string());
                return;
            }
        };
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client::new(
            id,
            hello.client_name.clone(),
            peer.pid as u32,
            peer.uid,
            segment,
        ));
        let mut verdicts = Vec::with_capacity(hello.topics.len());
        let mut logged_refusals = HashSet::new();
        for binding in &hello.topics {
            let verdict = authorise_topic(policy, &binding.name).and_then(|()| {
                client
                    .bind_topic(binding.id, Some(Arc::from(binding.name.as_str())))
                    .map_err(|e| e.to_string())
            });
            if let Err(message) = &verdict {
                self.log_topic_refusal(&client, &mut logged_refusals, &binding.name, message);
                // Marks the id refused; an id out of range has nothing to mark.
                let _ = client.bind_topic(binding.id, None);
            }
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
        self.registry.add(Arc::clone(&client), reservation);
        let ended = self.converse(
            &stream,
            &client,
            policy.limits.handshake_timeout(),
            &mut logged_refusals,
        );
        client.mark_disconnected();
        info!(
            client = id,
            ended, "client disconnected; draining what it committed"
        );
    }

    /// Serves topic registrations until the client hangs up or its process
    /// exits (a connection inherited by another process does not keep a
    /// dead client's ring); returns which.
    fn converse(
        &self,
        stream: &UnixStream,
        client: &Client,
        frame_timeout: Duration,
        logged_refusals: &mut HashSet<String>,
    ) -> &'static str {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // A frame that has begun must complete within this; waiting for the
        // next one is unbounded (poll below).
        let _ = stream.set_read_timeout(Some(frame_timeout));
        loop {
            let mut fds = vec![PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
            if let Some(pidfd) = client.pidfd() {
                fds.push(PollFd::new(pidfd, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!(client = client.id, error = %e, "poll on a control connection failed; closing it");
                    return "poll failed";
                }
            }
            let exited = fds
                .get(1)
                .and_then(|fd| fd.revents())
                .is_some_and(|r| !r.is_empty());
            if exited {
                return "process exited";
            }
            let message = match recv_message::<ClientMessage>(stream) {
                Ok((message, None)) => message,
                Ok((_, Some(_))) => {
                    refuse(stream, RefusalCode::Malformed, "unexpected file descriptor");
                    return "protocol error";
                }
                Err(RecvError::Closed) => return "connection closed",
                Err(RecvError::TimedOut { received: 0 }) => continue,
                Err(e) => {
                    warn!(client = client.id, error = %e, "protocol error; closing the control connection");
                    refuse(
                        stream,
                        e.refusal_code().unwrap_or(RefusalCode::Malformed),
                        &e.to_string(),
                    );
                    return "protocol error";
                }
            };
            let reply = match message {
                ClientMessage::RegisterTopic(request) => {
                    let policy = self.policy();
                    let verdict = authorise_topic(&policy, &request.name).and_then(|()| {
                        client
                            .bind_topic(request.id, Some(Arc::from(request.name.as_str())))
                            .map_err(|e| e.to_string())
                    });
                    match verdict {
                        Ok(()) => {
                            info!(client = client.id, topic = %request.name, id = request.id, "topic registered");
                            DaemonMessage::TopicAccepted(TopicAccepted { id: request.id })
                        }
                        Err(message) => {
                            self.log_topic_refusal(
                                client,
                                logged_refusals,
                                &request.name,
                                &message,
                            );
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
                    REFUSALS.fetch_add(1, Ordering::Relaxed);
                    if let Some(repeats) = self.refusals.note(client.uid, "Hello sent twice") {
                        warn!(client = client.id, uid = client.uid, repeats,
                            "Hello sent twice; closing the control connection (logged once per uid per 10 s)");
                    }
                    refuse(stream, RefusalCode::Malformed, "Hello sent twice");
                    return "protocol error";
                }
            };
            if send_message(stream, &reply, None).is_err() {
                return "connection closed";
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
