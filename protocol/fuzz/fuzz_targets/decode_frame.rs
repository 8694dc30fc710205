//! Feeds arbitrary bytes to both decoders as a stream of frames.
//!
//! Checks, beyond "no panic": a decoder never claims more bytes than it was
//! given, and every frame it accepts re-encodes to exactly the bytes it was
//! decoded from (the encoding is canonical, so a message has one frame).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkafka_protocol::{decode_frame, encode_frame, ClientMessage, DaemonMessage, WireMessage};

/// Decodes frames from the front of `bytes` until one fails.
fn decode_stream<M: WireMessage>(mut bytes: &[u8]) {
    while let Ok((msg, used)) = decode_frame::<M>(bytes) {
        assert!(
            used > 0 && used <= bytes.len(),
            "consumed {used} of {}",
            bytes.len()
        );
        let again = encode_frame(&msg).expect("a decoded message re-encodes");
        assert_eq!(again, &bytes[..used], "encoding is not canonical");
        bytes = &bytes[used..];
    }
}

fuzz_target!(|data: &[u8]| {
    decode_stream::<ClientMessage>(data);
    decode_stream::<DaemonMessage>(data);
});
