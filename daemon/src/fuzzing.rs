//! A control server in this process, fed decoded client messages over real
//! connections: what the control-protocol fuzz target (`daemon/fuzz`) and
//! the randomised test (`tests/control_messages.rs`) drive. Not used by the
//! daemon itself.
//!
//! Every `Hello` goes with a fresh sealed segment, so messages reach the
//! registration and topic code, not only the decoder. A thread stands in
//! for the drain threads: it forgets clients once their connection closed,
//! as a drain thread does once their ring is drained.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use shmkafka_protocol::{
    decode_frame, recv_message, send_message, ClientMessage, DaemonMessage, StatusRequest,
};
use shmkafka_ringbuf::{Segment, SegmentOptions};

use crate::client::Client;
use crate::config::{LimitsSection, DEFAULT_MAX_CLIENTS};
use crate::metrics::Telemetry;
use crate::registry::{DrainSlot, Registry};
use crate::server::{AccessPolicy, ControlServer};

/// How long the harness waits for each answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);
/// Most messages of one input sent (the rest is ignored).
const MAX_MESSAGES: usize = 64;

/// A running control server and the way to talk to it.
pub struct ControlHarness {
    socket: PathBuf,
    registry: Arc<Registry>,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ControlHarness {
    /// Starts a control server on a socket in a new temporary directory,
    /// admitting this process's uid, with the default limits.
    pub fn start() -> ControlHarness {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shmkafkad-harness-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("harness directory");
        let socket = dir.join("control.sock");
        let (inbox, clients) = mpsc::channel::<Arc<Client>>();
        let registry = Arc::new(Registry::new(vec![DrainSlot {
            inbox,
            load: AtomicUsize::new(0),
        }]));
        let policy = AccessPolicy {
            uids: vec![nix::unistd::getuid().as_raw()],
            gids: Vec::new(),
            topics: vec!["*".to_owned()],
            max_clients: DEFAULT_MAX_CLIENTS,
            limits: LimitsSection::default(),
        };
        let telemetry = Arc::new(Telemetry::new(Arc::clone(&registry), dir.join("spool")));
        let server = Arc::new(
            ControlServer::bind(
                &socket,
                0o600,
                Arc::new(Mutex::new(policy)),
                Arc::clone(&registry),
                telemetry,
                Arc::new(AtomicBool::new(false)),
            )
            .expect("binding the harness socket"),
        );
        std::thread::spawn(move || server.run());
        let retired = Arc::clone(&registry);
        std::thread::spawn(move || retire(&clients, &retired));
        ControlHarness {
            socket,
            registry,
            _dir: TempDir(dir),
        }
    }

    /// Decodes client frames from the front of `data` and sends them, in
    /// order, over one connection (a `Hello` with a fresh segment), reading
    /// each answer. Stops at the first byte sequence that does not decode,
    /// which is sent as is.
    pub fn feed(&self, data: &[u8]) {
        let Ok(stream) = UnixStream::connect(&self.socket) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
        let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
        let mut rest = data;
        for _ in 0..MAX_MESSAGES {
            let Ok((message, used)) = decode_frame::<ClientMessage>(rest) else {
                // Undecodable bytes go to the server too.
                let _ = std::io::Write::write_all(&mut &stream, rest);
                let _ = recv_message::<DaemonMessage>(&stream);
                return;
            };
            rest = &rest[used..];
            let sent = match &message {
                ClientMessage::Hello(_) => {
                    let Ok(segment) = Segment::create(&SegmentOptions::with_capacity(4096)) else {
                        return;
                    };
                    send_message(&stream, &message, Some(segment.fd()))
                }
                _ => send_message(&stream, &message, None),
            };
            if sent.is_err() {
                return;
            }
            if recv_message::<DaemonMessage>(&stream).is_err() {
                return;
            }
        }
    }

    /// Panics unless the server answers a status request.
    pub fn assert_serving(&self) {
        let stream = UnixStream::connect(&self.socket).expect("the control socket accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        send_message(
            &stream,
            &ClientMessage::StatusRequest(StatusRequest { json: true }),
            None,
        )
        .expect("status request");
        match recv_message::<DaemonMessage>(&stream) {
            Ok((DaemonMessage::StatusReply(_), _)) => {}
            other => panic!("the control server does not answer status: {other:?}"),
        }
    }

    /// Clients registered now.
    pub fn clients(&self) -> usize {
        self.registry.len()
    }
}

/// Forgets clients whose connection closed, as the drain threads do once
/// their rings are drained.
fn retire(clients: &mpsc::Receiver<Arc<Client>>, registry: &Registry) {
    let mut held: Vec<Arc<Client>> = Vec::new();
    loop {
        match clients.recv_timeout(Duration::from_millis(20)) {
            Ok(client) => held.push(client),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        held.retain(|c| {
            if c.is_disconnected() {
                registry.remove(c.id);
                false
            } else {
                true
            }
        });
    }
}
