//! Encoding and decoding: round trips, the pinned wire format, and one test
//! per decode and encode error.

mod common;

use common::{client_messages, daemon_messages, raw_frame};
use shmkafka_protocol::codec::tag;
use shmkafka_protocol::*;

#[test]
fn every_client_message_round_trips() {
    for msg in client_messages() {
        let frame = encode_frame(&msg).unwrap();
        assert_eq!(
            decode_frame::<ClientMessage>(&frame),
            Ok((msg, frame.len()))
        );
    }
}

#[test]
fn every_daemon_message_round_trips() {
    for msg in daemon_messages() {
        let frame = encode_frame(&msg).unwrap();
        assert_eq!(
            decode_frame::<DaemonMessage>(&frame),
            Ok((msg, frame.len()))
        );
    }
}

#[test]
fn decode_consumes_one_frame_of_a_stream() {
    let mut stream = Vec::new();
    let messages = client_messages();
    for msg in &messages {
        encode_frame_into(msg, &mut stream).unwrap();
    }
    let mut rest = &stream[..];
    for msg in &messages {
        let (decoded, used) = decode_frame::<ClientMessage>(rest).unwrap();
        assert_eq!(&decoded, msg);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn wire_format_is_pinned() {
    // If this changes, PROTOCOL_VERSION must change with it.
    let frame = encode_frame(&ClientMessage::RegisterTopic(RegisterTopic {
        id: 0x0102_0304,
        name: "ab".to_owned(),
    }))
    .unwrap();
    assert_eq!(
        frame,
        [10, 0, 0, 0, 0x02, 0x00, 0x04, 0x03, 0x02, 0x01, 2, 0, b'a', b'b']
    );

    let frame = encode_frame(&DaemonMessage::Refused(Refused {
        reason: RefusalCode::NotAuthorized,
        message: "no".to_owned(),
    }))
    .unwrap();
    assert_eq!(
        frame,
        [10, 0, 0, 0, 0x02, 0x80, 2, 0, 2, 0, 0, 0, b'n', b'o']
    );

    let frame = encode_frame(&ClientMessage::Hello(Hello {
        protocol_version: 1,
        client_pid: 5,
        client_name: "c".to_owned(),
        topics: vec![TopicBinding {
            id: 9,
            name: "t".to_owned(),
        }],
    }))
    .unwrap();
    #[rustfmt::skip]
    let expected = [
        20, 0, 0, 0,  0x01, 0x00,   // length, tag
        1, 0,                       // version
        5, 0, 0, 0,                 // pid
        1, 0, b'c',                 // client name
        1, 0,                       // topic count
        9, 0, 0, 0, 1, 0, b't',     // binding
    ];
    assert_eq!(frame, expected);
}

#[test]
fn daemon_tags_have_the_direction_bit_and_client_tags_do_not() {
    for msg in daemon_messages() {
        assert_ne!(msg.tag() & tag::DAEMON_BIT, 0);
    }
    for msg in client_messages() {
        assert_eq!(msg.tag() & tag::DAEMON_BIT, 0);
    }
}

#[test]
fn every_strict_prefix_of_a_frame_is_truncated() {
    let frame = encode_frame(&ClientMessage::from(common::hello())).unwrap();
    for cut in 0..frame.len() {
        let err = decode_frame::<ClientMessage>(&frame[..cut]).unwrap_err();
        let needed = if cut < LENGTH_PREFIX_LEN {
            LENGTH_PREFIX_LEN
        } else {
            frame.len()
        };
        assert_eq!(
            err,
            DecodeError::Truncated {
                needed,
                available: cut
            }
        );
        assert!(err.is_incomplete());
    }
}

#[test]
fn oversized_length_prefix_is_refused_before_the_body_arrives() {
    let err = decode_frame::<ClientMessage>(&u32::MAX.to_le_bytes()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FrameTooLarge {
            len: u32::MAX as usize + 4
        }
    );
    // One byte over the limit.
    let len = (MAX_FRAME_LEN - LENGTH_PREFIX_LEN + 1) as u32;
    assert_eq!(
        decode_frame::<DaemonMessage>(&len.to_le_bytes()),
        Err(DecodeError::FrameTooLarge {
            len: MAX_FRAME_LEN + 1
        })
    );
    assert!(!err.is_incomplete());
}

#[test]
fn frame_of_exactly_the_maximum_size_is_accepted() {
    let body = "b".repeat(MAX_FRAME_LEN - FRAME_HEADER_LEN - 4);
    let msg = DaemonMessage::StatusReply(StatusReply { body });
    let frame = encode_frame(&msg).unwrap();
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert_eq!(decode_frame(&frame), Ok((msg, MAX_FRAME_LEN)));
}

#[test]
fn length_too_small_for_a_tag_is_refused() {
    for len in [0u32, 1] {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_frame::<ClientMessage>(&bytes),
            Err(DecodeError::FrameTooSmall { len })
        );
    }
}

#[test]
fn unknown_tag_is_refused_by_both_directions() {
    let frame = raw_frame(0x0077, &[]);
    assert_eq!(
        decode_frame::<ClientMessage>(&frame),
        Err(DecodeError::UnknownTag(0x0077))
    );
    assert_eq!(
        decode_frame::<DaemonMessage>(&frame),
        Err(DecodeError::UnknownTag(0x0077))
    );
    let frame = raw_frame(0x8077, &[]);
    assert_eq!(
        decode_frame::<ClientMessage>(&frame),
        Err(DecodeError::UnknownTag(0x8077))
    );
}

#[test]
fn message_sent_the_wrong_way_is_named_as_such() {
    let frame = encode_frame(&DaemonMessage::TopicAccepted(TopicAccepted { id: 1 })).unwrap();
    assert_eq!(
        decode_frame::<ClientMessage>(&frame),
        Err(DecodeError::WrongDirection(tag::TOPIC_ACCEPTED))
    );
    let frame = encode_frame(&ClientMessage::StatusRequest(StatusRequest { json: true })).unwrap();
    assert_eq!(
        decode_frame::<DaemonMessage>(&frame),
        Err(DecodeError::WrongDirection(tag::STATUS_REQUEST))
    );
}

#[test]
fn field_running_past_the_frame_is_short_body() {
    // RegisterTopic with its id but no name.
    let frame = raw_frame(tag::REGISTER_TOPIC, &7u32.to_le_bytes());
    assert_eq!(
        decode_frame::<ClientMessage>(&frame),
        Err(DecodeError::ShortBody {
            field: "topic name"
        })
    );
    // A name length pointing past the end of the frame.
    let mut body = 7u32.to_le_bytes().to_vec();
    body.extend_from_slice(&200u16.to_le_bytes());
    body.extend_from_slice(b"abc");
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::REGISTER_TOPIC, &body)),
        Err(DecodeError::ShortBody {
            field: "topic name"
        })
    );
    // A text length of u32::MAX.
    let mut body = 1u16.to_le_bytes().to_vec();
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_frame::<DaemonMessage>(&raw_frame(tag::REFUSED, &body)),
        Err(DecodeError::ShortBody { field: "message" })
    );
}

