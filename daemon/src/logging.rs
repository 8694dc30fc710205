//! Where and how the daemon logs: always to stderr, coloured only on a
//! terminal, and with journald priorities under systemd.
//!
//! systemd connects a service's stderr to the journal and says so in
//! `JOURNAL_STREAM` (`DEVICE:INODE` of that stream). There each line starts
//! with an sd-daemon priority prefix (`<4>` for a warning, see
//! `sd-daemon(3)`), which journald strips and keeps as the entry's priority,
//! so `journalctl -p warning` finds warnings; the journal adds its own
//! timestamp, so the line has none. Elsewhere (a terminal, a file, a pipe)
//! lines are plain text with a timestamp, coloured only on a terminal.

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Set by systemd when stdout/stderr go to the journal.
pub const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// For journald: priority prefix, no timestamp, no colour.
    Journal,
    /// Plain text with a timestamp; colour on a terminal.
    Text {
        /// ANSI colours.
        ansi: bool,
    },
}

impl Style {
    /// The style for this process's stderr.
    pub fn for_stderr() -> Style {
        let stderr = std::io::stderr();
        let journal = std::env::var(JOURNAL_STREAM_ENV)
            .ok()
            .and_then(|value| parse_journal_stream(&value))
            .zip(nix::sys::stat::fstat(stderr.as_raw_fd()).ok())
            .is_some_and(|((dev, ino), stat)| stat.st_dev == dev && stat.st_ino == ino);
        if journal {
            Style::Journal
        } else {
            Style::Text {
                ansi: stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            }
        }
    }
}

/// `DEVICE:INODE`, both decimal, as systemd writes `JOURNAL_STREAM`.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority journald files a line of `level` under.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3, // err
        Level::WARN => 4,  // warning
        Level::INFO => 6,  // info
        _ => 7,            // debug
    }
}

/// Puts `<N>` before each line `F` formats.
struct PriorityPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for PriorityPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the global subscriber: `RUST_LOG` if set, else `filter`.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match Style::for_stderr() {
        Style::Journal => builder
            .with_ansi(false)
            .event_format(PriorityPrefix(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init(),
        Style::Text { ansi } => builder.with_ansi(ansi).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8-123"), None);
        assert_eq!(parse_journal_stream(":1"), None);
    }

    #[test]
    fn priorities_are_syslog_levels() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }
}
