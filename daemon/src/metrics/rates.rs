//! Rates over a sliding window, for `shmkafkad status`: the supervisor
//! samples the counters about once a second, and a rate is the difference
//! between the newest and the oldest sample in the window.
//!
//! Prometheus computes its own rates from the counters; this is for the
//! human at the terminal and for the drain threads' busy ratio.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::metrics::snapshot::{ClientSnapshot, DrainSnapshot};

/// Span the rates cover.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Least time between two samples.
pub const EVERY: Duration = Duration::from_secs(1);
/// Rates over a shorter span than this are noise; none is reported.
const MIN_SPAN: Duration = Duration::from_millis(500);

/// Records per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Handed to librdkafka.
    pub produced: f64,
    /// Acknowledged.
    pub delivered: f64,
    /// Failed permanently.
    pub failed: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    produced: u64,
    delivered: u64,
    failed: u64,
}

impl Counts {
    fn rate_since(&self, earlier: &Counts, seconds: f64) -> Rate {
        let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        Rate {
            produced: per_second(self.produced, earlier.produced),
            delivered: per_second(self.delivered, earlier.delivered),
            failed: per_second(self.failed, earlier.failed),
        }
    }
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    clients: HashMap<u64, Counts>,
    total: Counts,
    /// Per drain thread: nanoseconds idle so far.
    idle_ns: Vec<u64>,
}

/// Rates between the oldest and newest sample of the window.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// Seconds the rates cover (0 when there are none yet).
    pub span_seconds: f64,
    /// Per client id, over the part of the window the client was sampled
    /// in; absent until it was sampled twice, half a second apart.
    pub clients: HashMap<u64, Rate>,
    /// All clients, including those gone during the window.
    pub total: Rate,
    /// Per drain thread: share of wall time not spent waiting for work.
    pub busy: Vec<f64>,
}

/// A short history of counter samples.
#[derive(Debug, Default)]
pub struct Sampler {
    samples: VecDeque<Sample>,
}

impl Sampler {
    /// Records a sample if the last one is at least [`EVERY`] old, and drops
    /// samples that fell out of the window.
    pub fn record(&mut self, now: Instant, clients: &[ClientSnapshot], drains: &[DrainSnapshot]) {
        if self
            .samples
            .back()
            .is_some_and(|last| now.duration_since(last.at) < EVERY)
        {
            return;
        }
        let counts = |c: &ClientSnapshot| Counts {
            produced: c.produced,
            delivered: c.delivered,
            failed: c.failed,
        };
        // Drain threads count every client, including those already gone.
        let total = drains.iter().fold(Counts::default(), |sum, d| Counts {
            produced: sum.produced + d.produced,
            delivered: sum.delivered + d.delivered,
            failed: sum.failed + d.failed,
        });
        self.samples.push_back(Sample {
            at: now,
            clients: clients.iter().map(|c| (c.id, counts(c))).collect(),
            total,
            idle_ns: drains.iter().map(|d| d.idle_ns).collect(),
        });
        // Keep one sample at least WINDOW old, so a mature window spans it.
        while self
            .samples
            .get(1)
            .is_some_and(|second| now.duration_since(second.at) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Rates over the window, or empty rates while it spans too little.
    pub fn rates(&self) -> Rates {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rates::default();
        };
        let span = last.at.duration_since(first.at);
        if span < MIN_SPAN {
            return Rates::default();
        }
        let seconds = span.as_secs_f64();
        Rates {
            span_seconds: seconds,
            // A client younger than the window is measured from the first
            // sample that has it.
            clients: last
                .clients
                .iter()
                .filter_map(|(id, now)| {
                    let (at, then) = self
                        .samples
                        .iter()
                        .find_map(|s| Some((s.at, s.clients.get(id)?)))?;
                    let span = last.at.duration_since(at);
                    (span >= MIN_SPAN).then(|| (*id, now.rate_since(then, span.as_secs_f64())))
                })
                .collect(),
            total: last.total.rate_since(&first.total, seconds),
            busy: last
                .idle_ns
                .iter()
                .zip(&first.idle_ns)
                .map(|(now, then)| {
                    let idle = now.saturating_sub(*then) as f64 / 1e9;
                    (1.0 - idle / seconds).clamp(0.0, 1.0)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency::LatencySnapshot;

    fn client(id: u64, delivered: u64) -> ClientSnapshot {
        ClientSnapshot {
            id,
            name: String::new(),
            pid: 1,
            uid: 0,
            connected: true,
            orphaned: false,
            quarantined: false,
            capacity: 4096,
            fill_bytes: 0,
            written_bytes: 0,
            topics: 1,
            produced: delivered,
            delivered,
            failed: 0,
            spooled: 0,
            full_events: 0,
            aborted: 0,
        }
    }

    fn drain(delivered: u64, idle_ns: u64) -> DrainSnapshot {
        DrainSnapshot {
            index: 0,
            clients: 1,
            produced: delivered,
            delivered,
            failed: 0,
            spooled: 0,
            reproduced: 0,
            retries: 0,
            producer_rebuilds: 0,
            transactions_committed: 0,
            transactions_aborted: 0,
            recovered_from_progress: 0,
            idle_ns,
            latency: LatencySnapshot::default(),
        }
    }

    #[test]
    fn rates_span_the_window() {
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        sampler.record(t0, &[client(1, 0)], &[drain(0, 0)]);
        assert!(sampler.rates().clients.is_empty(), "one sample: no rate");
        // Too soon: ignored.
        sampler.record(
            t0 + Duration::from_millis(10),
            &[client(1, 999)],
            &[drain(999, 0)],
        );
        sampler.record(
            t0 + Duration::from_secs(2),
            &[client(1, 2_000), client(2, 5)],
            &[drain(2_005, 500_000_000)],
        );
        let rates = sampler.rates();
        assert_eq!(rates.span_seconds, 2.0);
        assert_eq!(rates.clients[&1].delivered, 1_000.0);
        assert!(!rates.clients.contains_key(&2), "client 2 was sampled once");
        assert_eq!(rates.total.delivered, 2_005.0 / 2.0);
        assert_eq!(rates.busy, vec![0.75]);

        sampler.record(
            t0 + Duration::from_secs(4),
            &[client(1, 2_000), client(2, 405)],
            &[drain(2_405, 500_000_000)],
        );
        let rates = sampler.rates();
        assert_eq!(rates.clients[&2].delivered, 200.0, "over its own 2 s");
        assert_eq!(rates.clients[&1].delivered, 500.0, "over the whole 4 s");

        // Old samples leave the window.
        let late = t0 + WINDOW + Duration::from_secs(3);
        sampler.record(late, &[client(1, 2_000)], &[drain(2_005, 500_000_000)]);
        let rates = sampler.rates();
        assert_eq!(
            rates.span_seconds,
            (WINDOW + Duration::from_secs(1)).as_secs_f64()
        );
        assert_eq!(rates.clients[&1].delivered, 0.0);
    }
}
