//! Socket path resolution and the connect errors users see.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use shmkafka_protocol::*;

/// A fresh directory for one test's socket, removed when dropped. Kept
/// short: socket paths are limited to 108 bytes.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shmkafka-proto-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn explicit_path_beats_environment_beats_default() {
    let explicit = Path::new("/tmp/explicit.sock");
    let env = Some(OsString::from("/tmp/env.sock"));
    assert_eq!(resolve_socket_path(Some(explicit), env.clone()), explicit);
    assert_eq!(resolve_socket_path(None, env), Path::new("/tmp/env.sock"));
    assert_eq!(
        resolve_socket_path(None, None),
        Path::new(DEFAULT_SOCKET_PATH)
    );
    assert_eq!(
        resolve_socket_path(None, Some(OsString::new())),
        Path::new(DEFAULT_SOCKET_PATH),
        "an empty variable counts as unset"
    );
}

#[test]
fn missing_socket_says_is_shmkafkad_running() {
    let dir = ScratchDir::new();
    let path = dir.join("absent.sock");
    let err = connect(Some(&path)).unwrap_err();
    assert!(matches!(err, ConnectError::NotRunning { .. }), "{err:?}");
    assert_eq!(err.path(), path);
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("is shmkafkad running?"), "{text}");
}

#[test]
fn stale_socket_file_says_is_shmkafkad_running() {
    let dir = ScratchDir::new();
    let path = dir.join("stale.sock");
    drop(UnixListener::bind(&path).unwrap());
    // The file is still there but nobody listens: ECONNREFUSED.
    assert!(path.exists());
    let err = connect(Some(&path)).unwrap_err();
    match &err {
        ConnectError::NotRunning { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected NotRunning, got {other:?}"),
    }
    assert!(err.to_string().contains("is shmkafkad running?"));
}

#[test]
fn connect_reaches_a_listener_which_sees_our_credentials() {
    let dir = ScratchDir::new();
    let path = dir.join("d.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let client = connect(Some(&path)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let creds = peer_credentials(&server).unwrap();
    assert_eq!(creds.pid, std::process::id() as i32);
    send_message(
        &client,
        &ClientMessage::StatusRequest(StatusRequest { json: true }),
        None,
    )
    .unwrap();
    assert_eq!(
        recv_message::<ClientMessage>(&server).unwrap().0,
        ClientMessage::StatusRequest(StatusRequest { json: true })
    );
}

#[test]
fn permission_denied_names_the_group_to_join() {
    // Tests usually run as root, which no permission bit stops, so the EACCES
    // is synthetic; the path is real so its group can be looked up.
    let dir = ScratchDir::new();
    let path = dir.join("d.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
        .unwrap()
        .map(|group| group.name)
        .unwrap_or_else(|| nix::unistd::getgid().to_string());

    let err = classify_connect_error(path.clone(), io::Error::from_raw_os_error(libc::EACCES));
    match &err {
        ConnectError::PermissionDenied { group: found, .. } => {
            assert_eq!(found.as_deref(), Some(group.as_str()))
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains(&format!("join group {group}")), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn other_errors_keep_the_path_and_the_cause() {
    let err = classify_connect_error(
        PathBuf::from("/x.sock"),
        io::Error::from_raw_os_error(libc::ENOTSOCK),
    );
    assert!(matches!(err, ConnectError::Io { .. }));
    assert!(err.to_string().starts_with("cannot connect to /x.sock: "));
}
