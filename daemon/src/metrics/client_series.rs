//! Per-client metric series keyed by a stable, bounded identity: the name
//! the client gave and its uid, never its pid or connection id (those would
//! make a new series at every restart of the client).
//!
//! Counters keep counting across the client's connections: what a ring
//! counted when it is released is kept under its key, and the live rings
//! of that key are added at scrape time, so a client that leaves does not
//! take its counters with it. The number of keys is capped
//! (`metrics.max_client_series`): a local process cycling names or uids
//! cannot grow the daemon's memory or the scrape; rings of keys beyond the
//! cap are counted together under `client="other",uid="other"`. A key, once
//! given a series, keeps it for the daemon's lifetime.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::metrics::encode::Labels;
use crate::metrics::snapshot::ClientSnapshot;

/// Keys given their own series when the configuration says nothing.
pub const DEFAULT_MAX_CLIENT_SERIES: usize = 100;

/// Which series a ring counts under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeriesKey {
    /// A client's own series.
    Client {
        /// The name the client gave.
        name: String,
        /// The peer's uid.
        uid: u32,
    },
    /// Every ring whose key came after the cap was reached.
    Other,
}

impl SeriesKey {
    /// The `client` and `uid` labels.
    pub fn labels(&self) -> Labels {
        match self {
            SeriesKey::Client { name, uid } => {
                vec![("client", name.clone()), ("uid", uid.to_string())]
            }
            SeriesKey::Other => vec![("client", "other".into()), ("uid", "other".into())],
        }
    }
}

/// Monotonic counts of one ring or of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records handed to librdkafka.
    pub produced: u64,
    /// Records acknowledged.
    pub delivered: u64,
    /// Records failed permanently.
    pub failed: u64,
    /// Records spooled.
    pub spooled: u64,
    /// Bytes claimed in the ring.
    pub written_bytes: u64,
    /// Times the client found its ring full.
    pub full_events: u64,
    /// Claims dropped without commit.
    pub aborted: u64,
}

impl Totals {
    fn of(c: &ClientSnapshot) -> Self {
        Self {
            produced: c.produced,
            delivered: c.delivered,
            failed: c.failed,
            spooled: c.spooled,
            written_bytes: c.written_bytes,
            full_events: c.full_events,
            aborted: c.aborted,
        }
    }

    fn add(&mut self, o: &Totals) {
        self.produced += o.produced;
        self.delivered += o.delivered;
        self.failed += o.failed;
        self.spooled += o.spooled;
        self.written_bytes += o.written_bytes;
        self.full_events += o.full_events;
        self.aborted += o.aborted;
    }
}

/// One key's series at a scrape: counters since the daemon started, and
/// the levels of its live rings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRow {
    /// Counters of released and live rings.
    pub totals: Totals,
    /// Rings registered now.
    pub rings: u64,
    /// Open control connections.
    pub connections: u64,
    /// Rings quarantined.
    pub quarantined: u64,
    /// Ring sizes, bytes.
    pub capacity_bytes: u64,
    /// Bytes held in the rings: committed, not yet acknowledged.
    pub held_bytes: u64,
    /// Records produced and not yet acknowledged or failed.
    pub in_flight: u64,
    /// Age of the oldest unacknowledged record of any of its rings.
    pub oldest_unacknowledged_seconds: f64,
}

#[derive(Debug)]
struct Ledger {
    limit: usize,
    /// Every key given a series, with what its released rings counted.
    released: BTreeMap<SeriesKey, Totals>,
    /// Client keys in `released` (not counting `Other`).
    client_keys: usize,
}

impl Ledger {
    /// The key `c` counts under, giving it a series if there is room.
    fn key(&mut self, c: &ClientSnapshot) -> SeriesKey {
        let key = SeriesKey::Client {
            name: c.name.clone(),
            uid: c.uid,
        };
        if self.released.contains_key(&key) {
            return key;
        }
        if self.client_keys < self.limit {
            self.client_keys += 1;
            self.released.insert(key.clone(), Totals::default());
            return key;
        }
        self.released.entry(SeriesKey::Other).or_default();
        SeriesKey::Other
    }
}

/// The per-client series of the daemon's lifetime.
#[derive(Debug)]
pub struct ClientSeries {
    ledger: Mutex<Ledger>,
}

impl Default for ClientSeries {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CLIENT_SERIES)
    }
}

impl ClientSeries {
    /// At most `limit` client keys get their own series.
    pub fn new(limit: usize) -> Self {
        Self {
            ledger: Mutex::new(Ledger {
                limit,
                released: BTreeMap::new(),
                client_keys: 0,
            }),
        }
    }

