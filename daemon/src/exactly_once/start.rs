//! The exactly-once start-up, on its own thread while clients already
//! connect: make sure the progress topic exists, fence every transactional
//! id a previous daemon with this id may have used, and load the committed
//! positions. Drain threads produce nothing until it is done.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use super::progress::{self, Isolation, ProducerInUse};
use super::{Committed, ExactlyOnce, Settings};
use crate::kafka::{OutgoingMessage, Producer, ProducerOptions, TxnError};

/// Bound of each step's calls to the cluster.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before the start-up is tried again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Why a try of the start-up failed.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("creating the progress topic: {0}")]
    CreateTopic(String),
    #[error("reading the progress topic: {0}")]
    Read(#[from] progress::ReadError),
    #[error("fencing {id}: {error}")]
    Fence { id: String, error: String },
    #[error("recording {id} in the progress topic: {error}")]
    Record { id: String, error: String },
}

/// Runs the start-up on a thread until it succeeds (or the daemon stops);
/// then `eos.progress` is ready.
pub fn spawn_start(
    eos: Arc<ExactlyOnce>,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shmkafkad-eos-start".into())
        .spawn(move || {
            let started = Instant::now();
            let mut wait = RETRY_MIN;
            // SYNC POINT (stopping): see `daemon::run`.
            while !stopping.load(Ordering::Acquire) {
                match run(&eos.settings) {
                    Ok((positions, fenced)) => {
                        info!(rings = positions.len(), fenced, elapsed_ms = started.elapsed().as_millis() as u64,
                            topic = %eos.settings.progress_topic,
                            "exactly-once: previous transactions fenced, committed positions loaded");
                        eos.progress.loaded(positions);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
                            "exactly-once start-up failed; records wait in the rings");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                }
            }
        })
}

/// One try: returns the committed positions and how many ids were fenced.
fn run(settings: &Settings) -> Result<(HashMap<u64, Committed>, usize), StartError> {
    ensure_topic(settings)?;
    // Which ids were ever used: read uncommitted, so a transaction a dead
    // producer left open does not hold the read up (fencing one id too
    // many costs a round trip, nothing else).
    let used = progress::read(settings, Isolation::ReadUncommitted, STEP_TIMEOUT)?.producers;
    let ids: BTreeSet<usize> = (0..settings.threads).chain(used.iter().copied()).collect();
    let topic_handle_needed = ids.iter().any(|i| !used.contains(i));
    for &index in &ids {
        let id = settings.transactional_id(index);
        let producer = Producer::new(
            &settings.kafka,
            ProducerOptions {
                transactional_id: Some(id.clone()),
                ..Default::default()
            },
        )
        .map_err(|e| StartError::Fence {
            id: id.clone(),
            error: e.to_string(),
        })?;
        init_with_retries(&producer).map_err(|e| StartError::Fence {
            id: id.clone(),
            error: e.to_string(),
        })?;
        if topic_handle_needed && !used.contains(&index) {
            record_in_use(settings, &producer, index).map_err(|error| StartError::Record {
                id: id.clone(),
                error,
            })?;
        }
    }
    // Every id is fenced: what the progress topic holds committed now is
    // final for this daemon id.
    let loaded = progress::read(settings, Isolation::ReadCommitted, STEP_TIMEOUT)?;
    Ok((loaded.positions, ids.len()))
}

/// `init_transactions`, called again while it times out (it resumes).
fn init_with_retries(producer: &Producer) -> Result<(), TxnError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match producer.init_transactions(STEP_TIMEOUT) {
            Err(e)
                if e.kind == crate::kafka::TxnErrorKind::Retriable && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Commits a record saying transactional id `index` is in use, before its
/// drain thread produces anything in a transaction.
fn record_in_use(settings: &Settings, producer: &Producer, index: usize) -> Result<(), String> {
    let topic = producer
        .topic(&settings.progress_topic)
        .map_err(|e| e.to_string())?;
    let key = progress::producer_key(&settings.daemon_id, index);
    let value = serde_json::to_vec(&ProducerInUse {
        transactional_id: settings.transactional_id(index),
    })
    .map_err(|e| e.to_string())?;
    producer.begin_transaction().map_err(|e| e.to_string())?;
    let message = OutgoingMessage {
        key: Some(key.as_bytes()),
        value: Some(&value),
        ..Default::default()
    };
    if let Err(e) = producer.produce_copied(&topic, &message) {
        let _ = producer.abort_transaction(Some(STEP_TIMEOUT));
        return Err(e.to_string());
    }
    producer
        .commit_transaction(Some(STEP_TIMEOUT))
        .map_err(|e| e.to_string())
}

/// Creates the progress topic, compacted, unless it exists.
fn ensure_topic(settings: &Settings) -> Result<(), StartError> {
    let admin: AdminClient<DefaultClientContext> = progress::client_config(&settings.kafka)
        .create()
        .map_err(|e| StartError::CreateTopic(e.to_string()))?;
    // Look first: a principal allowed to use the topic may not be allowed
    // to create topics, and the broker checks that before existence.
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&settings.progress_topic), STEP_TIMEOUT)
        .map_err(|e| StartError::CreateTopic(e.to_string()))?;
    let exists = metadata.topics().iter().any(|t| {
        t.name() == settings.progress_topic && t.error().is_none() && !t.partitions().is_empty()
    });
    if exists {
        return Ok(());
    }
    let topic = NewTopic::new(
        &settings.progress_topic,
        settings.progress_partitions as i32,
        TopicReplication::Fixed(settings.progress_replication_factor),
    )
    .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(STEP_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&topic], &options))
        .map_err(|e| StartError::CreateTopic(e.to_string()))?;
    for result in results {
        match result {
            Ok(name) => info!(topic = %name, "exactly-once: progress topic created (compacted)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StartError::CreateTopic(format!(
                    "{name}: {code} (create it, compacted, or let this principal create topics)"
                )))
            }
        }
    }
    Ok(())
}
