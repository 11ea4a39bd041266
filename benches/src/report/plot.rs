//! SVG plots with `plotters`: program time vs pods per engine, ADD latency distributions.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::record::Record;

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

fn log_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = if lo > 0.0 { lo } else { 1e-3 };
    let hi = if hi > lo { hi } else { lo * 10.0 };
    (lo / 1.5)..(hi * 1.5)
}

/// Program time (median ms, log) against pods (log), one line per engine and policy count,
/// from records of metric `full_program` with a `pods` parameter. `None` when there are none.
pub fn program_time_svg(records: &[Record]) -> Result<Option<String>, String> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.metric == "full_program") {
        let Some(pods) = r.params.get("pods") else {
            continue;
        };
        let label = match r.params.get("policies") {
            Some(p) => format!("{}, {} policies", r.engine, p),
            None => r.engine.clone(),
        };
        series.entry(label).or_default().push((*pods, r.median));
    }
    if series.is_empty() {
        return Ok(None);
    }
    let pts = series.values().flatten();
    let (xmin, xmax) = pts
        .clone()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = pts.fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Full program time vs pods (median, log-log)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                log_range(xmin, xmax).log_scale(),
                log_range(ymin, ymax).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("pods")
            .y_desc("full program time (ms)")
            .draw()
            .map_err(err)?;
        for (i, (label, mut pts)) in series.into_iter().enumerate() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(buf))
}

/// Empirical CDFs of ADD latency, one line per implementation, one plot per case, from
/// records of metric `add_latency` that kept their samples. Returns (case, svg) pairs.
pub fn add_latency_svgs(records: &[Record]) -> Result<Vec<(String, String)>, String> {
    let mut cases: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.metric == "add_latency" && !r.samples.is_empty())
    {
        cases.entry(&r.case).or_default().push(r);
    }
    let mut out = Vec::new();
    for (case, recs) in cases {
        let all = recs.iter().flat_map(|r| r.samples.iter().copied());
        let (lo, hi) = all.fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (900, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("ADD latency distribution, {case} (CDF)"),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(log_range(lo, hi).log_scale(), 0f64..1.0)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(format!("ADD latency ({}, log)", recs[0].unit))
                .y_desc("fraction of ADDs")
                .draw()
                .map_err(err)?;
            for (i, r) in recs.iter().enumerate() {
                let mut s = r.samples.clone();
                s.sort_by(f64::total_cmp);
                let n = s.len() as f64;
                let pts: Vec<(f64, f64)> = s
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (*v, (k + 1) as f64 / n))
                    .collect();
                let c = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("{} (median {:.3} {})", r.engine, r.median, r.unit))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        out.push((case.to_string(), buf));
    }
    Ok(out)
}