#[test]
fn invalid_utf8_is_bad_utf8() {
    let mut body = 1u16.to_le_bytes().to_vec();
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(
        decode_frame::<DaemonMessage>(&raw_frame(tag::REFUSED, &body)),
        Err(DecodeError::BadUtf8 { field: "message" })
    );
}

#[test]
fn bool_other_than_zero_or_one_is_refused() {
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::STATUS_REQUEST, &[2])),
        Err(DecodeError::BadBool {
            field: "json",
            value: 2
        })
    );
}

#[test]
fn unknown_refusal_code_is_refused() {
    let mut body = 99u16.to_le_bytes().to_vec();
    body.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        decode_frame::<DaemonMessage>(&raw_frame(tag::REFUSED, &body)),
        Err(DecodeError::UnknownRefusalCode(99))
    );
}

#[test]
fn hello_of_another_version_is_unsupported_even_if_its_body_is_different() {
    // A future version may lay out the rest of Hello differently: only the
    // version is read.
    let mut body = 2u16.to_le_bytes().to_vec();
    body.extend_from_slice(b"whatever version 2 says");
    let err = decode_frame::<ClientMessage>(&raw_frame(tag::HELLO, &body)).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedVersion { version: 2 });
    assert_eq!(err.refusal_code(), RefusalCode::UnsupportedVersion);

    // The encoder writes whatever version it is given, so tests can do this.
    let mut hello = common::hello();
    hello.protocol_version = 0;
    let frame = encode_frame(&ClientMessage::Hello(hello)).unwrap();
    assert_eq!(
        decode_frame::<ClientMessage>(&frame),
        Err(DecodeError::UnsupportedVersion { version: 0 })
    );
}

