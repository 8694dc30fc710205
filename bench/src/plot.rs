//! SVG line charts of a scenario's results, one function for every
//! scenario so the pictures look alike.
//!
//! SVG keeps the bench free of font and image libraries: text is emitted as
//! `<text>` elements the viewer lays out.

use std::path::Path;

use anyhow::{ensure, Context};
use plotters::prelude::*;

/// One line of a chart: a label and its points (x, y).
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from a label and points.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            points,
        }
    }
}

/// Axis scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear from zero (or the smallest value if negative).
    Linear,
    /// Logarithmic; every value must be positive.
    Log,
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// X axis caption, with unit.
    pub x_label: &'a str,
    /// Y axis caption, with unit.
    pub y_label: &'a str,
    /// X axis scale.
    pub x_scale: Scale,
    /// Y axis scale.
    pub y_scale: Scale,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn bounds(values: impl Iterator<Item = f64>, scale: Scale) -> anyhow::Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    ensure!(lo.is_finite(), "nothing to plot");
    Ok(match scale {
        Scale::Linear => {
            let lo = lo.min(0.0);
            let hi = if hi > lo { hi * 1.08 } else { lo + 1.0 };
            (lo, hi)
        }
        Scale::Log => {
            ensure!(lo > 0.0, "log scale needs positive values");
            (lo / 1.5, hi * 1.5)
        }
    })
}

/// Draws `series` as lines with markers into an SVG file at `path`.
pub fn lines(path: &Path, chart: &Chart<'_>, series: &[Series]) -> anyhow::Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x = bounds(points().map(|p| p.0), chart.x_scale)?;
    let y = bounds(points().map(|p| p.1), chart.y_scale)?;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("drawing")?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    // The four scale combinations are distinct types in plotters.
    macro_rules! draw {
        ($x:expr, $y:expr) => {{
            let mut ctx = builder
                .build_cartesian_2d($x, $y)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                ctx.draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(s.label.clone())
                .legend(move |(px, py)| {
                    PathElement::new(vec![(px, py), (px + 20, py)], color.stroke_width(2))
                });
                ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }};
    }
    match (chart.x_scale, chart.y_scale) {
        (Scale::Linear, Scale::Linear) => draw!(x.0..x.1, y.0..y.1),
        (Scale::Log, Scale::Linear) => draw!((x.0..x.1).log_scale(), y.0..y.1),
        (Scale::Linear, Scale::Log) => draw!(x.0..x.1, (y.0..y.1).log_scale()),
        (Scale::Log, Scale::Log) => draw!((x.0..x.1).log_scale(), (y.0..y.1).log_scale()),
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let chart = Chart {
            title: "rate by size",
            x_label: "bytes",
            y_label: "M records/s",
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
        };
        let series = [
            Series::new("ring", vec![(16.0, 25.0), (64.0, 22.0), (1024.0, 14.0)]),
            Series::new("datagram", vec![(16.0, 0.7), (64.0, 0.7), (1024.0, 0.6)]),
        ];
        lines(&path, &chart, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for label in ["ring", "datagram", "rate by size", "M records/s"] {
            assert!(svg.contains(label), "missing {label}");
        }
    }

    #[test]
    fn refuses_log_scale_of_zero() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
        };
        let series = [Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])];
        assert!(lines(&dir.path().join("c.svg"), &chart, &series).is_err());
    }
}
