//! Framing and the binary encoding of every message.
//!
//! All integers are little-endian. A frame is
//!
//! ```text
//! frame  = len:u32  tag:u16  body          len = 2 + body bytes; 4 + len <= MAX_FRAME_LEN
//! name   = n:u16  n bytes of UTF-8          topic and client names
//! text   = n:u32  n bytes of UTF-8          free text
//! bool   = u8, 0 or 1
//! code   = u16, a RefusalCode wire value
//!
//! client -> daemon (tags 0x0001..)
//!   0x0001 Hello          version:u16 client_pid:u32 client_name:name count:u16 (id:u32 name:name)*count
//!   0x0002 RegisterTopic  id:u32 name:name
//!   0x0003 StatusRequest  json:bool
//! daemon -> client (tags 0x8001..)
//!   0x8001 Welcome        version:u16 client_id:u64 count:u16 (id:u32 accepted:bool message:text)*count
//!   0x8002 Refused        reason:code message:text
//!   0x8003 TopicAccepted  id:u32
//!   0x8004 TopicRefused   id:u32 reason:code message:text
//!   0x8005 StatusReply    body:text
//! ```
//!
//! The high bit of the tag gives the direction, so a message sent the wrong
//! way is reported as such instead of as an unknown tag. `Hello` and `Welcome`
//! start with the protocol version; a decoder that meets a version it does not
//! speak stops there with [`DecodeError::UnsupportedVersion`], which lets the
//! daemon answer `Refused(UnsupportedVersion)` to clients newer than itself.
//!
//! Decoding reads untrusted bytes: every length is checked against the frame,
//! no allocation is larger than the frame can back, and no input panics.

use thiserror::Error;

use crate::limits::{
    validate_topic_name, TopicNameError, MAX_CLIENT_NAME_LEN, MAX_FRAME_LEN, MAX_TOPICS_PER_HELLO,
    PROTOCOL_VERSION,
};
use crate::message::{
    ClientMessage, DaemonMessage, Hello, RefusalCode, Refused, RegisterTopic, StatusReply,
    StatusRequest, TopicAccepted, TopicBinding, TopicRefused, TopicVerdict, Welcome,
};
use crate::wire::{Reader, Writer};

/// Bytes of the frame header: the u32 length and the u16 tag.
pub const FRAME_HEADER_LEN: usize = 6;

/// Bytes of the length prefix alone; a reader needs these to know how much
/// more of the frame to read.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Wire tags of each message. Values are fixed forever; new messages get new
/// values.
pub mod tag {
    /// Set on every daemon-to-client tag.
    pub const DAEMON_BIT: u16 = 0x8000;
    /// `ClientMessage::Hello`.
    pub const HELLO: u16 = 0x0001;
    /// `ClientMessage::RegisterTopic`.
    pub const REGISTER_TOPIC: u16 = 0x0002;
    /// `ClientMessage::StatusRequest`.
    pub const STATUS_REQUEST: u16 = 0x0003;
    /// `DaemonMessage::Welcome`.
    pub const WELCOME: u16 = 0x8001;
    /// `DaemonMessage::Refused`.
    pub const REFUSED: u16 = 0x8002;
    /// `DaemonMessage::TopicAccepted`.
    pub const TOPIC_ACCEPTED: u16 = 0x8003;
    /// `DaemonMessage::TopicRefused`.
    pub const TOPIC_REFUSED: u16 = 0x8004;
    /// `DaemonMessage::StatusReply`.
    pub const STATUS_REPLY: u16 = 0x8005;
}

