//! Every registered client, and which drain thread serves it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::client::Client;

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
    drains: Vec<DrainSlot>,
}

impl Registry {
    /// A registry feeding the given drain threads.
    pub fn new(drains: Vec<DrainSlot>) -> Self {
        Self {
            clients: Mutex::new(BTreeMap::new()),
            drains,
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

    /// Hands `client` to the least loaded drain thread.
    pub fn add(&self, client: Arc<Client>) {
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

    /// Forgets a client whose ring is drained and released.
    pub fn remove(&self, id: u64) {
        if let Some((_, index)) = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        {
            self.drains[index].load.fetch_sub(1, Ordering::Relaxed);
        }
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

    /// Status as JSON or a text table.
    pub fn status(&self, as_json: bool) -> String {
        let clients = self.clients();
        let rows: Vec<_> = clients
            .iter()
            .map(|c| {
                let (tail, released) = c.segment.cursors();
                json!({
                    "id": c.id,
                    "name": c.name,
                    "pid": c.pid,
                    "uid": c.uid,
                    "connected": !c.is_disconnected(),
                    "ring_capacity": c.segment.capacity(),
                    "ring_fill_bytes": tail.saturating_sub(released),
                    "topics": c.topic_count(),
                    "produced": c.counters.produced.load(Ordering::Relaxed),
                    "delivered": c.counters.delivered.load(Ordering::Relaxed),
                    "failed": c.counters.failed.load(Ordering::Relaxed),
                })
            })
            .collect();
        if as_json {
            return json!({ "clients": rows }).to_string();
        }
        let mut out = format!(
            "{:>4} {:<20} {:>8} {:>5} {:>12} {:>12} {:>12} {:>8}\n",
            "id", "name", "pid", "conn", "fill", "produced", "delivered", "failed"
        );
        for r in rows {
            out.push_str(&format!(
                "{:>4} {:<20} {:>8} {:>5} {:>11}% {:>12} {:>12} {:>8}\n",
                r["id"],
                r["name"].as_str().unwrap_or(""),
                r["pid"],
                if r["connected"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                r["ring_fill_bytes"].as_u64().unwrap_or(0) * 100
                    / r["ring_capacity"].as_u64().unwrap_or(1).max(1),
                r["produced"],
                r["delivered"],
                r["failed"],
            ));
        }
        out
    }
}
