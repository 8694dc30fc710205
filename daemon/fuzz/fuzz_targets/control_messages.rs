//! Feeds arbitrary bytes to a control server running in this process: the
//! frames that decode are sent as client messages over a real connection
//! (each `Hello` with a real sealed segment), so the fuzzer reaches the
//! daemon's registration, topic binding and quota code, not only the
//! decoder (`protocol/fuzz` covers that alone).
//!
//! Beyond "no panic in any thread and no allocation failure" (libFuzzer
//! aborts on either): the server still answers a status request after
//! every input.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shmkafkad::fuzzing::ControlHarness;

static HARNESS: LazyLock<ControlHarness> = LazyLock::new(ControlHarness::start);

fuzz_target!(|data: &[u8]| {
    HARNESS.feed(data);
    HARNESS.assert_serving();
});
