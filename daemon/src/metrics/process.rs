//! The standard `process_*` metrics of the daemon's own process, read from
//! `/proc/self` through `procfs` at scrape time (what the Go and Python
//! clients' process collectors export, with the same names).

use std::fmt;

use procfs::process::{LimitValue, Process};
use prometheus_client::encoding::DescriptorEncoder;

use crate::metrics::encode::{counters, gauges};

/// Writes `process_*`; a family whose source cannot be read is left out.
pub fn encode(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let Ok(me) = Process::myself() else {
        return Ok(());
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        counters(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            [(Vec::new(), (stat.utime + stat.stime) as f64 / ticks)],
        )?;
        gauges(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            [(Vec::new(), (stat.rss * procfs::page_size()) as f64)],
        )?;
        gauges(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes (the client rings mapped in count here)",
            [(Vec::new(), stat.vsize as f64)],
        )?;
        gauges(
            e,
            "process_threads",
            "Number of OS threads in the process",
            [(Vec::new(), stat.num_threads as f64)],
        )?;
        if let Ok(boot) = procfs::boot_time_secs() {
            gauges(
                e,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                [(Vec::new(), boot as f64 + stat.starttime as f64 / ticks)],
            )?;
        }
    }
    if let Ok(open) = me.fd_count() {
        gauges(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            [(Vec::new(), open as f64)],
        )?;
    }
    if let Ok(limits) = me.limits() {
        if let LimitValue::Value(max) = limits.max_open_files.soft_limit {
            gauges(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                [(Vec::new(), max as f64)],
            )?;
        }
    }
    Ok(())
}
