//! Every registered client, which drain thread serves it, and what each uid
//! holds (rings, bytes mapped) against its quota. (The status report built
//! from them is `metrics::status`.)

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::client::Client;
use crate::metrics::client_series::ClientSeries;
use crate::metrics::snapshot::ClientSnapshot;

/// What registering a ring may cost, per uid and for the whole daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Rings registered at once, all uids (`daemon.max_clients`).
    pub max_clients: usize,
    /// Rings one uid may hold, orphaned ones included.
    pub rings_per_uid: usize,
    /// Segment bytes one uid may have mapped.
    pub bytes_per_uid: u64,
    /// Segment bytes mapped for everyone.
    pub bytes_total: u64,
}

/// Rings and segment bytes held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Rings registered (or being registered).
    pub rings: usize,
    /// Bytes of their segments (header page plus ring).
    pub bytes: u64,
}

/// Why a ring was not admitted; each names the limit and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuotaError {
    /// The daemon serves its maximum number of clients.
    #[error("shmkafkad already serves {held} of {limit} clients (daemon.max_clients)")]
    TooManyClients {
        /// Rings registered.
        held: usize,
        /// `daemon.max_clients`.
        limit: usize,
    },
    /// The uid holds its maximum number of rings.
    #[error(
        "uid {uid} already holds {held} of {limit} rings (limits.max_rings_per_uid); \
         rings whose connection closed count until their process exits or they drain"
    )]
    TooManyRings {
        /// The uid.
        uid: u32,
        /// Rings it holds.
        held: usize,
        /// `limits.max_rings_per_uid`.
        limit: usize,
    },
    /// The segment would take the uid past its mapped-bytes budget.
    #[error(
        "a segment of {asked} bytes would take uid {uid} to {} of its {limit} mapped bytes \
         (limits.max_mapped_bytes_per_uid; it holds {held})",
        held + asked
    )]
    UidBytes {
        /// The uid.
        uid: u32,
        /// Bytes it has mapped.
        held: u64,
        /// Size of the new segment.
        asked: u64,
        /// `limits.max_mapped_bytes_per_uid`.
        limit: u64,
    },
    /// The segment would take the daemon past its mapped-bytes budget.
    #[error(
        "a segment of {asked} bytes would take shmkafkad to {} of its {limit} mapped bytes \
         (limits.max_mapped_bytes; it holds {held})",
        held + asked
    )]
    TotalBytes {
        /// Bytes mapped for everyone.
        held: u64,
        /// Size of the new segment.
        asked: u64,
        /// `limits.max_mapped_bytes`.
        limit: u64,
    },
}

/// Usage per uid and in total. Invariant: `total` is the sum of `by_uid`,
/// and each entry is the sum over that uid's registered clients plus the
/// reservations of registrations in progress.
#[derive(Debug, Default)]
struct Accounts {
    by_uid: HashMap<u32, Usage>,
    total: Usage,
}

impl Accounts {
    fn release(&mut self, uid: u32, bytes: u64) {
        self.total.rings -= 1;
        self.total.bytes -= bytes;
        if let Some(usage) = self.by_uid.get_mut(&uid) {
            usage.rings -= 1;
            usage.bytes -= bytes;
            if usage.rings == 0 {
                self.by_uid.remove(&uid);
            }
        }
    }
}

/// Room for one ring, taken before its segment is mapped. Dropped unused
/// (the registration failed), it gives the room back.
#[must_use = "a reservation is given back when dropped"]
pub struct Reservation<'a> {
    registry: &'a Registry,
    uid: u32,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.registry.accounts().release(self.uid, self.bytes);
    }
}

/// A drain thread as the registry sees it.
pub struct DrainSlot {
    /// Where new clients are sent.
    pub inbox: Sender<Arc<Client>>,
    /// Clients it serves now.
    pub load: AtomicUsize,
}

/// All clients, for admission, balancing and status.
pub struct Registry {
    clients: Mutex<BTreeMap<u64, (Arc<Client>, usize)>>,
    accounts: Mutex<Accounts>,
    drains: Vec<DrainSlot>,
    /// Per-client metric series, which outlive the rings they count.
    series: ClientSeries,
}

impl Registry {
    /// A registry feeding the given drain threads.
    pub fn new(drains: Vec<DrainSlot>) -> Self {
        Self {
            clients: Mutex::new(BTreeMap::new()),
            accounts: Mutex::new(Accounts::default()),
            drains,
            series: ClientSeries::default(),
        }
    }

