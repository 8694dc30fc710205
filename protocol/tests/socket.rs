//! The socket helpers over real Unix socket pairs: fd passing, credentials,
//! frames split across writes, and every way a peer can misbehave.

mod common;

use std::fs::File;
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{getgid, getpid, getuid, pipe};
use shmkafka_protocol::*;

const SEGMENT_BYTES: &[u8] = b"shmkafka segment header";

/// A memfd holding `SEGMENT_BYTES`, sealed the way the client library seals
/// its segment.
fn sealed_segment() -> OwnedFd {
    let fd = memfd_create(
        c"shmkafka-test",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .unwrap();
    let mut file = File::from(fd);
    file.write_all(SEGMENT_BYTES).unwrap();
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).unwrap();
    file.into()
}

/// Sends raw bytes with raw descriptors, bypassing `send_message`'s checks.
fn send_raw(stream: &UnixStream, bytes: &[u8], fds: &[std::os::fd::RawFd]) {
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(sent, bytes.len());
}

/// True once every copy of a pipe's write end is closed: the read end then
/// reports POLLHUP. Used to prove that descriptors refused by `recv_message`
/// were closed rather than leaked.
fn write_end_closed(read_end: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(2000u16)).unwrap();
    ready == 1
        && fds[0]
            .revents()
            .is_some_and(|revents| revents.contains(PollFlags::POLLHUP))
}

/// Receives one message that must have come without a descriptor.
fn recv_plain<M: WireMessage>(stream: &UnixStream) -> M {
    let (msg, fd) = recv_message::<M>(stream).unwrap();
    assert!(fd.is_none());
    msg
}

#[test]
fn hello_passes_a_memfd_whose_contents_are_readable_on_the_other_side() {
    let (client, daemon) = UnixStream::pair().unwrap();
    let segment = sealed_segment();
    let hello = ClientMessage::Hello(common::hello());
    send_message(&client, &hello, Some(segment.as_fd())).unwrap();
    drop(segment);

    let (received, fd) = recv_message::<ClientMessage>(&daemon).unwrap();
    assert_eq!(received, hello);
    let fd = fd.expect("Hello comes with its fd");

    let flags = FdFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap());
    assert!(
        flags.contains(FdFlag::FD_CLOEXEC),
        "received fds are close-on-exec"
    );
    let seals = SealFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap());
    assert!(seals.contains(SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK));

    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).unwrap();
    assert_eq!(contents, SEGMENT_BYTES);
}

#[test]
fn replies_travel_back_without_fds() {
    let (client, daemon) = UnixStream::pair().unwrap();
    for msg in common::daemon_messages() {
        send_message(&daemon, &msg, None).unwrap();
        assert_eq!(recv_plain::<DaemonMessage>(&client), msg);
    }
}

#[test]
fn peer_credentials_are_this_process() {
    let (a, b) = UnixStream::pair().unwrap();
    let expected = PeerCredentials {
        pid: getpid().as_raw(),
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
    };
    assert_eq!(peer_credentials(&a).unwrap(), expected);
    assert_eq!(peer_credentials(&b).unwrap(), expected);
}

#[test]
fn frames_split_across_many_writes_are_reassembled() {
    let (client, daemon) = UnixStream::pair().unwrap();
    let messages: Vec<ClientMessage> = vec![
        RegisterTopic {
            id: 0,
            name: "orders".to_owned(),
        }
        .into(),
        StatusRequest { json: true }.into(),
        RegisterTopic {
            id: 1,
            name: "x".repeat(MAX_TOPIC_NAME_LEN),
        }
        .into(),
    ];
    let mut stream = Vec::new();
    for msg in &messages {
        encode_frame_into(msg, &mut stream).unwrap();
    }

    // Chunks of 1, 2, 3, 5, 7... bytes cut frames, headers and even the length
    // prefix at every kind of boundary; the pauses make the reader see them
    // one at a time.
    let writer = thread::spawn(move || {
        let mut client = client;
        let mut rest = &stream[..];
        for size in [1, 2, 3, 5, 7, 11].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            client.write_all(chunk).unwrap();
            rest = tail;
            thread::sleep(Duration::from_millis(1));
        }
        // Dropping the stream closes it: the reader sees a clean end.
    });

    for msg in messages {
        assert_eq!(recv_plain::<ClientMessage>(&daemon), msg);
    }
    writer.join().unwrap();
    assert!(matches!(
        recv_message::<ClientMessage>(&daemon),
        Err(RecvError::Closed)
    ));
}