#[test]
fn too_many_topics_is_refused_on_both_sides() {
    let mut body = PROTOCOL_VERSION.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&4097u16.to_le_bytes());
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::HELLO, &body)),
        Err(DecodeError::TooManyTopics { count: 4097 })
    );

    let mut hello = common::hello();
    hello.topics = (0..=MAX_TOPICS_PER_HELLO as u32)
        .map(|id| TopicBinding {
            id,
            name: "t".to_owned(),
        })
        .collect();
    assert_eq!(
        encode_frame(&ClientMessage::Hello(hello)),
        Err(EncodeError::TooManyTopics { count: 4097 })
    );
}

#[test]
fn max_topics_with_short_names_fits_but_long_names_do_not() {
    let mut hello = common::hello();
    hello.client_name.clear();
    hello.topics = (0..MAX_TOPICS_PER_HELLO as u32)
        .map(|id| TopicBinding {
            id,
            name: format!("{:012}", id),
        })
        .collect();
    // 4096 * (4 + 2 + 12) bytes of bindings exceed 64 KiB: the client must
    // spill the rest into RegisterTopic.
    assert!(matches!(
        encode_frame(&ClientMessage::Hello(hello.clone())),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    hello.topics.truncate(4000);
    for binding in &mut hello.topics {
        binding.name.truncate(3);
    }
    let msg = ClientMessage::Hello(hello);
    let frame = encode_frame(&msg).unwrap();
    assert_eq!(decode_frame(&frame), Ok((msg, frame.len())));
}

#[test]
fn invalid_topic_name_is_refused_on_both_sides() {
    let mut body = 5u32.to_le_bytes().to_vec();
    body.extend_from_slice(&3u16.to_le_bytes());
    body.extend_from_slice(b"a b");
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::REGISTER_TOPIC, &body)),
        Err(DecodeError::InvalidTopicName {
            id: 5,
            source: TopicNameError::IllegalChar { ch: ' ', index: 1 }
        })
    );
    let too_long = "x".repeat(MAX_TOPIC_NAME_LEN + 1);
    assert_eq!(
        encode_frame(&ClientMessage::RegisterTopic(RegisterTopic {
            id: 5,
            name: too_long.clone(),
        })),
        Err(EncodeError::InvalidTopicName {
            id: 5,
            name: too_long,
            source: TopicNameError::TooLong { len: 250 }
        })
    );
    let mut hello = common::hello();
    hello.topics[1].name = "..".to_owned();
    assert!(matches!(
        encode_frame(&ClientMessage::Hello(hello)),
        Err(EncodeError::InvalidTopicName {
            id: 1,
            source: TopicNameError::DotName,
            ..
        })
    ));
}

#[test]
fn long_client_name_is_refused_on_both_sides() {
    let mut hello = common::hello();
    hello.client_name = "n".repeat(MAX_CLIENT_NAME_LEN + 1);
    assert_eq!(
        encode_frame(&ClientMessage::Hello(hello)),
        Err(EncodeError::ClientNameTooLong { len: 257 })
    );
    let mut body = PROTOCOL_VERSION.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&257u16.to_le_bytes());
    body.extend_from_slice(&[b'n'; 257]);
    body.extend_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::HELLO, &body)),
        Err(DecodeError::ClientNameTooLong { len: 257 })
    );
}

#[test]
fn trailing_bytes_in_a_body_are_refused() {
    assert_eq!(
        decode_frame::<ClientMessage>(&raw_frame(tag::STATUS_REQUEST, &[1, 0, 0])),
        Err(DecodeError::TrailingBytes { count: 2 })
    );
}

#[test]
fn oversized_message_does_not_encode_and_leaves_the_buffer_alone() {
    let mut out = vec![1, 2, 3];
    let msg = DaemonMessage::StatusReply(StatusReply {
        body: "b".repeat(MAX_FRAME_LEN),
    });
    assert!(matches!(
        encode_frame_into(&msg, &mut out),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    assert_eq!(out, [1, 2, 3]);
}
