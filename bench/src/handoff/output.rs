//! What `handoff` shows: the Markdown tables on stdout, the targets, and
//! the SVG charts of `--plot`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{
    cells, Report, Variant, TARGET_MULTI, TARGET_SINGLE, TARGET_SIZE, TARGET_VS_DATAGRAM,
    TARGET_VS_ICEORYX2,
};
use crate::plot::{self, Chart, Scale, Series};

fn rate(report: &Report, variant: Variant, producers: u32, size: usize) -> String {
    report.cell(variant, producers, size).map_or_else(
        || "-".to_owned(),
        |m| format!("{:.2}", m.records_per_sec / 1e6),
    )
}

fn ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.0}x"),
        Some(r) => format!("{r:.2}x"),
        None => "-".to_owned(),
    }
}

/// Prints the summary table (M records/s and ratios), the detail table
/// (GB/s and producer CPU per record) and the targets.
pub fn print_tables(report: &Report) {
    let multi: Vec<u32> = report.threads.iter().copied().filter(|&t| t > 1).collect();
    let others = [Variant::Datagram, Variant::Stream, Variant::Iceoryx2]
        .into_iter()
        .filter(|v| v.available());

    // Summary: rates in M records/s, then ratios.
    let mut head = vec!["size B".to_owned(), "baseline".to_owned()];
    head.push("ring x1".to_owned());
    head.push("x1/base".to_owned());
    for t in &multi {
        head.push(format!("ring x{t}"));
        head.push(format!("x{t}/base"));
    }
    for v in others.clone() {
        head.push(v.name().to_owned());
    }
    for v in others.clone() {
        head.push(format!("x1/{}", v.name()));
    }
    println!();
    println!("M records/s (best of {}); ratios of rates", report.repeat);
    println!();
    println!("| {} |", head.join(" | "));
    println!("|{}", "---:|".repeat(head.len()));
    for size in report.sizes() {
        let base = |v, p| report.cell(v, p, size).map(|m| m.ratio_to_baseline);
        let mut row = vec![size.to_string(), rate(report, Variant::Baseline, 1, size)];
        row.push(rate(report, Variant::Ring, 1, size));
        row.push(ratio(base(Variant::Ring, 1)));
        for &t in &multi {
            row.push(rate(report, Variant::Ring, t, size));
            row.push(ratio(base(Variant::Ring, t)));
        }
        for v in others.clone() {
            row.push(rate(report, v, 1, size));
        }
        for v in others.clone() {
            row.push(ratio(report.ring_over(v, size)));
        }
        println!("| {} |", row.join(" | "));
    }

    // Detail: one row per cell.
    println!();
    println!("| size B | variant | M rec/s | GB/s | x baseline | producer CPU ns/rec |");
    println!("|---:|:---|---:|---:|---:|---:|");
    for size in report.sizes() {
        for (variant, producers) in cells(&report.threads, &[]) {
            if let Some(m) = report.cell(variant, producers, size) {
                println!(
                    "| {size} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
                    variant.label(producers),
                    m.records_per_sec / 1e6,
                    m.gb_per_sec,
                    m.ratio_to_baseline,
                    m.producer_cpu_ns_per_record
                );
            }
        }
    }

    println!();
    println!("memcpy in the same run (one thread, one copy per record into a buffer of the rings' size):");
    println!();
    println!("| size B | M rec/s | GB/s | baseline / memcpy | ring x1 / memcpy |");
    println!("|---:|---:|---:|---:|---:|");
    for copy in &report.memcpy {
        let share = |v| {
            report.cell(v, 1, copy.size).map_or_else(
                || "-".to_owned(),
                |m| format!("{:.2}", m.gb_per_sec / copy.gb_per_sec),
            )
        };
        println!(
            "| {} | {:.2} | {:.2} | {} | {} |",
            copy.size,
            copy.records_per_sec / 1e6,
            copy.gb_per_sec,
            share(Variant::Baseline),
            share(Variant::Ring)
        );
    }

    let verdict = |what: &str, r: Option<f64>, target: f64| match r {
        Some(r) if r >= target => format!("{what} {r:.2} >= {target} met"),
        Some(r) => format!("{what} {r:.2} < {target} MISSED"),
        None => format!("{what} not measured"),
    };
    println!();
    println!("targets at {TARGET_SIZE} B:");
    println!(
        "  {}",
        verdict(
            "ring x1 / baseline",
            report.single_ratio_at_64,
            TARGET_SINGLE
        )
    );
    println!(
        "  {}",
        verdict(
            "min over N>1 of ring xN / baseline",
            report.multi_ratio_at_64,
            TARGET_MULTI
        )
    );
    println!(
        "  {}",
        verdict(
            "ring x1 / datagram",
            report.datagram_ratio_at_64,
            TARGET_VS_DATAGRAM
        )
    );
    println!(
        "  {}",
        verdict(
            "ring x1 / iceoryx2",
            report.iceoryx2_ratio_at_64,
            TARGET_VS_ICEORYX2
        )
    );
    if let Some(r) = report.stream_ratio_at_64 {
        println!("  ring x1 / stream {r:.2} (no target)");
    }
}

