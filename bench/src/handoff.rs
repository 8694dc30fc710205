//! `handoff`: messages from a producer process to a consumer process, no
//! Kafka: the shmkafka ring against the least work any hand-off must do,
//! memcpy, and the transports other producer daemons use.
//!
//! For each message size, in one run:
//! - `baseline`: one producer thread pushing length-prefixed frames into a
//!   plain SPSC ring in a shared memfd ([`crate::spsc`]), publishing per
//!   batch: the least work any hand-off of a copy through shared memory
//!   must do on this machine;
//! - `ring xN`: N producer threads (each of `--threads`) in one process
//!   sharing a shmkafka segment;
//! - `datagram`: a Unix datagram socket, one `send` per record (Bruce, Dory);
//! - `stream`: a Unix stream socket with length-prefixed frames written in
//!   64 KiB batches (`handoff/socket.rs`);
//! - `iceoryx2` (cargo feature `iceoryx2`): iceoryx2's publish-subscribe
//!   with loaned slices (`handoff/iox.rs`).
//!
//! The producer runs in a child process (this binary, re-executed) that
//! creates the transport (memfd, socketpair or iceoryx2 service) and hands
//! it over a control socketpair, as a client does. The parent is the
//! consumer: it reads every payload byte (a checksum the child's is checked
//! against). Shared-memory consumers spin when there is nothing to do, so
//! the figures are the hand-off cost, not wake-up latency.

mod common;
#[cfg(feature = "iceoryx2")]
mod iox;
mod output;
mod shm;
mod socket;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, ensure, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use common::{allowed_cpus, pin_current_thread, process_cpu_ns, Peer};
pub use common::{checksum, Backoff};

use crate::fdpass;

/// Target from the issue: one producer through the ring vs the baseline.
pub const TARGET_SINGLE: f64 = 0.8;
/// Target from the issue: N producers through the ring vs the baseline.
pub const TARGET_MULTI: f64 = 0.6;
/// Target from the issue: one producer through the ring vs the datagram
/// socket.
pub const TARGET_VS_DATAGRAM: f64 = 20.0;
/// Target from the issue: one producer through the ring vs iceoryx2.
pub const TARGET_VS_ICEORYX2: f64 = 1.0;
/// Size at which the targets are judged.
pub const TARGET_SIZE: usize = 64;
/// Payload volume per measurement for large messages.
const BYTES_PER_RUN: u64 = 1 << 30;
/// Record count per measurement for small messages.
const MAX_RECORDS: u64 = 8_000_000;

/// Options of the `handoff` scenario.
#[derive(Debug, Clone, Args)]
pub struct HandoffArgs {
    /// Message (value) sizes in bytes, at least 8.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16,64,256,1024,4096,16384,65536"
    )]
    pub sizes: Vec<usize>,
    /// Records per measurement (default 8M), at most 1 GiB of payload.
    #[arg(long)]
    pub records: Option<u64>,
    /// Measurements per cell; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Producer thread counts of the ring (threads of one producer process
    /// sharing the segment).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub threads: Vec<u32>,
    /// Data area of the rings, in bytes (a power of two; records up to half
    /// of it). The iceoryx2 subscriber buffers as many samples as fit in it.
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: usize,
    /// Bytes the stream producer buffers before each `write(2)` (1: one
    /// write per record).
    #[arg(long, default_value_t = socket::STREAM_BATCH)]
    pub stream_batch: usize,
    /// Variants to measure (default: all this build has; the baseline is
    /// always measured, the others' ratios refer to it).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variants: Vec<Variant>,
    /// Leave scheduling to the kernel instead of pinning the consumer to the
    /// last CPU and the producers to the others.
    #[arg(long)]
    pub no_pin: bool,
    /// Also write the results as JSON to this path.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw SVG charts into this directory: rate by size, and rate by
    /// producer threads at 64 B.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// What a producer child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The bare SPSC frame ring.
    Baseline,
    /// The shmkafka ring.
    Ring,
    /// A Unix datagram socket: one `send` per record, the transport of the
    /// classic producer daemons (Bruce, Dory).
    Datagram,
    /// A Unix stream socket: length-prefixed frames, batched writes.
    Stream,
    /// iceoryx2 publish-subscribe (needs the `iceoryx2` feature).
    Iceoryx2,
}

