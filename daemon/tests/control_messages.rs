//! The daemon's handling of control messages against hostile and random
//! input, on stable Rust: the in-process control server of
//! `shmkafkad::fuzzing` (which the nightly fuzz target in `daemon/fuzz`
//! drives too) is fed crafted messages that once crashed or bloated the
//! daemon, then valid frames with random mutations. It must keep serving,
//! its memory must stay bounded and no registration may outlive its
//! connection.

use std::time::{Duration, Instant};

use shmkafka_protocol::{
    encode_frame, ClientMessage, Hello, RegisterTopic, TopicBinding, PROTOCOL_VERSION,
};
use shmkafkad::fuzzing::ControlHarness;

fn hello(topics: &[(u32, &str)]) -> Vec<u8> {
    encode_frame(&ClientMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_pid: 1,
        client_name: "fuzz".to_owned(),
        topics: topics
            .iter()
            .map(|&(id, name)| TopicBinding {
                id,
                name: name.to_owned(),
            })
            .collect(),
    }))
    .unwrap()
}

fn register(id: u32, name: &str) -> Vec<u8> {
    encode_frame(&ClientMessage::RegisterTopic(RegisterTopic {
        id,
        name: name.to_owned(),
    }))
    .unwrap()
}

fn private_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// xorshift64*: deterministic mutations without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn hostile_and_random_control_messages_leave_the_server_serving() {
    let harness = ControlHarness::start();
    let before = private_kib();
    let crafted: Vec<Vec<u8>> = vec![
        hello(&[(4_000_000_000, "t")]),
        hello(&[(50_000_000, "t"), (u32::MAX, "t")]),
        [
            hello(&[(0, "t")]),
            register(u32::MAX, "t"),
            register(4096, "t"),
            register(4095, "t"),
        ]
        .concat(),
        hello(&(0..4096).map(|i| (i * 1000, "t")).collect::<Vec<_>>()),
        [hello(&[]), hello(&[])].concat(),
        register(1, "before-hello"),
        vec![0xff; 64],
    ];
    for input in &crafted {
        harness.feed(input);
        harness.assert_serving();
    }
    let grown = private_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "crafted messages cost the server {grown} KiB"
    );

    let seeds = [
        hello(&[(0, "orders"), (7, "logs.app")]),
        [hello(&[(1, "a")]), register(2, "b"), register(3, "c")].concat(),
    ];
    let mut state = 0x5eed_u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut inputs = 0;
    while inputs < 400 && Instant::now() < deadline {
        let mut input = seeds[inputs % seeds.len()].clone();
        for _ in 0..1 + next(&mut state) % 4 {
            let at = (next(&mut state) % input.len() as u64) as usize;
            match next(&mut state) % 3 {
                0 => input[at] = next(&mut state) as u8,
                1 => input[at] ^= 1 << (next(&mut state) % 8),
                _ => input.truncate(at.max(1)),
            }
        }
        harness.feed(&input);
        inputs += 1;
    }
    harness.assert_serving();
    // Every connection is closed: no registration outlives it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while harness.clients() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} clients still registered",
            harness.clients()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let grown = private_kib().saturating_sub(before);
    assert!(
        grown < 64 << 10,
        "{inputs} inputs cost the server {grown} KiB"
    );
    eprintln!(
        "{} crafted and {inputs} random inputs; private memory +{grown} KiB",
        crafted.len()
    );
}