/// Draws the charts into `dir` (created if missing); returns their paths.
pub fn plot(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut written = Vec::new();

    // Rate by size, one series per cell kind.
    let by_size: Vec<Series> = cells(&report.threads, &[])
        .into_iter()
        .filter_map(|(variant, producers)| {
            let points: Vec<(f64, f64)> = report
                .sizes()
                .into_iter()
                .filter_map(|size| {
                    let m = report.cell(variant, producers, size)?;
                    Some((size as f64, m.records_per_sec / 1e6))
                })
                .collect();
            (!points.is_empty()).then(|| Series::new(variant.label(producers), points))
        })
        .collect();
    let path = dir.join("handoff-rate-by-size.svg");
    plot::lines(
        &path,
        &Chart {
            title: "hand-off between processes: rate by message size",
            x_label: "message size (bytes)",
            y_label: "M records/s",
            x_scale: Scale::Log,
            y_scale: Scale::Log,
        },
        &by_size,
    )?;
    written.push(path);

    // Rate by producer threads at 64 B (or the first size measured): the
    // ring's thread counts, and the single-producer transports as flat
    // references.
    let Some(size) = report
        .sizes()
        .into_iter()
        .find(|&s| s == TARGET_SIZE)
        .or_else(|| report.sizes().first().copied())
    else {
        return Ok(written);
    };
    let ring: Vec<(f64, f64)> = report
        .threads
        .iter()
        .filter_map(|&t| {
            let m = report.cell(Variant::Ring, t, size)?;
            Some((f64::from(t), m.records_per_sec / 1e6))
        })
        .collect();
    let (lo, hi) = (
        f64::from(*report.threads.first().unwrap_or(&1)),
        f64::from(*report.threads.last().unwrap_or(&1)),
    );
    let mut by_threads = vec![Series::new("ring", ring)];
    for v in [
        Variant::Baseline,
        Variant::Datagram,
        Variant::Stream,
        Variant::Iceoryx2,
    ] {
        if let Some(m) = report.cell(v, 1, size) {
            let r = m.records_per_sec / 1e6;
            by_threads.push(Series::new(
                format!("{} (1 producer)", v.name()),
                vec![(lo, r), (hi, r)],
            ));
        }
    }
    let path = dir.join("handoff-rate-by-threads.svg");
    let title = format!("hand-off between processes: rate by producer threads, {size} B");
    plot::lines(
        &path,
        &Chart {
            title: &title,
            x_label: "producer threads",
            y_label: "M records/s",
            // 1, 2, 4, 8 evenly spaced.
            x_scale: Scale::Log,
            y_scale: Scale::Log,
        },
        &by_threads,
    )?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::Measurement;

    fn report() -> Report {
        let mut results = Vec::new();
        for size in [64, 4096] {
            for (variant, producers, rate) in [
                (Variant::Baseline, 1, 30e6),
                (Variant::Ring, 1, 24e6),
                (Variant::Ring, 2, 20e6),
                (Variant::Datagram, 1, 0.7e6),
                (Variant::Stream, 1, 6e6),
            ] {
                results.push(Measurement {
                    variant,
                    producers,
                    size,
                    records: 1000,
                    seconds: 1000.0 / rate,
                    records_per_sec: rate,
                    gb_per_sec: rate * size as f64 / 1e9,
                    producer_cpu_ns_per_record: 40.0,
                    ratio_to_baseline: rate / 30e6,
                });
            }
        }
        Report {
            scenario: "handoff",
            cpus: 2,
            pinned: true,
            capacity: 1 << 20,
            repeat: 1,
            threads: vec![1, 2],
            stream_batch: 65536,
            results,
            memcpy: Vec::new(),
            single_ratio_at_64: Some(0.8),
            multi_ratio_at_64: Some(20.0 / 30.0),
            datagram_ratio_at_64: Some(24.0 / 0.7),
            stream_ratio_at_64: Some(4.0),
            iceoryx2_ratio_at_64: None,
        }
    }

    #[test]
    fn ratios_divide_ring_x1_by_the_other() {
        let r = report();
        assert!((r.ring_over(Variant::Stream, 64).unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(r.ring_over(Variant::Iceoryx2, 64), None);
        assert_eq!(ratio(Some(34.2857)), "34x");
        assert_eq!(ratio(Some(0.8)), "0.80x");
    }

    #[test]
    fn plots_both_charts() {
        let dir = tempfile::tempdir().unwrap();
        let paths = plot(&report(), dir.path()).unwrap();
        assert_eq!(paths.len(), 2);
        let by_size = std::fs::read_to_string(&paths[0]).unwrap();
        for label in ["baseline", "ring x1", "ring x2", "datagram", "stream"] {
            assert!(by_size.contains(label), "missing {label}");
        }
        let by_threads = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(by_threads.contains("64 B"));
    }
}