#[test]
fn hello_followed_by_more_frames_in_one_buffer_keeps_the_fd_with_hello() {
    let (client, daemon) = UnixStream::pair().unwrap();
    let segment = sealed_segment();
    let hello = ClientMessage::Hello(common::hello());
    let register = ClientMessage::RegisterTopic(RegisterTopic {
        id: 2,
        name: "late".to_owned(),
    });
    // Both frames in one sendmsg with the fd: the reader must not hand the
    // fd to the second frame, nor read into it.
    let mut bytes = encode_frame(&hello).unwrap();
    encode_frame_into(&register, &mut bytes).unwrap();
    send_raw(&client, &bytes, &[segment.as_raw_fd()]);

    let (first, fd) = recv_message::<ClientMessage>(&daemon).unwrap();
    assert_eq!(first, hello);
    assert!(fd.is_some());
    assert_eq!(recv_plain::<ClientMessage>(&daemon), register);
}

#[test]
fn hello_without_fd_is_missing_fd_and_the_stream_stays_in_step() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    let hello = ClientMessage::Hello(common::hello());
    client.write_all(&encode_frame(&hello).unwrap()).unwrap();
    let status = ClientMessage::StatusRequest(StatusRequest { json: false });
    send_message(&client, &status, None).unwrap();

    let err = recv_message::<ClientMessage>(&daemon).unwrap_err();
    assert!(
        matches!(err, RecvError::MissingFd { tag: 0x0001 }),
        "{err:?}"
    );
    assert_eq!(err.refusal_code(), Some(RefusalCode::BadSegment));
    assert_eq!(recv_plain::<ClientMessage>(&daemon), status);
}

#[test]
fn send_message_enforces_which_messages_carry_an_fd() {
    let (client, _daemon) = UnixStream::pair().unwrap();
    let segment = sealed_segment();
    assert!(matches!(
        send_message(&client, &ClientMessage::Hello(common::hello()), None),
        Err(SendError::MissingFd { tag: 0x0001 })
    ));
    assert!(matches!(
        send_message(
            &client,
            &ClientMessage::StatusRequest(StatusRequest { json: true }),
            Some(segment.as_fd())
        ),
        Err(SendError::UnexpectedFd { tag: 0x0003 })
    ));
}

#[test]
fn unexpected_fd_is_refused_and_closed() {
    let (client, daemon) = UnixStream::pair().unwrap();
    let (read_end, write_end) = pipe().unwrap();
    let frame = encode_frame(&ClientMessage::StatusRequest(StatusRequest { json: true })).unwrap();
    send_raw(&client, &frame, &[write_end.as_raw_fd()]);
    drop(write_end);

    let err = recv_message::<ClientMessage>(&daemon).unwrap_err();
    assert!(
        matches!(err, RecvError::UnexpectedFd { tag: 0x0003 }),
        "{err:?}"
    );
    assert!(write_end_closed(&read_end), "refused fd was leaked");
}

#[test]
fn extra_fds_are_refused_and_all_closed() {
    let (client, daemon) = UnixStream::pair().unwrap();
    let (read_end, write_end) = pipe().unwrap();
    let segment = sealed_segment();
    let frame = encode_frame(&ClientMessage::Hello(common::hello())).unwrap();
    send_raw(
        &client,
        &frame,
        &[
            segment.as_raw_fd(),
            write_end.as_raw_fd(),
            write_end.as_raw_fd(),
        ],
    );
    drop(write_end);

    let err = recv_message::<ClientMessage>(&daemon).unwrap_err();
    assert!(matches!(err, RecvError::TooManyFds { count: 3 }), "{err:?}");
    assert!(write_end_closed(&read_end), "extra fds were leaked");
}