impl Variant {
    /// Lower-case name, as on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Ring => "ring",
            Variant::Datagram => "datagram",
            Variant::Stream => "stream",
            Variant::Iceoryx2 => "iceoryx2",
        }
    }

    /// Name with the producer count where it varies (`ring x4`).
    pub fn label(self, producers: u32) -> String {
        match self {
            Variant::Ring => format!("ring x{producers}"),
            _ => self.name().to_owned(),
        }
    }

    /// Whether this build can run the variant.
    pub fn available(self) -> bool {
        self != Variant::Iceoryx2 || cfg!(feature = "iceoryx2")
    }
}

/// Options of the hidden producer-child role.
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// Which transport to produce into.
    #[arg(long, value_enum)]
    pub variant: Variant,
    /// Producer threads (all but the ring: 1).
    #[arg(long)]
    pub threads: u32,
    /// Message size.
    #[arg(long)]
    pub size: usize,
    /// Records in total.
    #[arg(long)]
    pub records: u64,
    /// Data area size.
    #[arg(long)]
    pub capacity: usize,
    /// CPUs to pin producer threads to, round robin (none: no pinning).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// iceoryx2 service name.
    #[arg(long)]
    pub service: Option<String>,
    /// Stream producer's write batch in bytes.
    #[arg(long, default_value_t = socket::STREAM_BATCH)]
    pub stream_batch: usize,
}

/// One measured cell.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Transport used.
    pub variant: Variant,
    /// Producer threads.
    pub producers: u32,
    /// Message size in bytes.
    pub size: usize,
    /// Records handed off.
    pub records: u64,
    /// Wall time from "go" to the last record consumed.
    pub seconds: f64,
    /// Records per second.
    pub records_per_sec: f64,
    /// Payload gigabytes (1e9) per second.
    pub gb_per_sec: f64,
    /// CPU time (user + system) of the producer process per record.
    pub producer_cpu_ns_per_record: f64,
    /// Rate relative to the baseline at the same size.
    pub ratio_to_baseline: f64,
}

/// One size's memcpy bandwidth.
#[derive(Debug, Clone, Serialize)]
pub struct MemcpyMeasurement {
    /// Record size in bytes.
    pub size: usize,
    /// Records copied per second.
    pub records_per_sec: f64,
    /// Gigabytes (1e9) copied per second.
    pub gb_per_sec: f64,
}

/// Copies `records` records of `size` bytes one after another into a
/// `capacity`-byte buffer (wrapping, as a ring does), on this thread.
fn measure_memcpy(size: usize, capacity: usize, records: u64) -> MemcpyMeasurement {
    let source = vec![0x5a_u8; size];
    // Written once before timing, so page faults are not measured.
    let mut target = vec![0xa5_u8; capacity.max(size)];
    let start = std::time::Instant::now();
    let mut at = 0;
    for _ in 0..records {
        if at + size > target.len() {
            at = 0;
        }
        target[at..at + size].copy_from_slice(&source);
        std::hint::black_box(&target[at]);
        at += size;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    MemcpyMeasurement {
        size,
        records_per_sec: records as f64 / seconds,
        gb_per_sec: records as f64 * size as f64 / seconds / 1e9,
    }
}

/// The whole run, as written to `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Online CPUs.
    pub cpus: usize,
    /// Whether consumer and producers were pinned.
    pub pinned: bool,
    /// Data area size.
    pub capacity: usize,
    /// Measurements per cell (best reported).
    pub repeat: u32,
    /// Producer thread counts of the ring.
    pub threads: Vec<u32>,
    /// Stream producer's write batch in bytes.
    pub stream_batch: usize,
    /// All cells.
    pub results: Vec<Measurement>,
    /// memcpy in this process, one copy per record into a buffer of the
    /// rings' size: the bandwidth every shared-memory path is bounded by.
    pub memcpy: Vec<MemcpyMeasurement>,
    /// `ring x1 / baseline` at 64 B (target 0.8).
    pub single_ratio_at_64: Option<f64>,
    /// The lowest `ring xN / baseline` at 64 B over N > 1 (target 0.6).
    pub multi_ratio_at_64: Option<f64>,
    /// `ring x1 / datagram` at 64 B (target 20).
    pub datagram_ratio_at_64: Option<f64>,
    /// `ring x1 / stream` at 64 B.
    pub stream_ratio_at_64: Option<f64>,
    /// `ring x1 / iceoryx2` at 64 B (target 1).
    pub iceoryx2_ratio_at_64: Option<f64>,
}

