//! How long the oldest unacknowledged record of each ring has waited: the
//! "records stuck" signal. Records carry the client's timestamp, which the
//! client may set to anything; so the daemon keeps its own clock of when
//! ring positions were written: at every supervisor tick it notes the ring's
//! tail cursor and the time. The oldest unacknowledged byte sits at the
//! ring's released cursor; it had been written by the first noted time
//! whose tail is past it, so its age is at least that long ago (exact to a
//! tick, 100 ms).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::metrics::snapshot::ClientSnapshot;

/// Marks kept per ring. At 10 ticks a second a ring written to without a
/// pause covers a minute; past that the newest mark is moved forward in
/// position but keeps its time, which can only make later records look
/// older than they are, never the oldest one younger.
const MAX_MARKS: usize = 600;

/// Tail cursors noted over time, per ring (by client id).
#[derive(Debug, Default)]
pub struct BacklogAges {
    rings: BTreeMap<u64, VecDeque<(u64, Instant)>>,
}

impl BacklogAges {
    /// Notes every ring's tail at `now` and forgets rings no longer listed
    /// and positions already released.
    pub fn record(&mut self, now: Instant, clients: &[ClientSnapshot]) {
        self.rings
            .retain(|id, _| clients.iter().any(|c| c.id == *id));
        for c in clients {
            let released = c.written_bytes - c.fill_bytes;
            let marks = self.rings.entry(c.id).or_default();
            while marks.front().is_some_and(|&(tail, _)| tail <= released) {
                marks.pop_front();
            }
            if c.fill_bytes == 0
                || marks
                    .back()
                    .is_some_and(|&(tail, _)| tail >= c.written_bytes)
            {
                continue;
            }
            if marks.len() >= MAX_MARKS {
                if let Some(newest) = marks.back_mut() {
                    newest.0 = c.written_bytes;
                }
            } else {
                marks.push_back((c.written_bytes, now));
            }
        }
    }

    /// Seconds the oldest unacknowledged record of `c` has waited at `now`
    /// (0 when its ring holds nothing).
    pub fn oldest_seconds(&self, now: Instant, c: &ClientSnapshot) -> f64 {
        if c.fill_bytes == 0 {
            return 0.0;
        }
        let released = c.written_bytes - c.fill_bytes;
        self.rings
            .get(&c.id)
            .and_then(|marks| marks.iter().find(|&&(tail, _)| tail > released))
            .map_or(0.0, |&(_, at)| now.duration_since(at).as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ring(written: u64, held: u64) -> ClientSnapshot {
        ClientSnapshot {
            id: 1,
            name: "app".into(),
            pid: 1,
            uid: 1,
            connected: true,
            orphaned: false,
            quarantined: false,
            capacity: 1 << 20,
            fill_bytes: held,
            written_bytes: written,
            topics: 1,
            produced: 0,
            delivered: 0,
            failed: 0,
            spooled: 0,
            full_events: 0,
            aborted: 0,
        }
    }

    #[test]
    fn the_age_is_that_of_the_first_mark_past_the_released_cursor() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut ages = BacklogAges::default();
        ages.record(at(0), &[ring(100, 100)]);
        ages.record(at(1), &[ring(300, 300)]);
        assert_eq!(ages.oldest_seconds(at(5), &ring(300, 300)), 5.0);
        // The first 100 bytes acknowledged: the oldest left was written by 1 s.
        ages.record(at(6), &[ring(300, 200)]);
        assert_eq!(ages.oldest_seconds(at(6), &ring(300, 200)), 5.0);
        // Everything acknowledged: nothing waits.
        ages.record(at(7), &[ring(300, 0)]);
        assert_eq!(ages.oldest_seconds(at(7), &ring(300, 0)), 0.0);
        ages.record(at(8), &[ring(400, 100)]);
        assert_eq!(ages.oldest_seconds(at(9), &ring(400, 100)), 1.0);
        ages.record(at(9), &[]);
        assert!(ages.rings.is_empty(), "a gone ring is forgotten");
    }

    #[test]
    fn marks_are_bounded_and_the_oldest_keeps_its_time() {
        let t0 = Instant::now();
        let mut ages = BacklogAges::default();
        for i in 0..5000u64 {
            ages.record(t0 + Duration::from_millis(i), &[ring(i + 1, i + 1)]);
        }
        assert_eq!(ages.rings[&1].len(), MAX_MARKS);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(ages.oldest_seconds(now, &ring(5000, 5000)), 10.0);
    }
}
