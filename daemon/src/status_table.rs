//! `shmkafkad status` as text: a summary line, then the clients and the
//! drain threads as tables whose columns fit their widest cell, numbers
//! right-aligned, so the output reads well and `awk` can split it.

use comfy_table::{presets, CellAlignment, Table};
use serde_json::Value;

/// Renders the status report (see `Telemetry::status_report`).
pub fn render(report: &Value) -> String {
    let t = &report["totals"];
    let mut out = format!(
        "shmkafkad {} up {}s: {} clients ({} connected, {} orphaned, {} quarantined); delivered {} ({}), failed {}, spooled {}; \
         backlog {} bytes, {} records in flight\n",
        report["version"].as_str().unwrap_or(""),
        number(&report["uptime_seconds"]),
        number(&t["clients"]),
        number(&t["connected"]),
        number(&t["orphaned"]),
        number(&t["quarantined"]),
        number(&t["delivered"]),
        rate(&t["rate"], "delivered"),
        number(&t["failed"]),
        number(&t["spooled"]),
        number(&t["backlog_bytes"]),
        number(&t["in_flight"]),
    );
    out.push('\n');
    out.push_str(&clients(report).trim_fmt());
    out.push_str("\n\n");
    out.push_str(&drains(report).trim_fmt());
    out.push('\n');
    for e in report["kafka_errors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nkafka error {} ({} times, last {}s ago): {}\n",
            e["name"].as_str().unwrap_or(""),
            number(&e["count"]),
            number(&e["seconds_ago"]),
            e["reason"].as_str().unwrap_or(""),
        ));
    }
    let s = &report["spool"];
    out.push_str(&format!(
        "\nspool {}: {} files, {} bytes\n",
        s["dir"].as_str().unwrap_or(""),
        number(&s["files"]),
        number(&s["bytes"]),
    ));
    out
}

/// A table with `header`, every column right-aligned but those in `left`.
fn table(header: &[&str], left: &[usize]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    for index in 0..header.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(if left.contains(&index) {
                CellAlignment::Left
            } else {
                CellAlignment::Right
            });
        }
    }
    table
}

fn clients(report: &Value) -> Table {
    let mut table = table(
        &[
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
            "in-flight",
        ],
        &[1],
    );
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
        table.add_row(vec![
            number(&c["id"]),
            c["name"].as_str().unwrap_or("").to_owned(),
            number(&c["pid"]),
            conn.to_owned(),
            format!("{fill:.1}%"),
            number(&c["produced"]),
            number(&c["delivered"]),
            rate(&c["rate"], "delivered"),
            number(&c["failed"]),
            number(&c["spooled"]),
            number(&c["in_flight"]),
        ]);
    }
    table
}

fn drains(report: &Value) -> Table {
    let mut table = table(
        &[
            "drain",
            "clients",
            "busy",
            "produced",
            "delivered",
            "failed",
            "p50 ms",
            "p99 ms",
        ],
        &[],
    );
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"));
    for d in report["drain_threads"].as_array().into_iter().flatten() {
        table.add_row(vec![
            number(&d["index"]),
            number(&d["clients"]),
            d["busy_ratio"]
                .as_f64()
                .map_or("-".to_owned(), |b| format!("{:.0}%", b * 100.0)),
            number(&d["produced"]),
            number(&d["delivered"]),
            number(&d["failed"]),
            ms(&d["latency_p50_ms"]),
            ms(&d["latency_p99_ms"]),
        ]);
    }
    table
}