    /// Registered clients.
    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes room for a ring of `bytes` (its whole segment) for `uid`, or
    /// says which limit it would break. Check and take are one step, so
    /// concurrent registrations cannot overshoot together.
    pub fn reserve(
        &self,
        uid: u32,
        bytes: u64,
        quota: &Quota,
    ) -> Result<Reservation<'_>, QuotaError> {
        let mut accounts = self.accounts();
        let total = accounts.total;
        let mine = accounts.by_uid.get(&uid).copied().unwrap_or_default();
        if total.rings >= quota.max_clients {
            return Err(QuotaError::TooManyClients {
                held: total.rings,
                limit: quota.max_clients,
            });
        }
        if mine.rings >= quota.rings_per_uid {
            return Err(QuotaError::TooManyRings {
                uid,
                held: mine.rings,
                limit: quota.rings_per_uid,
            });
        }
        if mine.bytes.saturating_add(bytes) > quota.bytes_per_uid {
            return Err(QuotaError::UidBytes {
                uid,
                held: mine.bytes,
                asked: bytes,
                limit: quota.bytes_per_uid,
            });
        }
        if total.bytes.saturating_add(bytes) > quota.bytes_total {
            return Err(QuotaError::TotalBytes {
                held: total.bytes,
                asked: bytes,
                limit: quota.bytes_total,
            });
        }
        let usage = accounts.by_uid.entry(uid).or_default();
        usage.rings += 1;
        usage.bytes += bytes;
        accounts.total.rings += 1;
        accounts.total.bytes += bytes;
        Ok(Reservation {
            registry: self,
            uid,
            bytes,
        })
    }

    /// What `uid` holds now.
    pub fn usage_of(&self, uid: u32) -> Usage {
        self.accounts()
            .by_uid
            .get(&uid)
            .copied()
            .unwrap_or_default()
    }

    /// What all clients hold now.
    pub fn usage(&self) -> Usage {
        self.accounts().total
    }

    /// Hands `client`, registered under `reservation`, to the least loaded
    /// drain thread. Its room is given back by [`Registry::remove`].
    pub fn add(&self, client: Arc<Client>, reservation: Reservation<'_>) {
        debug_assert_eq!(
            (reservation.uid, reservation.bytes),
            (client.uid, client.mapped_bytes())
        );
        std::mem::forget(reservation);
        let (index, slot) = self
            .drains
            .iter()
            .enumerate()
            .min_by_key(|(_, d)| d.load.load(Ordering::Relaxed))
            .expect("at least one drain thread");
        slot.load.fetch_add(1, Ordering::Relaxed);
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client.id, (Arc::clone(&client), index));
        // A send fails only when the drain thread has exited (shutdown); the
        // client's records then stay in its ring for the next daemon.
        let _ = slot.inbox.send(client);
    }

    /// Forgets a client whose ring is drained and released, and gives its
    /// room back to its uid.
    /// Its counters are kept in its metric series.
    pub fn remove(&self, id: u64) {
        self.series.release_with(|| {
            let removed = self
                .clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            let (client, index) = removed?;
            self.drains[index].load.fetch_sub(1, Ordering::Relaxed);
            self.accounts().release(client.uid, client.mapped_bytes());
            Some(ClientSnapshot::of(&client))
        });
    }

    /// The per-client metric series.
    pub fn client_series(&self) -> &ClientSeries {
        &self.series
    }

    /// Snapshot of all clients.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(c, _)| Arc::clone(c))
            .collect()
    }

    /// Clients per drain thread, by index.
    pub fn drain_loads(&self) -> Vec<usize> {
        self.drains
            .iter()
            .map(|d| d.load.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let (inbox, _) = std::sync::mpsc::channel();
        Registry::new(vec![DrainSlot {
            inbox,
            load: AtomicUsize::new(0),
        }])
    }

    const QUOTA: Quota = Quota {
        max_clients: 3,
        rings_per_uid: 2,
        bytes_per_uid: 100,
        bytes_total: 150,
    };

    #[test]
    fn each_limit_refuses_with_its_numbers_and_drops_give_room_back() {
        let r = registry();
        let a = r.reserve(1, 60, &QUOTA).unwrap();
        assert_eq!(
            r.reserve(1, 41, &QUOTA).err(),
            Some(QuotaError::UidBytes {
                uid: 1,
                held: 60,
                asked: 41,
                limit: 100
            })
        );
        let b = r.reserve(1, 40, &QUOTA).unwrap();
        assert!(matches!(
            r.reserve(1, 0, &QUOTA),
            Err(QuotaError::TooManyRings {
                uid: 1,
                held: 2,
                limit: 2
            })
        ));
        assert!(matches!(
            r.reserve(2, 51, &QUOTA),
            Err(QuotaError::TotalBytes {
                held: 100,
                asked: 51,
                limit: 150
            })
        ));
        let c = r.reserve(2, 50, &QUOTA).unwrap();
        assert!(matches!(
            r.reserve(3, 0, &QUOTA),
            Err(QuotaError::TooManyClients { held: 3, limit: 3 })
        ));
        assert_eq!(
            r.usage(),
            Usage {
                rings: 3,
                bytes: 150
            }
        );
        drop((a, b, c));
        assert_eq!(r.usage(), Usage::default());
        assert_eq!(r.usage_of(1), Usage::default());
        let message = QuotaError::UidBytes {
            uid: 7,
            held: 10,
            asked: 5,
            limit: 12,
        }
        .to_string();
        assert!(
            message.contains("uid 7") && message.contains("15 of its 12"),
            "{message}"
        );
    }
}