/// Smallest encoding of one `TopicBinding` (id, empty-name length). Used to
/// bound preallocation by what the frame can actually hold.
const MIN_BINDING_WIRE_LEN: usize = 4 + 2;
/// Smallest encoding of one `TopicVerdict` (id, accepted, empty-text length).
const MIN_VERDICT_WIRE_LEN: usize = 4 + 1 + 4;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The buffer holds less than one whole frame; read more and try again.
    #[error("incomplete frame: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes needed to go further (the header, or the whole frame).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The length prefix announces a frame larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLarge {
        /// Announced frame size, header included.
        len: usize,
    },
    /// The length prefix is too small to hold even the tag.
    #[error("frame length {len} cannot hold a message tag")]
    FrameTooSmall {
        /// Announced length after the prefix.
        len: u32,
    },
    /// The tag is not a message of this protocol version.
    #[error("unknown message tag {0:#06x}")]
    UnknownTag(u16),
    /// The tag is a message of the other direction (a daemon message sent to
    /// the daemon, or the reverse).
    #[error("message tag {0:#06x} is not valid in this direction")]
    WrongDirection(u16),
    /// A field runs past the end of its frame.
    #[error("field `{field}` runs past the end of the frame")]
    ShortBody {
        /// The field being read.
        field: &'static str,
    },
    /// A string field is not UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    BadUtf8 {
        /// The offending field.
        field: &'static str,
    },
    /// A bool field is neither 0 nor 1.
    #[error("field `{field}` holds {value}, expected a bool (0 or 1)")]
    BadBool {
        /// The offending field.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A refusal code this version does not know.
    #[error("unknown refusal code {0}")]
    UnknownRefusalCode(u16),
    /// `Hello` or `Welcome` announces a protocol version this crate cannot
    /// decode; the rest of the body was not read.
    #[error("protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The announced version.
        version: u16,
    },
    /// More topic entries than [`MAX_TOPICS_PER_HELLO`].
    #[error("{count} topics exceed the limit of {MAX_TOPICS_PER_HELLO}")]
    TooManyTopics {
        /// Announced count.
        count: usize,
    },
    /// A topic name is not a legal Kafka topic name.
    #[error("topic {id}: {source}")]
    InvalidTopicName {
        /// The topic id the name was bound to.
        id: u32,
        /// What is wrong with the name.
        source: TopicNameError,
    },
    /// The client name is longer than [`MAX_CLIENT_NAME_LEN`].
    #[error("client name of {len} bytes exceeds the limit of {MAX_CLIENT_NAME_LEN}")]
    ClientNameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// The body has bytes after its last field.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// Number of unread bytes.
        count: usize,
    },
}

impl DecodeError {
    /// Whether more input could turn this into a frame: true only for
    /// [`DecodeError::Truncated`]. Every other error is final for the frame.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Truncated { .. })
    }

    /// The refusal a daemon sends to a client whose frame failed this way.
    pub fn refusal_code(&self) -> RefusalCode {
        match self {
            DecodeError::UnsupportedVersion { .. } => RefusalCode::UnsupportedVersion,
            _ => RefusalCode::Malformed,
        }
    }
}

/// Why a message cannot be encoded. The encoder refuses exactly what the
/// decoder would refuse, so every encoded frame decodes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded frame would exceed [`MAX_FRAME_LEN`]. A `Hello` with many
    /// topics can send the rest as `RegisterTopic` after `Welcome`.
    #[error("encoded frame of at least {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLarge {
        /// Size reached when the limit was hit.
        len: usize,
    },
    /// More topic entries than [`MAX_TOPICS_PER_HELLO`].
    #[error("{count} topics exceed the limit of {MAX_TOPICS_PER_HELLO}")]
    TooManyTopics {
        /// Number of entries given.
        count: usize,
    },
    /// A topic name is not a legal Kafka topic name.
    #[error("topic {id} ({name:?}): {source}")]
    InvalidTopicName {
        /// The topic id.
        id: u32,
        /// The offending name.
        name: String,
        /// What is wrong with it.
        source: TopicNameError,
    },
    /// The client name is longer than [`MAX_CLIENT_NAME_LEN`].
    #[error("client name of {len} bytes exceeds the limit of {MAX_CLIENT_NAME_LEN}")]
    ClientNameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::ClientMessage {}
    impl Sealed for crate::DaemonMessage {}
}

