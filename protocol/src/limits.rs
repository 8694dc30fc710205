//! Protocol constants and the limits both sides enforce, with the checks that
//! go with them.
//!
//! The codec applies every check here on encode *and* on decode, so a message
//! that encodes is exactly a message that decodes.

use thiserror::Error;

/// Version of the control protocol spoken by this crate.
///
/// Carried in `Hello` and `Welcome`. The `Hello` tag and its leading
/// `protocol_version` field keep their layout in every version, so a daemon can
/// always read the version of a client it does not understand and refuse it
/// with `UnsupportedVersion` rather than `Malformed`.
pub const PROTOCOL_VERSION: u16 = 1;

/// Where `shmkafkad` listens when neither an explicit path nor
/// [`SOCKET_PATH_ENV`] says otherwise. `/run/shmkafka` is the systemd
/// `RuntimeDirectory=` of the daemon.
pub const DEFAULT_SOCKET_PATH: &str = "/run/shmkafka/shmkafkad.sock";

/// Environment variable that overrides [`DEFAULT_SOCKET_PATH`].
pub const SOCKET_PATH_ENV: &str = "SHMKAFKA_SOCKET";

/// Largest frame on the wire, header included, in bytes.
///
/// Control messages are small; the bound keeps a hostile peer from making the
/// daemon allocate more than this per connection.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Longest legal Kafka topic name in bytes (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Longest client name in bytes. It only labels the client in logs and
/// metrics, so it need not be long.
pub const MAX_CLIENT_NAME_LEN: usize = 256;

/// Most topic bindings in one `Hello` (and verdicts in one `Welcome`).
///
/// The frame limit binds first when names are long: a client with more
/// bindings than fit in one frame sends the rest as `RegisterTopic` after
/// `Welcome`.
pub const MAX_TOPICS_PER_HELLO: usize = 4096;

/// Why a topic name is not a legal Kafka topic name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicNameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`] bytes.
    #[error("topic name is {len} bytes long, the limit is {MAX_TOPIC_NAME_LEN}")]
    TooLong {
        /// Length of the offending name in bytes.
        len: usize,
    },
    /// The name is `.` or `..`, which Kafka refuses because they are path
    /// components in the broker's log directory.
    #[error("topic name may not be \".\" or \"..\"")]
    DotName,
    /// The name holds a character outside `[a-zA-Z0-9._-]`.
    #[error("topic name has illegal character {ch:?} at byte {index}; allowed are [a-zA-Z0-9._-]")]
    IllegalChar {
        /// The first illegal character.
        ch: char,
        /// Its byte offset in the name.
        index: usize,
    },
}

/// Checks that `name` is a topic name Kafka would accept.
///
/// The same rule as Kafka's `org.apache.kafka.common.internals.Topic.validate`:
/// non-empty, at most 249 bytes, not `.` or `..`, only `[a-zA-Z0-9._-]`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::DotName);
    }
    match name
        .char_indices()
        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
    {
        Some((index, ch)) => Err(TopicNameError::IllegalChar { ch, index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for name in [
            "a",
            "orders",
            "orders.v2",
            "my_topic-1",
            "..a",
            &"x".repeat(249),
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_each_illegal_shape_with_its_own_error() {
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(
            validate_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong { len: 250 })
        );
        assert_eq!(validate_topic_name("."), Err(TopicNameError::DotName));
        assert_eq!(validate_topic_name(".."), Err(TopicNameError::DotName));
        assert_eq!(
            validate_topic_name("a b"),
            Err(TopicNameError::IllegalChar { ch: ' ', index: 1 })
        );
        assert_eq!(
            validate_topic_name("topicé"),
            Err(TopicNameError::IllegalChar { ch: 'é', index: 5 })
        );
        assert_eq!(
            validate_topic_name("a/b"),
            Err(TopicNameError::IllegalChar { ch: '/', index: 1 })
        );
    }
}
