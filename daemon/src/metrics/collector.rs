//! The `shmkafkad_*` metrics, read from [`Telemetry`] at every scrape.
//!
//! Per client the labels are `client_id` (unique for the daemon's
//! lifetime), `name` (the client's label) and `pid`. A client disappears
//! from the output once its ring is drained and released, so its counters
//! start again from zero if it registers anew: `rate()` handles that as a
//! counter reset.

use std::fmt;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::metrics::encode::{counters, gauges, latency_histograms, Labels};
use crate::metrics::snapshot::{ClientSnapshot, DrainSnapshot};
use crate::metrics::{librdkafka, Telemetry};

/// Encodes everything [`Telemetry`] knows.
#[derive(Clone)]
pub struct TelemetryCollector(pub Arc<Telemetry>);

impl fmt::Debug for TelemetryCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TelemetryCollector")
    }
}

impl Collector for TelemetryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let telemetry = &self.0;
        let e = &mut encoder;
        process(e, telemetry)?;
        clients(e, &telemetry.clients())?;
        drains(e, &telemetry.drains(), &telemetry.rates().busy)?;
        spool(e, telemetry)?;
        counters(
            e,
            "shmkafkad_kafka_errors",
            "librdkafka client errors (broker unreachable, authentication or TLS refused, ...) by name",
            crate::kafka::client_errors::error_counts()
                .into_iter()
                .map(|(name, count)| (vec![("error", name)], count as f64)),
        )?;
        limits(e)?;
        librdkafka::encode(e, &telemetry.kafka_statistics())
    }
}

