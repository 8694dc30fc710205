//! The kit's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Why a test broker or the consumer failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A binary the kit runs does not exist.
    #[error("{name} not found (looked at: {searched:?}); {hint}")]
    BinaryNotFound {
        /// Binary name.
        name: String,
        /// Paths tried, in order.
        searched: Vec<PathBuf>,
        /// How to get it.
        hint: String,
    },
    /// The tansu broker is not installed: tests needing it should skip with a
    /// loud message (see [`TestkitError::is_not_installed`]).
    #[error(
        "tansu is not installed at {path:?}: SKIPPING tests that need it \
         (install: cargo install tansu --version 0.6.0 --features libsql --locked, \
         or set {env} to the binary)"
    )]
    TansuNotInstalled {
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides the path.
        env: &'static str,
    },
    /// Starting or talking to a child process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A child process did not get ready in time.
    #[error("{what} not ready after {after:?}")]
    NotReady {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A child process exited or printed something unexpected.
    #[error("{what}: {detail}")]
    Child {
        /// Which child and step.
        what: String,
        /// Exit status, output.
        detail: String,
    },
    /// The Kafka client used for verification failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// rust-rdkafka's error.
        source: rdkafka::error::KafkaError,
    },
}

impl TestkitError {
    /// True when an optional external broker is simply not installed, so the
    /// caller should skip (and say so) rather than fail.
    pub fn is_not_installed(&self) -> bool {
        matches!(self, Self::TansuNotInstalled { .. })
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    pub(crate) fn kafka(
        what: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let what = what.into();
        move |source| Self::Kafka { what, source }
    }
}