/// A message type that can be framed: [`ClientMessage`] or [`DaemonMessage`].
///
/// Sealed: the set of messages is the protocol, defined only here.
pub trait WireMessage: sealed::Sealed + Sized {
    /// The message's wire tag (see [`tag`]).
    fn tag(&self) -> u16;

    /// Whether this message must travel with exactly one file descriptor.
    fn carries_fd(&self) -> bool;

    /// Appends the body (everything after the tag) to `out`.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes a body given its tag. `body` is exactly the frame's body.
    fn decode_body(tag: u16, body: &[u8]) -> Result<Self, DecodeError>;
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
pub fn encode_frame_into<M: WireMessage>(msg: &M, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = (|| {
        out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
        out.extend_from_slice(&msg.tag().to_le_bytes());
        msg.encode_body(out)?;
        let frame_len = out.len() - start;
        if frame_len > MAX_FRAME_LEN {
            return Err(EncodeError::FrameTooLarge { len: frame_len });
        }
        // Cannot fail: frame_len <= MAX_FRAME_LEN, which fits in u32.
        let len = u32::try_from(frame_len - LENGTH_PREFIX_LEN)
            .map_err(|_| EncodeError::FrameTooLarge { len: frame_len })?;
        out[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `msg` as one frame.
pub fn encode_frame<M: WireMessage>(msg: &M) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_frame_into(msg, &mut out)?;
    Ok(out)
}

/// Reads a length prefix and returns the size of the whole frame, prefix
/// included, after checking it against [`MAX_FRAME_LEN`].
///
/// Lets a stream reader learn how much to read, and refuse an oversized frame,
/// before it allocates or reads the body.
pub fn frame_len(prefix: [u8; LENGTH_PREFIX_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(prefix);
    if (len as usize) < 2 {
        return Err(DecodeError::FrameTooSmall { len });
    }
    let total = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(LENGTH_PREFIX_LEN))
        .unwrap_or(usize::MAX);
    if total > MAX_FRAME_LEN {
        return Err(DecodeError::FrameTooLarge { len: total });
    }
    Ok(total)
}

/// Decodes the first frame in `bytes`, returning the message and the number of
/// bytes it took. Never consumes more than `bytes.len()`, never panics.
///
/// [`DecodeError::Truncated`] means `bytes` holds only part of a frame; every
/// other error means the frame is bad.
pub fn decode_frame<M: WireMessage>(bytes: &[u8]) -> Result<(M, usize), DecodeError> {
    let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Err(DecodeError::Truncated {
            needed: LENGTH_PREFIX_LEN,
            available: bytes.len(),
        });
    };
    let total = frame_len(*prefix)?;
    let Some(frame) = bytes.get(..total) else {
        return Err(DecodeError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    // frame_len guarantees at least the two tag bytes after the prefix.
    let (tag_bytes, body) = frame[LENGTH_PREFIX_LEN..].split_at(2);
    let tag = u16::from_le_bytes([tag_bytes[0], tag_bytes[1]]);
    let msg = M::decode_body(tag, body)?;
    Ok((msg, total))
}

fn check_topic(id: u32, name: &str) -> Result<(), EncodeError> {
    validate_topic_name(name).map_err(|source| EncodeError::InvalidTopicName {
        id,
        name: name.to_owned(),
        source,
    })
}

/// Encodes a list count after checking the per-message topic limit.
fn write_count(w: &mut Writer<'_>, count: usize) -> Result<(), EncodeError> {
    if count > MAX_TOPICS_PER_HELLO {
        return Err(EncodeError::TooManyTopics { count });
    }
    // Cannot fail: MAX_TOPICS_PER_HELLO fits in u16.
    w.u16(u16::try_from(count).map_err(|_| EncodeError::TooManyTopics { count })?);
    Ok(())
}

/// Reads a list count, refusing it before anything is allocated if it is over
/// the limit, and returns it with a preallocation the frame can back.
fn read_count(r: &mut Reader<'_>, min_entry_len: usize) -> Result<(usize, usize), DecodeError> {
    let count = usize::from(r.u16("topic count")?);
    if count > MAX_TOPICS_PER_HELLO {
        return Err(DecodeError::TooManyTopics { count });
    }
    Ok((count, count.min(r.remaining() / min_entry_len)))
}

fn read_topic_name(r: &mut Reader<'_>, id: u32) -> Result<String, DecodeError> {
    let name = r.name("topic name")?;
    validate_topic_name(&name).map_err(|source| DecodeError::InvalidTopicName { id, source })?;
    Ok(name)
}

fn read_version(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let version = r.u16("protocol_version")?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    Ok(version)
}

fn read_refusal_code(r: &mut Reader<'_>) -> Result<RefusalCode, DecodeError> {
    let value = r.u16("reason")?;
    RefusalCode::from_wire(value).ok_or(DecodeError::UnknownRefusalCode(value))
}

impl WireMessage for ClientMessage {
    fn tag(&self) -> u16 {
        match self {
            ClientMessage::Hello(_) => tag::HELLO,
            ClientMessage::RegisterTopic(_) => tag::REGISTER_TOPIC,
            ClientMessage::StatusRequest(_) => tag::STATUS_REQUEST,
        }
    }

    fn carries_fd(&self) -> bool {
        ClientMessage::carries_fd(self)
    }

    /// `Hello` encodes whatever `protocol_version` it holds, so tests can
    /// produce frames of other versions; the decoder refuses those.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut w = Writer::new(out);
        match self {
            ClientMessage::Hello(hello) => {
                if hello.client_name.len() > MAX_CLIENT_NAME_LEN {
                    return Err(EncodeError::ClientNameTooLong {
                        len: hello.client_name.len(),
                    });
                }
                w.u16(hello.protocol_version);
                w.u32(hello.client_pid);
                w.name(&hello.client_name)?;
                write_count(&mut w, hello.topics.len())?;
                for binding in &hello.topics {
                    check_topic(binding.id, &binding.name)?;
                    w.u32(binding.id);
                    w.name(&binding.name)?;
                    check_growing_frame(&w)?;
                }
            }
            ClientMessage::RegisterTopic(reg) => {
                check_topic(reg.id, &reg.name)?;
                w.u32(reg.id);
                w.name(&reg.name)?;
            }
            ClientMessage::StatusRequest(req) => w.bool(req.json),
        }
        Ok(())
    }

    fn decode_body(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let msg = match tag {
            tag::HELLO => {
                let protocol_version = read_version(&mut r)?;
                let client_pid = r.u32("client_pid")?;
                let client_name = r.name("client_name")?;
                if client_name.len() > MAX_CLIENT_NAME_LEN {
                    return Err(DecodeError::ClientNameTooLong {
                        len: client_name.len(),
                    });
                }
                let (count, prealloc) = read_count(&mut r, MIN_BINDING_WIRE_LEN)?;
                let mut topics = Vec::with_capacity(prealloc);
                for _ in 0..count {
                    let id = r.u32("topic id")?;
                    let name = read_topic_name(&mut r, id)?;
                    topics.push(TopicBinding { id, name });
                }
                ClientMessage::Hello(Hello {
                    protocol_version,
                    client_pid,
                    client_name,
                    topics,
                })
            }
            tag::REGISTER_TOPIC => {
                let id = r.u32("topic id")?;
                let name = read_topic_name(&mut r, id)?;
                ClientMessage::RegisterTopic(RegisterTopic { id, name })
            }
            tag::STATUS_REQUEST => ClientMessage::StatusRequest(StatusRequest {
                json: r.bool("json")?,
            }),
            other if is_daemon_tag(other) => return Err(DecodeError::WrongDirection(other)),
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl WireMessage for DaemonMessage {
    fn tag(&self) -> u16 {
        match self {
            DaemonMessage::Welcome(_) => tag::WELCOME,
            DaemonMessage::Refused(_) => tag::REFUSED,
            DaemonMessage::TopicAccepted(_) => tag::TOPIC_ACCEPTED,
            DaemonMessage::TopicRefused(_) => tag::TOPIC_REFUSED,
            DaemonMessage::StatusReply(_) => tag::STATUS_REPLY,
        }
    }

    fn carries_fd(&self) -> bool {
        false
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut w = Writer::new(out);
        match self {
            DaemonMessage::Welcome(welcome) => {
                w.u16(welcome.protocol_version);
                w.u64(welcome.client_id);
                write_count(&mut w, welcome.topics.len())?;
                for verdict in &welcome.topics {
                    w.u32(verdict.id);
                    w.bool(verdict.accepted);
                    w.text(&verdict.message)?;
                    check_growing_frame(&w)?;
                }
            }
            DaemonMessage::Refused(refused) => {
                w.u16(refused.reason.to_wire());
                w.text(&refused.message)?;
            }
            DaemonMessage::TopicAccepted(accepted) => w.u32(accepted.id),
            DaemonMessage::TopicRefused(refused) => {
                w.u32(refused.id);
                w.u16(refused.reason.to_wire());
                w.text(&refused.message)?;
            }
            DaemonMessage::StatusReply(reply) => w.text(&reply.body)?,
        }
        Ok(())
    }

    fn decode_body(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let msg = match tag {
            tag::WELCOME => {
                let protocol_version = read_version(&mut r)?;
                let client_id = r.u64("client_id")?;
                let (count, prealloc) = read_count(&mut r, MIN_VERDICT_WIRE_LEN)?;
                let mut topics = Vec::with_capacity(prealloc);
                for _ in 0..count {
                    topics.push(TopicVerdict {
                        id: r.u32("topic id")?,
                        accepted: r.bool("accepted")?,
                        message: r.text("message")?,
                    });
                }
                DaemonMessage::Welcome(Welcome {
                    protocol_version,
                    client_id,
                    topics,
                })
            }
            tag::REFUSED => DaemonMessage::Refused(Refused {
                reason: read_refusal_code(&mut r)?,
                message: r.text("message")?,
            }),
            tag::TOPIC_ACCEPTED => DaemonMessage::TopicAccepted(TopicAccepted {
                id: r.u32("topic id")?,
            }),
            tag::TOPIC_REFUSED => DaemonMessage::TopicRefused(TopicRefused {
                id: r.u32("topic id")?,
                reason: read_refusal_code(&mut r)?,
                message: r.text("message")?,
            }),
            tag::STATUS_REPLY => DaemonMessage::StatusReply(StatusReply {
                body: r.text("body")?,
            }),
            other if is_client_tag(other) => return Err(DecodeError::WrongDirection(other)),
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn is_client_tag(value: u16) -> bool {
    matches!(
        value,
        tag::HELLO | tag::REGISTER_TOPIC | tag::STATUS_REQUEST
    )
}

fn is_daemon_tag(value: u16) -> bool {
    matches!(
        value,
        tag::WELCOME | tag::REFUSED | tag::TOPIC_ACCEPTED | tag::TOPIC_REFUSED | tag::STATUS_REPLY
    )
}

/// Stops a list early rather than copy megabytes into a frame that will be
/// refused anyway; `encode_frame_into` makes the exact check at the end.
fn check_growing_frame(w: &Writer<'_>) -> Result<(), EncodeError> {
    let len = FRAME_HEADER_LEN + w.written();
    if len > MAX_FRAME_LEN {
        return Err(EncodeError::FrameTooLarge { len });
    }
    Ok(())
}
