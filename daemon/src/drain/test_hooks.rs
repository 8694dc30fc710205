//! Faults the tests provoke in a running daemon through its environment.
//! Unset in production, where each costs one check of a cached `None`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::warn;

use crate::kafka::{KafkaErrorCode, Producer};

/// Environment variable naming a file whose existence wedges idle drain
/// threads: lets the watchdog test prove that pings stop when a drain thread
/// stops making progress. Checked only when idle.
pub const STALL_FILE_ENV: &str = "SHMKAFKAD_TEST_STALL_FILE";

/// Environment variable naming a file whose appearance makes one drain
/// thread raise a fatal error on its producer (`rd_kafka_test_fatal_error`),
/// as librdkafka does when idempotence state is lost. The thread that
/// removes the file raises it, so each file raises one error.
pub const FATAL_FILE_ENV: &str = "SHMKAFKAD_TEST_FATAL_FILE";

/// The code the fatal-error hook raises: an idempotent producer's
/// `INVALID_PRODUCER_EPOCH` (Kafka error 47).
const INJECTED_FATAL: KafkaErrorCode = KafkaErrorCode::from_raw(47);

/// Sleeps while the stall file exists.
pub(super) fn stall_if_asked() {
    static STALL_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(path) = STALL_FILE.get_or_init(|| std::env::var_os(STALL_FILE_ENV).map(Into::into))
    {
        while path.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Raises a fatal error on `producer` if the fatal-error file appeared.
pub(super) fn fatal_error_if_asked(producer: &Producer) {
    static FATAL_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(path) = FATAL_FILE.get_or_init(|| std::env::var_os(FATAL_FILE_ENV).map(Into::into))
    else {
        return;
    };
    if std::fs::remove_file(path).is_ok() {
        warn!(file = %path.display(), "test hook: raising a fatal error on the producer");
        if let Err(e) = producer.inject_fatal_error_for_tests(INJECTED_FATAL, "test hook") {
            warn!(error = %e, "test hook: rd_kafka_test_fatal_error failed");
        }
    }
}