impl Report {
    /// The cell of `variant` with `producers` at `size`.
    pub fn cell(&self, variant: Variant, producers: u32, size: usize) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|m| m.variant == variant && m.producers == producers && m.size == size)
    }

    /// Rate of `ring x1` over the rate of `other` at `size`.
    pub fn ring_over(&self, other: Variant, size: usize) -> Option<f64> {
        let ring = self.cell(Variant::Ring, 1, size)?;
        let other = self.cell(other, 1, size)?;
        Some(ring.records_per_sec / other.records_per_sec)
    }

    /// Sizes measured, in order.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.results.iter().map(|m| m.size).collect();
        sizes.dedup();
        sizes
    }
}

/// The cells measured at each size, in order: the baseline first (the
/// others' ratios refer to it), then the ring at each thread count, then
/// the single-producer transports this build has. `only` (if not empty)
/// keeps those variants and the baseline.
pub fn cells(threads: &[u32], only: &[Variant]) -> Vec<(Variant, u32)> {
    let mut cells = vec![(Variant::Baseline, 1)];
    cells.extend(threads.iter().map(|&t| (Variant::Ring, t)));
    cells.extend(
        [Variant::Datagram, Variant::Stream, Variant::Iceoryx2]
            .into_iter()
            .filter(|v| v.available())
            .map(|v| (v, 1)),
    );
    cells.retain(|(v, _)| *v == Variant::Baseline || only.is_empty() || only.contains(v));
    cells
}

