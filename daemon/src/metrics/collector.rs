//! The `shmkafkad_*` and `process_*` metrics, read from [`Telemetry`] at
//! every scrape.
//!
//! Per client the labels are `client` (the name the client gave) and `uid`:
//! a bounded set that stays the same across the client's restarts (see
//! [`crate::metrics::client_series`]). Pids and connection ids are in
//! `shmkafkad status`, not in labels.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::metrics::client_series::{SeriesKey, SeriesRow};
use crate::metrics::encode::{counters, gauges, latency_histograms, Labels};
use crate::metrics::snapshot::{ClientSnapshot, DrainSnapshot};
use crate::metrics::{librdkafka, process, Telemetry};

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
        process::encode(e)?;
        build(e)?;
        clients(e, &telemetry.clients())?;
        client_series(e, telemetry)?;
        drains(e, &telemetry.drains(), &telemetry.rates().busy)?;
        spool(e, telemetry)?;
        counters(
            e,
            "shmkafkad_records_failed_by_error",
            "Records that failed permanently, by librdkafka's error name",
            telemetry
                .failures_by_error()
                .into_iter()
                .map(|(name, count)| (vec![("error", name)], count as f64)),
        )?;
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

fn build(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
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
    )
}

fn client_series(e: &mut DescriptorEncoder<'_>, telemetry: &Telemetry) -> fmt::Result {
    let rows = telemetry.client_series();
    let (keys, limit) = telemetry.client_series_usage();
    gauges(
        e,
        "shmkafkad_client_series",
        "Client names (with uid) given their own series; past metrics.max_client_series rings count under client=\"other\"",
        [(Vec::new(), keys as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_client_series_limit",
        "metrics.max_client_series",
        [(Vec::new(), limit as f64)],
    )?;
    gauges(
        e,
        "shmkafkad_oldest_unacknowledged_age_seconds",
        "Age of the oldest record any ring holds unacknowledged (0 when every ring is empty): records stuck",
        [(
            Vec::new(),
            rows.iter()
                .map(|(_, r)| r.oldest_unacknowledged_seconds)
                .fold(0.0, f64::max),
        )],
    )?;
    type Field = fn(&SeriesRow) -> f64;
    let row_gauges: [(&str, &str, Field); 7] = [
        (
            "shmkafkad_client_rings",
            "Rings the client has registered now",
            |r| r.rings as f64,
        ),
        (
            "shmkafkad_client_connections",
            "Open control connections of the client",
            |r| r.connections as f64,
        ),
        (
            "shmkafkad_client_rings_quarantined",
            "The client's rings that held garbage and are no longer drained",
            |r| r.quarantined as f64,
        ),
        (
            "shmkafkad_client_ring_capacity_bytes",
            "Size of the client's rings",
            |r| r.capacity_bytes as f64,
        ),
        (
            "shmkafkad_client_held_bytes",
            "Bytes held in the client's rings: committed records not yet acknowledged (or spooled)",
            |r| r.held_bytes as f64,
        ),
        (
            "shmkafkad_client_records_in_flight",
            "Records handed to librdkafka and not yet acknowledged or failed",
            |r| r.in_flight as f64,
        ),
        (
            "shmkafkad_client_oldest_unacknowledged_age_seconds",
            "Age of the oldest record the client's rings hold unacknowledged (0 when empty)",
            |r| r.oldest_unacknowledged_seconds,
        ),
    ];
    let labels = |k: &SeriesKey| -> Labels { k.labels() };
    for (name, help, field) in row_gauges {
        gauges(
            e,
            name,
            help,
            rows.iter().map(|(k, r)| (labels(k), field(r))),
        )?;
    }
    let row_counters: [(&str, &str, Field); 7] = [
        (
            "shmkafkad_client_records_produced",
            "Records handed to librdkafka",
            |r| r.totals.produced as f64,
        ),
        (
            "shmkafkad_client_records_acknowledged",
            "Records acknowledged by the broker",
            |r| r.totals.delivered as f64,
        ),
        (
            "shmkafkad_client_records_failed",
            "Records that failed permanently (reported to the client and spooled)",
            |r| r.totals.failed as f64,
        ),
        (
            "shmkafkad_client_records_spooled",
            "Records written to the dead-letter spool",
            |r| r.totals.spooled as f64,
        ),
        (
            "shmkafkad_client_ring_written_bytes",
            "Bytes the client claimed in its rings (records and padding)",
            |r| r.totals.written_bytes as f64,
        ),
        (
            "shmkafkad_client_ring_full_events",
            "Times the client found its ring full (counted by the client)",
            |r| r.totals.full_events as f64,
        ),
        (
            "shmkafkad_client_records_aborted",
            "Reservations the client dropped without commit (counted by the client)",
            |r| r.totals.aborted as f64,
        ),
    ];
    for (name, help, field) in row_counters {
        counters(
            e,
            name,
            help,
            rows.iter().map(|(k, r)| (labels(k), field(r))),
        )?;
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
    let drain_counters: [(&str, &str, Field); 11] = [
        ("shmkafkad_drain_records_produced", "Records the drain thread handed to librdkafka", |d| d.produced as f64),
        ("shmkafkad_drain_records_acknowledged", "Records acknowledged by the broker", |d| d.delivered as f64),
        ("shmkafkad_drain_records_failed", "Records that failed permanently", |d| d.failed as f64),
        ("shmkafkad_drain_records_spooled", "Records written to the dead-letter spool (failures, and at shutdown the undelivered records of gone clients)", |d| d.spooled as f64),
        ("shmkafkad_drain_records_reproduced", "Records produced again after a retriable failure or a producer replacement", |d| d.reproduced as f64),
        ("shmkafkad_drain_retries", "Times the drain thread rewound its rings to produce records again after retriable delivery failures", |d| d.retries as f64),
        ("shmkafkad_drain_producer_rebuilds", "librdkafka producers replaced after a fatal error", |d| d.producer_rebuilds as f64),
        ("shmkafkad_drain_transactions_committed", "Exactly-once transactions committed", |d| d.transactions_committed as f64),
        ("shmkafkad_drain_transactions_aborted", "Exactly-once transactions aborted (their records are produced again)", |d| d.transactions_aborted as f64),
        ("shmkafkad_drain_records_recovered_from_progress", "Records a previous daemon's committed transaction carried, marked delivered without being sent again", |d| d.recovered_from_progress as f64),
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
