//! The control protocol between shmkafka clients and `shmkafkad`: one
//! definition of the messages, their binary encoding, and the socket helpers
//! both sides use.
//!
//! A client creates its sealed segment memfd, [`connect`]s, and sends a
//! [`Hello`] with the fd attached ([`send_message`]); the daemon
//! [`recv_message`]s it, checks [`peer_credentials`], and answers [`Welcome`]
//! or [`Refused`]. Topics are bound to client-chosen ids with
//! [`RegisterTopic`]. An operator tool may send a [`StatusRequest`] on a fresh
//! connection without `Hello`.
//!
//! This crate knows sockets and encoding only: nothing about Kafka or the
//! ring layout. See [`codec`] for the wire format.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use shmkafka_protocol::*;
//!
//! let (operator, daemon) = UnixStream::pair()?;
//! let request = ClientMessage::StatusRequest(StatusRequest { json: true });
//! send_message(&operator, &request, None)?;
//!
//! let (received, fd) = recv_message::<ClientMessage>(&daemon)?;
//! assert_eq!(received, request);
//! assert!(fd.is_none());
//! let reply = DaemonMessage::StatusReply(StatusReply { body: "{}".into() });
//! send_message(&daemon, &reply, None)?;
//! assert_eq!(recv_message::<DaemonMessage>(&operator)?.0, reply);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod codec;
mod connect;
pub mod kafka_error;
mod limits;
mod message;
mod socket;
mod wire;

pub use codec::{
    decode_frame, encode_frame, encode_frame_into, frame_len, DecodeError, EncodeError,
    WireMessage, FRAME_HEADER_LEN, LENGTH_PREFIX_LEN,
};
pub use connect::{
    classify_connect_error, connect, resolve_socket_path, socket_path, ConnectError,
};
pub use limits::{
    validate_topic_name, TopicNameError, DEFAULT_SOCKET_PATH, MAX_CLIENT_NAME_LEN, MAX_FRAME_LEN,
    MAX_TOPICS_PER_HELLO, MAX_TOPIC_NAME_LEN, PROTOCOL_VERSION, SOCKET_PATH_ENV,
};
pub use message::{
    ClientMessage, DaemonMessage, Hello, RefusalCode, Refused, RegisterTopic, StatusReply,
    StatusRequest, TopicAccepted, TopicBinding, TopicRefused, TopicVerdict, Welcome,
};
pub use socket::{
    peer_credentials, recv_message, send_message, PeerCredentials, RecvError, SendError,
};
