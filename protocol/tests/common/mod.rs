//! Sample messages shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use shmkafka_protocol::*;

pub fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        client_pid: 4242,
        client_name: "billing-svc ✓".to_owned(),
        topics: vec![
            TopicBinding {
                id: 0,
                name: "orders".to_owned(),
            },
            TopicBinding {
                id: 1,
                name: "audit.events_v2-eu".to_owned(),
            },
        ],
    }
}

/// One of every client message, with edge values (empty lists, zero ids).
pub fn client_messages() -> Vec<ClientMessage> {
    vec![
        hello().into(),
        Hello {
            protocol_version: PROTOCOL_VERSION,
            client_pid: 0,
            client_name: String::new(),
            topics: Vec::new(),
        }
        .into(),
        RegisterTopic {
            id: u32::MAX,
            name: "x".repeat(MAX_TOPIC_NAME_LEN),
        }
        .into(),
        StatusRequest { json: true }.into(),
        StatusRequest { json: false }.into(),
    ]
}

/// One of every daemon message, with each refusal code.
pub fn daemon_messages() -> Vec<DaemonMessage> {
    let mut messages: Vec<DaemonMessage> = vec![
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            client_id: u64::MAX,
            topics: vec![
                TopicVerdict {
                    id: 0,
                    accepted: true,
                    message: String::new(),
                },
                TopicVerdict {
                    id: 1,
                    accepted: false,
                    message: "not on the access list".to_owned(),
                },
            ],
        }
        .into(),
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            client_id: 0,
            topics: Vec::new(),
        }
        .into(),
        TopicAccepted { id: 7 }.into(),
        StatusReply {
            body: "{\"clients\":[]}".to_owned(),
        }
        .into(),
    ];
    for reason in RefusalCode::ALL {
        messages.push(
            Refused {
                reason,
                message: format!("because {reason}"),
            }
            .into(),
        );
        messages.push(
            TopicRefused {
                id: 3,
                reason,
                message: "nope".to_owned(),
            }
            .into(),
        );
    }
    messages
}

/// Builds a frame by hand from a tag and body, bypassing the encoder's checks.
pub fn raw_frame(tag: u16, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&(2 + body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&tag.to_le_bytes());
    frame.extend_from_slice(body);
    frame
}