fn process(e: &mut DescriptorEncoder<'_>, telemetry: &Telemetry) -> fmt::Result {
    let started = telemetry
        .started()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauges(
        e,
        "shmkafkad_start_time_seconds",
        "When the daemon started, seconds since the Unix epoch",
        [(Vec::new(), started)],
    )?;
    gauges(
        e,
        "shmkafkad_build_info",
        "The daemon's version, as a label; always 1",
        [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
    )
}

fn clients(e: &mut DescriptorEncoder<'_>, clients: &[ClientSnapshot]) -> fmt::Result {
    let connected = clients.iter().filter(|c| c.connected).count();
    gauges(
        e,
        "shmkafkad_clients_connected",
        "Clients whose control connection is open",
        [(Vec::new(), connected as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_clients_orphaned",
        "Rings whose connection closed while their process lives on (they count against their uid's quota)",
        [(Vec::new(), clients.iter().filter(|c| c.orphaned).count() as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_clients_registered",
        "Clients whose ring the daemon holds (connected, or gone and still being drained)",
        [(Vec::new(), clients.len() as f64)],
    )?;
    let labels = |c: &ClientSnapshot| -> Labels {
        vec![
            ("client_id", c.id.to_string()),
            ("name", c.name.clone()),
            ("pid", c.pid.to_string()),
        ]
    };
    type Field = fn(&ClientSnapshot) -> f64;
    let client_gauges: [(&str, &str, Field); 6] = [
        ("shmkafkad_client_ring_capacity_bytes", "Size of the client's ring", |c| c.capacity as f64),
        ("shmkafkad_client_ring_fill_bytes", "Bytes of the client's ring not yet released: committed records waiting to be sent or acknowledged", |c| c.fill_bytes as f64),
        ("shmkafkad_client_records_in_flight", "Records handed to librdkafka and not yet acknowledged or failed", |c| c.in_flight() as f64),
        ("shmkafkad_client_connected", "1 while the client's control connection is open", |c| f64::from(u8::from(c.connected))),
        ("shmkafkad_client_quarantined", "1 if the client's ring held garbage and is no longer drained", |c| f64::from(u8::from(c.quarantined))),
        ("shmkafkad_client_topics", "Topic ids the client registered", |c| c.topics as f64),
    ];
    for (name, help, field) in client_gauges {
        gauges(e, name, help, clients.iter().map(|c| (labels(c), field(c))))?;
    }
    let client_counters: [(&str, &str, Field); 7] = [
        (
            "shmkafkad_client_records_produced",
            "Records handed to librdkafka",
            |c| c.produced as f64,
        ),
        (
            "shmkafkad_client_records_acknowledged",
            "Records acknowledged by the broker",
            |c| c.delivered as f64,
        ),
        (
            "shmkafkad_client_records_failed",
            "Records that failed permanently (reported to the client and spooled)",
            |c| c.failed as f64,
        ),
        (
            "shmkafkad_client_records_spooled",
            "Records written to the dead-letter spool",
            |c| c.spooled as f64,
        ),
        (
            "shmkafkad_client_ring_written_bytes",
            "Bytes the client claimed in its ring (records and padding)",
            |c| c.written_bytes as f64,
        ),
        (
            "shmkafkad_client_ring_full_events",
            "Times the client found its ring full (counted by the client)",
            |c| c.full_events as f64,
        ),
        (
            "shmkafkad_client_records_aborted",
            "Reservations the client dropped without commit (counted by the client)",
            |c| c.aborted as f64,
        ),
    ];
    for (name, help, field) in client_counters {
        counters(e, name, help, clients.iter().map(|c| (labels(c), field(c))))?;
    }
    Ok(())
}

fn drains(e: &mut DescriptorEncoder<'_>, drains: &[DrainSnapshot], busy: &[f64]) -> fmt::Result {
    let labels = |d: &DrainSnapshot| -> Labels { vec![("drain", d.index.to_string())] };
    gauges(
        e,
        "shmkafkad_drain_clients",
        "Clients the drain thread serves",
        drains.iter().map(|d| (labels(d), d.clients as f64)),
    )?;
    gauges(
        e,
        "shmkafkad_drain_busy_ratio",
        "Share of wall time the drain thread was not waiting for work, over the last 10 s",
        drains.iter().zip(busy).map(|(d, busy)| (labels(d), *busy)),
    )?;
    type Field = fn(&DrainSnapshot) -> f64;
    let drain_counters: [(&str, &str, Field); 8] = [
        ("shmkafkad_drain_records_produced", "Records the drain thread handed to librdkafka", |d| d.produced as f64),
        ("shmkafkad_drain_records_acknowledged", "Records acknowledged by the broker", |d| d.delivered as f64),
        ("shmkafkad_drain_records_failed", "Records that failed permanently", |d| d.failed as f64),
        ("shmkafkad_drain_records_spooled", "Records written to the dead-letter spool (failures, and at shutdown the undelivered records of gone clients)", |d| d.spooled as f64),
        ("shmkafkad_drain_records_reproduced", "Records produced again after a retriable failure or a producer replacement", |d| d.reproduced as f64),
        ("shmkafkad_drain_retries", "Times the drain thread rewound its rings to produce records again after retriable delivery failures", |d| d.retries as f64),
        ("shmkafkad_drain_producer_rebuilds", "librdkafka producers replaced after a fatal error", |d| d.producer_rebuilds as f64),
        ("shmkafkad_drain_idle_seconds", "Time the drain thread spent waiting for work", |d| d.idle_ns as f64 / 1e9),
    ];
    for (name, help, field) in drain_counters {
        counters(e, name, help, drains.iter().map(|d| (labels(d), field(d))))?;
    }
    latency_histograms(
        e,
        "shmkafkad_delivery_latency_seconds",
        "Time from handing a record to librdkafka to its acknowledgement (librdkafka's message latency)",
        drains.iter().map(|d| (labels(d), d.latency.clone())),
    )
}

/// What the daemon refused or held back to stay within its bounds.
fn limits(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    use crate::spool::budget;
    use std::sync::atomic::Ordering::Relaxed;
    counters(
        e,
        "shmkafkad_control_refusals",
        "Connections and registrations refused (access list, connection budgets, quotas, malformed handshakes)",
        [(Vec::new(), crate::server::REFUSALS.load(Relaxed) as f64)],
    )?;
    counters(
        e,
        "shmkafkad_spool_full_events",
        "Times failed records were held in their rings because the spool reached spool.max_total_bytes",
        [(Vec::new(), budget::SPOOL_FULL_EVENTS.load(Relaxed) as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_spool_full_held_records",
        "Failed records waiting in their rings for room in the spool (0 once it has room)",
        [(Vec::new(), budget::SPOOL_FULL_HELD.load(Relaxed) as f64)],
    )
}

fn spool(e: &mut DescriptorEncoder<'_>, telemetry: &Telemetry) -> fmt::Result {
    let Some(size) = telemetry.spool() else {
        return Ok(());
    };
    gauges(
        e,
        "shmkafkad_spool_bytes",
        "Bytes of dead-letter spool files on disk",
        [(Vec::new(), size.bytes as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_spool_files",
        "Dead-letter spool files on disk",
        [(Vec::new(), size.files as f64)],
    )
}