#[test]
fn oversized_frame_is_refused_without_waiting_for_its_body() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let err = recv_message::<ClientMessage>(&daemon).unwrap_err();
    assert!(
        matches!(
            err,
            RecvError::Decode(DecodeError::FrameTooLarge { len }) if len == u32::MAX as usize + 4
        ),
        "{err:?}"
    );
    assert_eq!(err.refusal_code(), Some(RefusalCode::Malformed));
}

#[test]
fn malformed_body_is_a_decode_error() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    client
        .write_all(&common::raw_frame(0x0077, b"junk"))
        .unwrap();
    assert!(matches!(
        recv_message::<ClientMessage>(&daemon),
        Err(RecvError::Decode(DecodeError::UnknownTag(0x0077)))
    ));
}

#[test]
fn read_timeout_reports_how_much_of_the_frame_arrived() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(matches!(
        recv_message::<ClientMessage>(&daemon),
        Err(RecvError::TimedOut { received: 0 })
    ));
    let frame = encode_frame(&ClientMessage::StatusRequest(StatusRequest { json: true })).unwrap();
    client.write_all(&frame[..5]).unwrap();
    assert!(matches!(
        recv_message::<ClientMessage>(&daemon),
        Err(RecvError::TimedOut { received: 5 })
    ));
}

#[test]
fn a_trickling_peer_cannot_stretch_a_frame_past_the_read_timeout() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    let timeout = Duration::from_millis(300);
    daemon.set_read_timeout(Some(timeout)).unwrap();
    let frame = encode_frame(&ClientMessage::StatusRequest(StatusRequest { json: true })).unwrap();
    // One byte per 100 ms: each read is well within the timeout, the
    // frame as a whole is not.
    let trickle = thread::spawn(move || {
        for byte in &frame[..frame.len() - 1] {
            if client.write_all(std::slice::from_ref(byte)).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let started = std::time::Instant::now();
    let result = recv_message::<ClientMessage>(&daemon);
    let took = started.elapsed();
    assert!(
        matches!(result, Err(RecvError::TimedOut { received }) if received > 0),
        "{result:?}"
    );
    assert!(took < timeout * 2, "the frame took {took:?} to time out");
    assert_eq!(
        daemon.read_timeout().unwrap(),
        Some(timeout),
        "timeout restored"
    );
    trickle.join().unwrap();
}

#[test]
fn peer_closing_mid_frame_is_reported() {
    let (mut client, daemon) = UnixStream::pair().unwrap();
    let frame = encode_frame(&ClientMessage::StatusRequest(StatusRequest { json: true })).unwrap();
    client.write_all(&frame[..3]).unwrap();
    drop(client);
    assert!(matches!(
        recv_message::<ClientMessage>(&daemon),
        Err(RecvError::ClosedMidFrame { received: 3 })
    ));
}

#[test]
fn sending_to_a_closed_peer_is_disconnected_not_sigpipe() {
    let (client, daemon) = UnixStream::pair().unwrap();
    drop(daemon);
    let msg = ClientMessage::StatusRequest(StatusRequest { json: true });
    assert!(matches!(
        send_message(&client, &msg, None),
        Err(SendError::Disconnected)
    ));
}

#[test]
fn write_timeout_reports_how_much_was_sent() {
    let (client, _daemon) = UnixStream::pair().unwrap();
    client
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let reply = DaemonMessage::StatusReply(StatusReply {
        body: "s".repeat(MAX_FRAME_LEN - 10),
    });
    // Nobody reads: the socket buffer fills and a send eventually times out.
    let err = loop {
        if let Err(err) = send_message(&client, &reply, None) {
            break err;
        }
    };
    assert!(
        matches!(err, SendError::TimedOut { total, .. } if total == MAX_FRAME_LEN),
        "{err:?}"
    );
}
