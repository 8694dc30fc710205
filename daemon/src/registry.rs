//! Every registered client, and which drain thread serves it. (The status
//! report built from them is `metrics::status`.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

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

    /// Clients per drain thread, by index.
    pub fn drain_loads(&self) -> Vec<usize> {
        self.drains
            .iter()
            .map(|d| d.load.load(Ordering::Relaxed))
            .collect()
    }
}