    /// Changes the cap; keys that already have a series keep it.
    pub fn set_limit(&self, limit: usize) {
        self.ledger().limit = limit;
    }

    /// Keys with their own series, and the cap.
    pub fn usage(&self) -> (usize, usize) {
        let ledger = self.ledger();
        (ledger.client_keys, ledger.limit)
    }

    /// Runs `release` (which takes a ring out of the registry and returns
    /// its final counts) and keeps what it counted, under the lock scrapes
    /// take: no scrape sees the ring gone and its counts not yet kept.
    pub fn release_with(&self, release: impl FnOnce() -> Option<ClientSnapshot>) {
        let mut ledger = self.ledger();
        if let Some(client) = release() {
            let key = ledger.key(&client);
            if let Some(totals) = ledger.released.get_mut(&key) {
                totals.add(&Totals::of(&client));
            }
        }
    }

    /// Every key's series: released counts plus the live rings `live`
    /// returns (read under the same lock as [`Self::release_with`]), with
    /// `age` giving each live ring's oldest unacknowledged record's age.
    pub fn rows(
        &self,
        live: impl FnOnce() -> Vec<ClientSnapshot>,
        age: impl Fn(&ClientSnapshot) -> f64,
    ) -> Vec<(SeriesKey, SeriesRow)> {
        let mut ledger = self.ledger();
        let mut rows: BTreeMap<SeriesKey, SeriesRow> = BTreeMap::new();
        for c in live() {
            let row = rows.entry(ledger.key(&c)).or_default();
            row.totals.add(&Totals::of(&c));
            row.rings += 1;
            row.connections += u64::from(c.connected);
            row.quarantined += u64::from(c.quarantined);
            row.capacity_bytes += c.capacity;
            row.held_bytes += c.fill_bytes;
            row.in_flight += c.in_flight();
            row.oldest_unacknowledged_seconds = row.oldest_unacknowledged_seconds.max(age(&c));
        }
        for (key, released) in &ledger.released {
            rows.entry(key.clone()).or_default().totals.add(released);
        }
        rows.into_iter().collect()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: u64, name: &str, uid: u32, delivered: u64) -> ClientSnapshot {
        ClientSnapshot {
            id,
            name: name.into(),
            pid: 1000 + id as u32,
            uid,
            connected: true,
            orphaned: false,
            quarantined: false,
            capacity: 4096,
            fill_bytes: 64,
            written_bytes: 64 * delivered,
            topics: 1,
            produced: delivered,
            delivered,
            failed: 0,
            spooled: 0,
            full_events: 0,
            aborted: 0,
        }
    }

    fn delivered(rows: &[(SeriesKey, SeriesRow)], key: &SeriesKey) -> u64 {
        rows.iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, r)| r.totals.delivered)
    }

    #[test]
    fn counters_survive_the_ring_and_sum_over_a_clients_rings() {
        let series = ClientSeries::new(10);
        let app = SeriesKey::Client {
            name: "app".into(),
            uid: 7,
        };
        let rows = series.rows(|| vec![ring(1, "app", 7, 5), ring(2, "app", 7, 3)], |_| 0.0);
        assert_eq!(delivered(&rows, &app), 8);
        assert_eq!(rows[0].1.rings, 2);
        series.release_with(|| Some(ring(1, "app", 7, 6)));
        let rows = series.rows(|| vec![ring(2, "app", 7, 4)], |_| 0.0);
        assert_eq!(delivered(&rows, &app), 10, "the released ring's 6 stay");
        series.release_with(|| Some(ring(2, "app", 7, 4)));
        let rows = series.rows(Vec::new, |_| 0.0);
        assert_eq!(delivered(&rows, &app), 10, "no ring left, counts kept");
        assert_eq!((rows[0].1.rings, rows[0].1.held_bytes), (0, 0));
    }

    #[test]
    fn keys_beyond_the_cap_count_as_other_and_memory_stays_bounded() {
        let series = ClientSeries::new(3);
        for i in 0..1000u64 {
            series.release_with(|| Some(ring(i, &format!("name-{i}"), 1, 1)));
        }
        let rows = series.rows(|| vec![ring(5000, "late", 2, 4)], |_| 0.0);
        assert_eq!(rows.len(), 4, "three keys and other: {rows:?}");
        assert_eq!(delivered(&rows, &SeriesKey::Other), 997 + 4);
        assert_eq!(series.usage(), (3, 3));
        assert_eq!(
            SeriesKey::Other.labels(),
            vec![("client", "other".to_owned()), ("uid", "other".to_owned())]
        );
    }
}
