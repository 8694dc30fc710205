//! `shmkafkad status`: clients, rates, backlog, failures and the spool, as
//! a table or as JSON. Rates are over the last [`crate::metrics::rates::WINDOW`] and absent
//! (`null`, `-`) until the daemon has sampled for a moment.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::metrics::rates::Rate;
use crate::metrics::snapshot::ClientSnapshot;
use crate::metrics::Telemetry;
use crate::spool::budget;

impl Telemetry {
    /// The status report: JSON (`as_json`) or a text table.
    pub fn status(&self, as_json: bool) -> String {
        let report = self.status_report();
        if as_json {
            report.to_string()
        } else {
            crate::status_table::render(&report)
        }
    }

    /// The status report as a JSON value.
    pub fn status_report(&self) -> Value {
        let clients = self.clients();
        let drains = self.drains();
        let rates = self.rates();
        let spool = self.spool();
        let uptime = SystemTime::now()
            .duration_since(self.started())
            .map_or(0, |d| d.as_secs());
        let rate_json = |r: Option<&Rate>| match r {
            Some(r) => json!({
                "produced": round(r.produced),
                "delivered": round(r.delivered),
                "failed": round(r.failed),
            }),
            None => Value::Null,
        };
        let with_rates = rates.span_seconds > 0.0;
        let client_rows: Vec<Value> = clients
            .iter()
            .map(|c| {
                let mut row = client_json(c, rate_json(rates.clients.get(&c.id)));
                row["oldest_unacknowledged_seconds"] =
                    json!(round(self.oldest_unacknowledged_seconds(c)));
                row
            })
            .collect();
        let drain_rows: Vec<Value> = drains
            .iter()
            .map(|d| {
                json!({
                    "index": d.index,
                    "clients": d.clients,
                    "produced": d.produced,
                    "delivered": d.delivered,
                    "failed": d.failed,
                    "spooled": d.spooled,
                    "reproduced": d.reproduced,
                    "retries": d.retries,
                    "producer_rebuilds": d.producer_rebuilds,
                    "transactions_committed": d.transactions_committed,
                    "transactions_aborted": d.transactions_aborted,
                    "recovered_from_progress": d.recovered_from_progress,
                    "busy_ratio": rates.busy.get(d.index).map(|b| round(*b)),
                    "latency_p50_ms": d.latency.quantile_ms(0.5),
                    "latency_p99_ms": d.latency.quantile_ms(0.99),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": uptime,
            "rate_window_seconds": round(rates.span_seconds),
            "totals": {
                "clients": clients.len(),
                "connected": clients.iter().filter(|c| c.connected).count(),
                "orphaned": clients.iter().filter(|c| c.orphaned).count(),
                "refusals": crate::server::REFUSALS.load(Ordering::Relaxed),
                "quarantined": clients.iter().filter(|c| c.quarantined).count(),
                "produced": drains.iter().map(|d| d.produced).sum::<u64>(),
                "delivered": drains.iter().map(|d| d.delivered).sum::<u64>(),
                "failed": drains.iter().map(|d| d.failed).sum::<u64>(),
                "spooled": drains.iter().map(|d| d.spooled).sum::<u64>(),
                "in_flight": clients.iter().map(ClientSnapshot::in_flight).sum::<u64>(),
                "backlog_bytes": clients.iter().map(|c| c.fill_bytes).sum::<u64>(),
                "failed_by_error": self.failures_by_error(),
                "rate": rate_json(with_rates.then_some(&rates.total)),
            },
            "clients": client_rows,
            "drain_threads": drain_rows,
            "kafka_errors": kafka_errors_json(),
            "spool": {
                "dir": self.spool_dir().display().to_string(),
                "files": spool.map(|s| s.files),
                "bytes": spool.map(|s| s.bytes),
                "full_events": budget::SPOOL_FULL_EVENTS.load(Ordering::Relaxed),
                "held_records": budget::SPOOL_FULL_HELD.load(Ordering::Relaxed),
            },
        })
    }
}

fn client_json(c: &ClientSnapshot, rate: Value) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "pid": c.pid,
        "uid": c.uid,
        "connected": c.connected,
        "orphaned": c.orphaned,
        "quarantined": c.quarantined,
        "ring_capacity": c.capacity,
        "ring_fill_bytes": c.fill_bytes,
        "topics": c.topics,
        "produced": c.produced,
        "delivered": c.delivered,
        "failed": c.failed,
        "spooled": c.spooled,
        "in_flight": c.in_flight(),
        "ring_full_events": c.full_events,
        "rate": rate,
    })
}

/// librdkafka's client errors of the last minutes (a broker unreachable,
/// credentials refused): why records are held when nothing is delivered.
fn kafka_errors_json() -> Value {
    let now = SystemTime::now();
    crate::kafka::client_errors::recent_errors()
        .into_iter()
        .map(|e| {
            json!({
                "name": e.name,
                "reason": e.reason,
                "count": e.count,
                "seconds_ago": now.duration_since(e.last_seen).map_or(0, |d| d.as_secs()),
            })
        })
        .collect()
}

/// Two decimals are plenty for rates and ratios, and keep the JSON short.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