/// Runs the scenario and prints the table.
pub fn run(args: &HandoffArgs) -> anyhow::Result<Report> {
    ensure!(args.sizes.iter().all(|&s| s >= 8), "sizes must be >= 8");
    ensure!(
        !args.threads.is_empty() && args.threads.iter().all(|&t| t >= 1) && args.repeat >= 1,
        "threads and repeat >= 1"
    );
    if let Some(v) = args.variants.iter().find(|v| !v.available()) {
        bail!("{} needs the cargo feature `{}`", v.name(), v.name());
    }
    let mut threads = args.threads.clone();
    threads.sort_unstable();
    threads.dedup();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let allowed = allowed_cpus()?;
    let pin = !args.no_pin && allowed.len() >= 2;
    let producer_cpus: Vec<usize> = if pin {
        let consumer_cpu = *allowed.last().expect("two or more");
        pin_current_thread(consumer_cpu)?;
        allowed[..allowed.len() - 1].to_vec()
    } else {
        Vec::new()
    };
    eprintln!(
        "handoff: {cpus} CPUs, {}, capacity {} bytes, best of {}{}",
        if pin {
            format!(
                "consumer on CPU {}, producers on {:?}",
                allowed.last().expect("cpu"),
                producer_cpus
            )
        } else {
            "not pinned".to_owned()
        },
        args.capacity,
        args.repeat,
        if Variant::Iceoryx2.available() {
            ""
        } else {
            " (iceoryx2 not built: cargo feature `iceoryx2`)"
        }
    );

    let cells = cells(&threads, &args.variants);
    let progress =
        ProgressBar::new((args.sizes.len() * cells.len()) as u64 * u64::from(args.repeat))
            .with_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} measurements, {elapsed} (eta {eta}) {msg}",
                )
                .expect("template"),
            );
    let mut results = Vec::new();
    let mut memcpy = Vec::new();
    for &size in &args.sizes {
        // Large records are capped by payload volume, whatever was asked.
        let records = args
            .records
            .unwrap_or(MAX_RECORDS)
            .min(BYTES_PER_RUN / size as u64)
            .max(1);
        memcpy.push(measure_memcpy(size, args.capacity, records));
        let mut baseline_rate = f64::NAN;
        for &(variant, producers) in &cells {
            let label = variant.label(producers);
            progress.set_message(format!("{size} B {label}"));
            let child = ChildArgs {
                variant,
                threads: producers,
                size,
                // Equal share per thread, at least one each.
                records: (records / u64::from(producers)).max(1) * u64::from(producers),
                capacity: args.capacity,
                cpus: producer_cpus.clone(),
                service: None,
                stream_batch: args.stream_batch,
            };
            let mut best: Option<Measurement> = None;
            for _ in 0..args.repeat {
                let m = measure(&child)
                    .with_context(|| format!("{label} at {size} B"))
                    .inspect_err(|_| progress.abandon())?;
                progress.inc(1);
                if best
                    .as_ref()
                    .is_none_or(|b| m.records_per_sec > b.records_per_sec)
                {
                    best = Some(m);
                }
            }
            let mut m = best.expect("repeat >= 1");
            if variant == Variant::Baseline {
                baseline_rate = m.records_per_sec;
            }
            m.ratio_to_baseline = m.records_per_sec / baseline_rate;
            progress.suspend(|| {
                eprintln!(
                    "  {size:>5} B {label:<9}: {:>7.2} M rec/s {:>6.2} GB/s ({:.2}x baseline)",
                    m.records_per_sec / 1e6,
                    m.gb_per_sec,
                    m.ratio_to_baseline
                );
            });
            results.push(m);
        }
    }
    progress.finish_and_clear();

    let mut report = Report {
        scenario: "handoff",
        cpus,
        pinned: pin,
        capacity: args.capacity,
        repeat: args.repeat,
        threads,
        stream_batch: args.stream_batch,
        results,
        memcpy,
        single_ratio_at_64: None,
        multi_ratio_at_64: None,
        datagram_ratio_at_64: None,
        stream_ratio_at_64: None,
        iceoryx2_ratio_at_64: None,
    };
    let at_target = |variant, producers| {
        report
            .cell(variant, producers, TARGET_SIZE)
            .map(|m| m.ratio_to_baseline)
    };
    let single = at_target(Variant::Ring, 1);
    let multi = report
        .threads
        .iter()
        .filter(|&&t| t > 1)
        .filter_map(|&t| at_target(Variant::Ring, t))
        .reduce(f64::min);
    let datagram = report.ring_over(Variant::Datagram, TARGET_SIZE);
    let stream = report.ring_over(Variant::Stream, TARGET_SIZE);
    let iceoryx2 = report.ring_over(Variant::Iceoryx2, TARGET_SIZE);
    report.single_ratio_at_64 = single;
    report.multi_ratio_at_64 = multi;
    report.datagram_ratio_at_64 = datagram;
    report.stream_ratio_at_64 = stream;
    report.iceoryx2_ratio_at_64 = iceoryx2;

    output::print_tables(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("serialise")?;
        std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(dir) = &args.plot {
        for path in output::plot(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(report)
}

/// Runs one producer child and consumes everything it produces.
fn measure(child_args: &ChildArgs) -> anyhow::Result<Measurement> {
    static SERVICES: AtomicU32 = AtomicU32::new(0);
    let mut child_args = child_args.clone();
    if child_args.variant == Variant::Iceoryx2 {
        child_args.service = Some(format!(
            "shmkafka-bench/handoff/{}/{}",
            std::process::id(),
            SERVICES.fetch_add(1, Ordering::Relaxed)
        ));
    }
    let (child, socket) = fdpass::spawn_self(&child_argv(&child_args))?;
    let mut peer = Peer::new(child, socket);
    let consumed = match child_args.variant {
        Variant::Baseline => shm::consume_baseline(&mut peer, &child_args),
        Variant::Ring => shm::consume_ring(&mut peer, &child_args),
        Variant::Datagram => socket::consume_datagram(&mut peer, &child_args),
        Variant::Stream => socket::consume_stream(&mut peer, &child_args),
        #[cfg(feature = "iceoryx2")]
        Variant::Iceoryx2 => iox::consume(&mut peer, &child_args),
        #[cfg(not(feature = "iceoryx2"))]
        Variant::Iceoryx2 => Err(anyhow::anyhow!("built without the `iceoryx2` feature")),
    };
    let (sum, seconds) = match consumed {
        Ok(done) => done,
        Err(e) => {
            // Best effort: the child may be gone already.
            let _ = peer.child.kill();
            let _ = peer.child.wait();
            return Err(e);
        }
    };
    let mut line = String::new();
    BufReader::new(&peer.socket)
        .read_line(&mut line)
        .context("child result")?;
    let status = peer.child.wait().context("wait child")?;
    ensure!(status.success(), "producer child failed: {status}");
    let mut parts = line.split_whitespace();
    let expected: u64 = parts.next().context("checksum")?.parse()?;
    let cpu_ns: u64 = parts.next().context("cpu time")?.parse()?;
    ensure!(
        expected == sum,
        "checksum mismatch: consumer read {sum:#x}, producer wrote {expected:#x}"
    );
    let n = child_args.records;
    let secs = seconds.as_secs_f64();
    Ok(Measurement {
        variant: child_args.variant,
        producers: child_args.threads,
        size: child_args.size,
        records: n,
        seconds: secs,
        records_per_sec: n as f64 / secs,
        gb_per_sec: (n * child_args.size as u64) as f64 / secs / 1e9,
        producer_cpu_ns_per_record: cpu_ns as f64 / n as f64,
        ratio_to_baseline: f64::NAN,
    })
}

fn child_argv(args: &ChildArgs) -> Vec<String> {
    let mut argv = vec![
        "handoff-child".to_owned(),
        "--variant".to_owned(),
        args.variant.name().to_owned(),
        "--threads".to_owned(),
        args.threads.to_string(),
        "--size".to_owned(),
        args.size.to_string(),
        "--records".to_owned(),
        args.records.to_string(),
        "--capacity".to_owned(),
        args.capacity.to_string(),
        "--stream-batch".to_owned(),
        args.stream_batch.to_string(),
    ];
    if !args.cpus.is_empty() {
        argv.push("--cpus".to_owned());
        argv.push(
            args.cpus
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(service) = &args.service {
        argv.push("--service".to_owned());
        argv.push(service.clone());
    }
    argv
}

/// The producer child: create the transport, hand it over, wait for "go",
/// produce, report the checksum and CPU time.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let socket = fdpass::child_socket()?;
    let expected = match args.variant {
        Variant::Baseline => shm::produce_baseline(&socket, args)?,
        Variant::Ring => shm::produce_ring(&socket, args)?,
        Variant::Datagram => socket::produce_datagram(&socket, args)?,
        Variant::Stream => socket::produce_stream(&socket, args)?,
        #[cfg(feature = "iceoryx2")]
        Variant::Iceoryx2 => iox::produce(&socket, args)?,
        #[cfg(not(feature = "iceoryx2"))]
        Variant::Iceoryx2 => bail!("built without the `iceoryx2` feature"),
    };
    let cpu_ns = process_cpu_ns();
    (&socket)
        .write_all(format!("{expected} {cpu_ns}\n").as_bytes())
        .context("report")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_put_the_baseline_first_and_every_thread_count() {
        let cells = cells(&[1, 2, 4, 8], &[]);
        assert_eq!(cells[0], (Variant::Baseline, 1));
        for t in [1, 2, 4, 8] {
            assert!(cells.contains(&(Variant::Ring, t)));
        }
        assert!(cells.contains(&(Variant::Stream, 1)));
        assert_eq!(
            cells.contains(&(Variant::Iceoryx2, 1)),
            cfg!(feature = "iceoryx2")
        );
    }

    #[test]
    fn cells_keep_the_baseline_when_filtered() {
        assert_eq!(
            cells(&[1, 4], &[Variant::Stream]),
            vec![(Variant::Baseline, 1), (Variant::Stream, 1)]
        );
    }

    #[test]
    fn child_argv_parses_back() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            role: Role,
        }
        #[derive(clap::Subcommand)]
        enum Role {
            HandoffChild(ChildArgs),
        }
        let args = ChildArgs {
            variant: Variant::Iceoryx2,
            threads: 1,
            size: 64,
            records: 1000,
            capacity: 1 << 20,
            cpus: vec![0, 1],
            service: Some("a/b/1".to_owned()),
            stream_batch: 4096,
        };
        let argv = std::iter::once("bench".to_owned()).chain(child_argv(&args));
        let Role::HandoffChild(parsed) = Cli::try_parse_from(argv).unwrap().role;
        assert_eq!(parsed.variant, Variant::Iceoryx2);
        assert_eq!(parsed.cpus, vec![0, 1]);
        assert_eq!(parsed.service.as_deref(), Some("a/b/1"));
        assert_eq!(parsed.stream_batch, 4096);
    }
}
