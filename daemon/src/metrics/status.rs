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
            table(&report)
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

fn table(report: &Value) -> String {
    let t = &report["totals"];
    let rate = |r: &Value, what: &str| match r[what].as_f64() {
        Some(x) => format!("{x:.0}/s"),
        None => "-".to_owned(),
    };
    let mut out = format!(
        "shmkafkad {} up {}s: {} clients ({} connected, {} orphaned, {} quarantined); delivered {} ({}), failed {}, spooled {}; \
         backlog {} bytes, {} records in flight\n",
        report["version"].as_str().unwrap_or(""),
        report["uptime_seconds"],
        t["clients"],
        t["connected"],
        t["orphaned"],
        t["quarantined"],
        t["delivered"],
        rate(&t["rate"], "delivered"),
        t["failed"],
        t["spooled"],
        t["backlog_bytes"],
        t["in_flight"],
    );
    out.push_str(&format!(
        "\n{:>4} {:<20} {:>8} {:>5} {:>6} {:>12} {:>12} {:>10} {:>8} {:>8} {:>9}\n",
        "id",
        "name",
        "pid",
        "conn",
        "fill",
        "produced",
        "delivered",
        "rate",
        "failed",
        "spooled",
        "in-flight"
    ));
    for c in report["clients"].as_array().into_iter().flatten() {
        let fill = c["ring_fill_bytes"].as_u64().unwrap_or(0) as f64 * 100.0
            / c["ring_capacity"].as_u64().unwrap_or(1).max(1) as f64;
        let conn = match (
            c["quarantined"].as_bool(),
            c["connected"].as_bool(),
            c["orphaned"].as_bool(),
        ) {
            (Some(true), _, _) => "QUAR",
            (_, Some(true), _) => "yes",
            (_, _, Some(true)) => "ORPH",
            _ => "no",
        };
        out.push_str(&format!(
            "{:>4} {:<20} {:>8} {:>5} {:>5.1}% {:>12} {:>12} {:>10} {:>8} {:>8} {:>9}\n",
            c["id"],
            c["name"].as_str().unwrap_or(""),
            c["pid"],
            conn,
            fill,
            c["produced"],
            c["delivered"],
            rate(&c["rate"], "delivered"),
            c["failed"],
            c["spooled"],
            c["in_flight"],
        ));
    }
    out.push_str(&format!(
        "\n{:>5} {:>7} {:>6} {:>12} {:>12} {:>8} {:>9} {:>9}\n",
        "drain", "clients", "busy", "produced", "delivered", "failed", "p50 ms", "p99 ms"
    ));
    for d in report["drain_threads"].as_array().into_iter().flatten() {
        let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"));
        out.push_str(&format!(
            "{:>5} {:>7} {:>6} {:>12} {:>12} {:>8} {:>9} {:>9}\n",
            d["index"],
            d["clients"],
            d["busy_ratio"]
                .as_f64()
                .map_or("-".to_owned(), |b| format!("{:.0}%", b * 100.0)),
            d["produced"],
            d["delivered"],
            d["failed"],
            ms(&d["latency_p50_ms"]),
            ms(&d["latency_p99_ms"]),
        ));
    }
    for e in report["kafka_errors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nkafka error {} ({} times, last {}s ago): {}\n",
            e["name"].as_str().unwrap_or(""),
            e["count"],
            e["seconds_ago"],
            e["reason"].as_str().unwrap_or(""),
        ));
    }
    let s = &report["spool"];
    out.push_str(&format!(
        "\nspool {}: {} files, {} bytes\n",
        s["dir"].as_str().unwrap_or(""),
        s["files"],
        s["bytes"],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_renders_a_report() {
        let report = json!({
            "version": "0.1.0", "uptime_seconds": 3, "rate_window_seconds": 2.0,
            "totals": {"clients": 1, "connected": 1, "quarantined": 0, "produced": 10,
                "delivered": 9, "failed": 1, "spooled": 1, "in_flight": 0, "backlog_bytes": 64,
                "rate": {"produced": 5.0, "delivered": 4.4, "failed": 0.0}},
            "clients": [{"id": 1, "name": "app", "pid": 42, "uid": 0, "connected": true,
                "quarantined": false, "ring_capacity": 1024, "ring_fill_bytes": 256, "topics": 1,
                "produced": 10, "delivered": 9, "failed": 1, "spooled": 1, "in_flight": 0,
                "ring_full_events": 0, "rate": null}],
            "drain_threads": [{"index": 0, "clients": 1, "produced": 10, "delivered": 9,
                "failed": 1, "spooled": 1, "busy_ratio": 0.25, "latency_p50_ms": 5.0,
                "latency_p99_ms": null}],
            "spool": {"dir": "/s", "files": 1, "bytes": 300},
        });
        let text = table(&report);
        assert!(text.contains("delivered 9 (4/s), failed 1"), "{text}");
        assert!(text.contains(" 25.0% "), "fill: {text}");
        assert!(text.contains(" 25% "), "busy: {text}");
        assert!(text.contains("spool /s: 1 files, 300 bytes"), "{text}");
        let client_line = text.lines().find(|l| l.contains("app")).unwrap();
        assert!(client_line.contains(" - "), "no rate yet: {client_line}");
    }
}
