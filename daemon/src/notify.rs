//! systemd readiness, status and watchdog notifications (`sd_notify`).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::debug;

/// Talks to the service manager.
pub struct Notifier {
    /// Half the watchdog interval, if systemd asked for pings.
    watchdog_every: Option<Duration>,
    last_ping: Instant,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC`; pings will be due at half of it.
    pub fn from_env() -> Self {
        let mut usec = 0u64;
        let watchdog_every =
            sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2));
        Self {
            watchdog_every,
            last_ping: Instant::now(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(false, states) {
            debug!(error = %e, "sd_notify failed");
        }
    }

    /// The socket is bound and the producers are configured.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A human-readable status line for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    /// A reload begins (followed by `ready` when it is done).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// A graceful stop begins.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Whether the watchdog is enabled.
    pub fn watchdog_enabled(&self) -> bool {
        self.watchdog_every.is_some()
    }

    /// Pings the watchdog if one is due and `healthy`; an unhealthy daemon
    /// stays silent so systemd restarts it.
    pub fn watchdog(&mut self, healthy: bool) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if healthy && self.last_ping.elapsed() >= every {
            self.send(&[NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }
}
