//! Properties of the codec over generated input: decode after encode is the
//! identity, and decoding arbitrary bytes never panics and never claims more
//! bytes than it was given.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use shmkafka_protocol::codec::tag;
use shmkafka_protocol::*;

fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,249}"
        .prop_filter("Kafka refuses . and ..", |name| name != "." && name != "..")
}

fn client_name() -> impl Strategy<Value = String> {
    // Multi-byte characters included; the limit is in bytes.
    any::<String>().prop_map(|mut name| {
        while name.len() > MAX_CLIENT_NAME_LEN {
            name.pop();
        }
        name
    })
}

fn text() -> impl Strategy<Value = String> {
    ".{0,200}"
}

fn refusal_code() -> impl Strategy<Value = RefusalCode> {
    proptest::sample::select(RefusalCode::ALL.to_vec())
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let binding = (any::<u32>(), topic_name()).prop_map(|(id, name)| TopicBinding { id, name });
    prop_oneof![
        (any::<u32>(), client_name(), vec(binding, 0..24)).prop_map(
            |(client_pid, client_name, topics)| {
                ClientMessage::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    client_pid,
                    client_name,
                    topics,
                })
            }
        ),
        (any::<u32>(), topic_name())
            .prop_map(|(id, name)| ClientMessage::RegisterTopic(RegisterTopic { id, name })),
        any::<bool>().prop_map(|json| ClientMessage::StatusRequest(StatusRequest { json })),
    ]
}

fn daemon_message() -> impl Strategy<Value = DaemonMessage> {
    let verdict =
        (any::<u32>(), any::<bool>(), text()).prop_map(|(id, accepted, message)| TopicVerdict {
            id,
            accepted,
            message,
        });
    prop_oneof![
        (any::<u64>(), vec(verdict, 0..24)).prop_map(|(client_id, topics)| {
            DaemonMessage::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                client_id,
                topics,
            })
        }),
        (refusal_code(), text())
            .prop_map(|(reason, message)| DaemonMessage::Refused(Refused { reason, message })),
        any::<u32>().prop_map(|id| DaemonMessage::TopicAccepted(TopicAccepted { id })),
        (any::<u32>(), refusal_code(), text()).prop_map(|(id, reason, message)| {
            DaemonMessage::TopicRefused(TopicRefused {
                id,
                reason,
                message,
            })
        }),
        ".{0,2000}".prop_map(|body| DaemonMessage::StatusReply(StatusReply { body })),
    ]
}

/// Tags the decoders know, plus any value, so generated frames get past the
/// tag check often enough to exercise the body decoders.
fn any_tag() -> impl Strategy<Value = u16> {
    prop_oneof![
        proptest::sample::select(vec![
            tag::HELLO,
            tag::REGISTER_TOPIC,
            tag::STATUS_REQUEST,
            tag::WELCOME,
            tag::REFUSED,
            tag::TOPIC_ACCEPTED,
            tag::TOPIC_REFUSED,
            tag::STATUS_REPLY,
        ]),
        any::<u16>(),
    ]
}

/// Decodes with both decoders and checks the "no panic, no overrun" contract.
fn check_decoders(bytes: &[u8]) {
    if let Ok((_, used)) = decode_frame::<ClientMessage>(bytes) {
        assert!(used <= bytes.len());
    }
    if let Ok((_, used)) = decode_frame::<DaemonMessage>(bytes) {
        assert!(used <= bytes.len());
    }
}

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_message(), trailing in vec(any::<u8>(), 0..16)) {
        let mut bytes = encode_frame(&msg).unwrap();
        let len = bytes.len();
        // Whatever follows the frame in the stream is left alone.
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(decode_frame::<ClientMessage>(&bytes), Ok((msg, len)));
    }

    #[test]
    fn daemon_messages_round_trip(msg in daemon_message(), trailing in vec(any::<u8>(), 0..16)) {
        let mut bytes = encode_frame(&msg).unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(decode_frame::<DaemonMessage>(&bytes), Ok((msg, len)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        check_decoders(&bytes);
    }

    #[test]
    fn well_framed_arbitrary_bodies_never_panic(
        tag in any_tag(),
        body in vec(any::<u8>(), 0..512),
        extra in vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = common::raw_frame(tag, &body);
        let frame_len = bytes.len();
        bytes.extend_from_slice(&extra);
        check_decoders(&bytes);
        // A whole frame is either decoded whole or refused, never partly; and
        // what is accepted re-encodes to the same bytes (one frame per message).
        if let Ok((msg, used)) = decode_frame::<ClientMessage>(&bytes) {
            prop_assert_eq!(used, frame_len);
            prop_assert_eq!(encode_frame(&msg).unwrap(), &bytes[..used]);
        }
        if let Ok((msg, used)) = decode_frame::<DaemonMessage>(&bytes) {
            prop_assert_eq!(used, frame_len);
            prop_assert_eq!(encode_frame(&msg).unwrap(), &bytes[..used]);
        }
    }

    #[test]
    fn bytes_added_inside_a_frame_are_trailing_bytes(
        msg in client_message(),
        reply in daemon_message(),
        junk in vec(any::<u8>(), 1..16),
    ) {
        let grow = |mut frame: Vec<u8>| {
            frame.extend_from_slice(&junk);
            let len = (frame.len() - LENGTH_PREFIX_LEN) as u32;
            frame[..LENGTH_PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
            frame
        };
        let expected = Some(DecodeError::TrailingBytes { count: junk.len() });
        let client_frame = grow(encode_frame(&msg).unwrap());
        prop_assert_eq!(decode_frame::<ClientMessage>(&client_frame).err(), expected.clone());
        let daemon_frame = grow(encode_frame(&reply).unwrap());
        prop_assert_eq!(decode_frame::<DaemonMessage>(&daemon_frame).err(), expected);
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        msg in client_message(),
        reply in daemon_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for mut bytes in [encode_frame(&msg).unwrap(), encode_frame(&reply).unwrap()] {
            for (index, value) in &flips {
                let at = index.index(bytes.len());
                bytes[at] = *value;
            }
            check_decoders(&bytes);
        }
    }
}
