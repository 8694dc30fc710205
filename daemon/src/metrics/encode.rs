//! Writing one metric family (descriptor, then one sample per label set)
//! with `prometheus_client`'s encoder, so collectors deal in rows.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::metrics::latency::LatencySnapshot;

/// Label pairs of one sample.
pub type Labels = Vec<(&'static str, String)>;

/// Writes a gauge family; a family without rows is left out.
pub fn gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    family(encoder, name, help, MetricType::Gauge, rows)
}

/// Writes a counter family (the encoder appends `_total`).
pub fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    family(encoder, name, help, MetricType::Counter, rows)
}

fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut sample = metric.encode_family(&labels)?;
        // Whole numbers print as integers ("42", not "42.0"), as the
        // counts they are; f64 holds integers exactly up to 2^53.
        let whole = value.fract() == 0.0 && value.abs() < (1u64 << 53) as f64;
        match kind {
            MetricType::Counter if whole && value >= 0.0 => {
                sample.encode_counter::<NoLabelSet, _, u64>(&(value as u64), None)?
            }
            MetricType::Counter => sample.encode_counter::<NoLabelSet, _, f64>(&value, None)?,
            _ if whole => sample.encode_gauge(&(value as i64))?,
            _ => sample.encode_gauge(&value)?,
        }
    }
    Ok(())
}

/// Writes a histogram family of latencies in seconds.
pub fn latency_histograms(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, LatencySnapshot)>,
) -> fmt::Result {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in rows {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                histogram.sum_seconds(),
                histogram.count(),
                &histogram.seconds_buckets(),
                None,
            )?;
    }
    Ok(())
}