/// A count as text; `-` when the report has none.
fn number(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rate(r: &Value, what: &str) -> String {
    match r[what].as_f64() {
        Some(x) => format!("{x:.0}/s"),
        None => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({
            "version": "0.1.0", "uptime_seconds": 3, "rate_window_seconds": 2.0,
            "totals": {"clients": 2, "connected": 2, "orphaned": 0, "quarantined": 0,
                "produced": 10, "delivered": 9, "failed": 1, "spooled": 1, "in_flight": 0,
                "backlog_bytes": 64,
                "rate": {"produced": 5.0, "delivered": 4.4, "failed": 0.0}},
            "clients": [
                {"id": 1, "name": "app", "pid": 42, "uid": 0, "connected": true,
                "quarantined": false, "ring_capacity": 1024, "ring_fill_bytes": 256, "topics": 1,
                "produced": 10, "delivered": 9, "failed": 1, "spooled": 1, "in_flight": 0,
                "ring_full_events": 0, "rate": null},
                {"id": 1234567, "name": "a-client-with-a-rather-long-name-indeed", "pid": 4194304,
                "uid": 0, "connected": false, "orphaned": true, "quarantined": false,
                "ring_capacity": 1024, "ring_fill_bytes": 1024, "topics": 1,
                "produced": 123456789012_u64, "delivered": 123456789000_u64, "failed": 12,
                "spooled": 12, "in_flight": 0, "ring_full_events": 0,
                "rate": {"produced": 1.0, "delivered": 1234567.0, "failed": 0.0}}],
            "drain_threads": [
                {"index": 0, "clients": 1, "produced": 10, "delivered": 9, "failed": 1,
                "spooled": 1, "busy_ratio": 0.25, "latency_p50_ms": 5.0, "latency_p99_ms": null},
                {"index": 1, "clients": 1, "produced": 123456789012_u64,
                "delivered": 123456789000_u64, "failed": 12, "spooled": 12, "busy_ratio": 1.0,
                "latency_p50_ms": 12345.5, "latency_p99_ms": 99999.9}],
            "kafka_errors": [{"name": "_TRANSPORT", "reason": "refused", "count": 3,
                "seconds_ago": 7}],
            "spool": {"dir": "/s", "files": 1, "bytes": 300},
        })
    }

    /// Byte ranges of the whitespace-separated words of `line`.
    fn words(line: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
            match (c == ' ', start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        out
    }

    /// The lines of the table whose header starts with `first`.
    fn table_lines<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
        text.lines()
            .skip_while(|l| l.split_whitespace().next() != Some(first))
            .take_while(|l| !l.trim().is_empty())
            .collect()
    }

    /// Every row's words line up with the header's: right-aligned columns
    /// end where their heading ends, left-aligned ones start where it starts.
    fn assert_aligned(lines: &[&str], left: &[usize], text: &str) {
        let header = words(
            lines[0]
                .replace("p50 ms", "p50_ms")
                .replace("p99 ms", "p99_ms")
                .as_str(),
        );
        assert!(lines.len() > 1, "{text}");
        for row in &lines[1..] {
            let cells = words(row);
            assert_eq!(cells.len(), header.len(), "{row:?} in\n{text}");
            for (index, (cell, head)) in cells.iter().zip(&header).enumerate() {
                if left.contains(&index) {
                    assert_eq!(cell.0, head.0, "column {index} of {row:?} in\n{text}");
                } else {
                    assert_eq!(cell.1, head.1, "column {index} of {row:?} in\n{text}");
                }
            }
        }
    }

    #[test]
    fn columns_line_up_whatever_the_widths() {
        let text = render(&report());
        assert_aligned(&table_lines(&text, "id"), &[1], &text);
        assert_aligned(&table_lines(&text, "drain"), &[], &text);
    }

    #[test]
    fn cells_say_what_the_report_says() {
        let text = render(&report());
        assert!(text.contains("delivered 9 (4/s), failed 1"), "{text}");
        let app = text.lines().find(|l| l.contains(" app ")).unwrap();
        let cells: Vec<&str> = app.split_whitespace().collect();
        assert_eq!(
            cells,
            ["1", "app", "42", "yes", "25.0%", "10", "9", "-", "1", "1", "0"]
        );
        let long = text.lines().find(|l| l.contains("rather-long")).unwrap();
        assert!(long.contains(" ORPH "), "{long}");
        assert!(long.contains(" 1234567/s "), "{long}");
        let busy = table_lines(&text, "drain")[1];
        assert!(busy.contains(" 25% "), "{busy}");
        assert!(
            text.contains("kafka error _TRANSPORT (3 times, last 7s ago): refused"),
            "{text}"
        );
        assert!(text.contains("spool /s: 1 files, 300 bytes"), "{text}");
    }
}
