//! The messages of the control protocol, split by direction so that the type
//! system says who may send what.
//!
//! A connection is either a client registration (`Hello`, then any number of
//! `RegisterTopic`) or an operator query (`StatusRequest`, which needs no
//! `Hello`). The daemon answers `Hello` with `Welcome` or `Refused`, each
//! `RegisterTopic` with `TopicAccepted` or `TopicRefused`, and `StatusRequest`
//! with `StatusReply`.

use std::fmt;

/// A message a client (or an operator tool) sends to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Registers the client's segment. Travels with exactly one file
    /// descriptor, the sealed segment memfd, in the same `sendmsg`.
    Hello(Hello),
    /// Binds a client-chosen topic id to a topic name.
    RegisterTopic(RegisterTopic),
    /// Asks for the daemon's status; valid on a connection without `Hello`.
    StatusRequest(StatusRequest),
}

/// A message the daemon sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonMessage {
    /// Accepts a `Hello`.
    Welcome(Welcome),
    /// Refuses a `Hello` (or ends a connection that broke the protocol); the
    /// daemon closes the connection after sending it.
    Refused(Refused),
    /// Accepts a `RegisterTopic`.
    TopicAccepted(TopicAccepted),
    /// Refuses a `RegisterTopic`; the connection stays usable.
    TopicRefused(TopicRefused),
    /// Answers a `StatusRequest`.
    StatusReply(StatusReply),
}

/// A topic id the client already uses in its records, with its name.
///
/// Ids are chosen by the client, dense from 0, and are only meaningful within
/// one client's segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicBinding {
    /// Topic id as written in the segment's records.
    pub id: u32,
    /// Kafka topic name; always valid per [`crate::validate_topic_name`].
    pub name: String,
}

/// First message of a client connection; carries the segment memfd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks, normally [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The client's own pid. Informational: the daemon trusts `SO_PEERCRED`,
    /// not this field, for authorisation.
    pub client_pid: u32,
    /// Human-readable client label for logs and metrics, at most
    /// [`crate::MAX_CLIENT_NAME_LEN`] bytes.
    pub client_name: String,
    /// Topic ids already in use in the segment. Empty on a first connection;
    /// after a daemon restart it lets the daemon interpret records written
    /// while it was down. At most [`crate::MAX_TOPICS_PER_HELLO`].
    pub topics: Vec<TopicBinding>,
}

/// Binds `id` to topic `name` for this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterTopic {
    /// Client-chosen topic id, dense from 0.
    pub id: u32,
    /// Kafka topic name; always valid per [`crate::validate_topic_name`].
    pub name: String,
}

/// Operator request for the daemon's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRequest {
    /// `true` for a JSON body, `false` for human-readable text.
    pub json: bool,
}

/// The daemon's verdict on one topic binding of a `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicVerdict {
    /// The topic id from the `Hello`.
    pub id: u32,
    /// Whether the daemon will deliver records with this id.
    pub accepted: bool,
    /// Why not, when refused; empty when accepted.
    pub message: String,
}

/// The daemon's acceptance of a `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version the daemon speaks on this connection.
    pub protocol_version: u16,
    /// Daemon-assigned id of this client, unique for the daemon's lifetime.
    pub client_id: u64,
    /// One verdict per binding of the `Hello`, in the same order.
    pub topics: Vec<TopicVerdict>,
}

/// The daemon's refusal of a `Hello` or of a broken connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Machine-readable reason.
    pub reason: RefusalCode,
    /// Human-readable detail for the client's error message.
    pub message: String,
}

/// The daemon's acceptance of a `RegisterTopic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicAccepted {
    /// The topic id from the `RegisterTopic`.
    pub id: u32,
}

/// The daemon's refusal of a `RegisterTopic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRefused {
    /// The topic id from the `RegisterTopic`.
    pub id: u32,
    /// Machine-readable reason.
    pub reason: RefusalCode,
    /// Human-readable detail.
    pub message: String,
}

/// The daemon's answer to a `StatusRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReply {
    /// Status as JSON or text, as requested; bounded by the frame size.
    pub body: String,
}

/// Why the daemon refused a client or a topic. The wire value of each code is
/// fixed forever; new codes get new values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RefusalCode {
    /// The client's protocol version is not one the daemon speaks.
    UnsupportedVersion = 1,
    /// The peer's credentials or the topic name are not on the access list.
    NotAuthorized = 2,
    /// The passed fd is missing, not a memfd, not sealed, or has a bad header.
    BadSegment = 3,
    /// The daemon already serves its configured maximum of clients.
    TooManyClients = 4,
    /// The daemon is shutting down and accepts no new clients or topics.
    ShuttingDown = 5,
    /// The peer sent bytes that do not decode, or a message out of order.
    Malformed = 6,
    /// Anything else; the message says what.
    Other = 7,
}

impl RefusalCode {
    /// Every code, in wire order; for tests and exhaustive tables.
    pub const ALL: [RefusalCode; 7] = [
        RefusalCode::UnsupportedVersion,
        RefusalCode::NotAuthorized,
        RefusalCode::BadSegment,
        RefusalCode::TooManyClients,
        RefusalCode::ShuttingDown,
        RefusalCode::Malformed,
        RefusalCode::Other,
    ];

    /// The code's value on the wire.
    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, or `None` for a value this version does not
    /// know.
    pub fn from_wire(value: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.to_wire() == value)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalCode::UnsupportedVersion => "unsupported protocol version",
            RefusalCode::NotAuthorized => "not authorized",
            RefusalCode::BadSegment => "bad segment",
            RefusalCode::TooManyClients => "too many clients",
            RefusalCode::ShuttingDown => "daemon shutting down",
            RefusalCode::Malformed => "malformed message",
            RefusalCode::Other => "refused",
        })
    }
}

impl ClientMessage {
    /// Whether this message travels with a file descriptor. Only `Hello` does,
    /// and it must; [`crate::send_message`] and [`crate::recv_message`]
    /// enforce it.
    pub fn carries_fd(&self) -> bool {
        matches!(self, ClientMessage::Hello(_))
    }
}

impl From<Hello> for ClientMessage {
    fn from(msg: Hello) -> Self {
        ClientMessage::Hello(msg)
    }
}

impl From<RegisterTopic> for ClientMessage {
    fn from(msg: RegisterTopic) -> Self {
        ClientMessage::RegisterTopic(msg)
    }
}

impl From<StatusRequest> for ClientMessage {
    fn from(msg: StatusRequest) -> Self {
        ClientMessage::StatusRequest(msg)
    }
}

impl From<Welcome> for DaemonMessage {
    fn from(msg: Welcome) -> Self {
        DaemonMessage::Welcome(msg)
    }
}

impl From<Refused> for DaemonMessage {
    fn from(msg: Refused) -> Self {
        DaemonMessage::Refused(msg)
    }
}

impl From<TopicAccepted> for DaemonMessage {
    fn from(msg: TopicAccepted) -> Self {
        DaemonMessage::TopicAccepted(msg)
    }
}

impl From<TopicRefused> for DaemonMessage {
    fn from(msg: TopicRefused) -> Self {
        DaemonMessage::TopicRefused(msg)
    }
}

impl From<StatusReply> for DaemonMessage {
    fn from(msg: StatusReply) -> Self {
        DaemonMessage::StatusReply(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_round_trip_and_unknown_values_are_none() {
        for code in RefusalCode::ALL {
            assert_eq!(RefusalCode::from_wire(code.to_wire()), Some(code));
        }
        assert_eq!(RefusalCode::from_wire(0), None);
        assert_eq!(RefusalCode::from_wire(8), None);
    }
}
