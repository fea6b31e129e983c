//! The charts of a benchmark, as small hand-written SVG files.
//!
//! - [`quality_chart`]: quality (mean KL divergence or perplexity) against the measured
//!   speedup, one line per strategy, full depth marked.
//! - [`throughput_chart`]: decode throughput at one batch size, grouped by target, one bar
//!   per strategy, full depth as a dashed line.

use std::fmt::Write as _;

use super::report::{Report, RowReport, fmt_target};

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 62.0;
const BOTTOM: f64 = 56.0;

/// Points of one line: x, y and a label.
type Points = Vec<(f64, f64, String)>;

/// The quality measure on a chart's vertical axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityMetric {
    /// Mean KL divergence from full depth (nats), linear axis.
    Kl,
    /// Perplexity, logarithmic axis.
    Ppl,
}

/// A stable colour per strategy name.
fn color(strategy: &str) -> &'static str {
    match strategy {
        "full" => "#000000",
        "unified" => "#1f77b4",
        "early-exit" => "#d62728",
        "skipdecode" => "#2ca02c",
        "block" => "#9467bd",
        "calibrated" => "#ff7f0e",
        "random" => "#8c564b",
        _ => "#7f7f7f",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick positions covering `lo..=hi` with a 1, 2 or 5 times a power of ten step.
fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= want as f64)
        .unwrap_or(10.0 * mag);
    // Multiples of the step, rounded to its decimals (3 * 0.2 prints as 0.6).
    let scale = 10f64.powi((-step.log10().floor()).max(0.0) as i32 + 1);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|i| (i as f64 * step * scale).round() / scale)
        .collect()
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    ylog: bool,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        let (y, y0, y1) = if self.ylog {
            (y.log10(), self.y0.log10(), self.y1.log10())
        } else {
            (y, self.y0, self.y1)
        };
        H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM)
    }
}

fn header(out: &mut String, title: &str, lines: &[String]) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{}" font-size="11" fill="#555555">{}</text>"##,
            36 + 14 * i,
            esc(line)
        );
    }
}

fn axes(out: &mut String, f: &Frame, xticks: &[(f64, String)], yticks: &[f64], xl: &str, yl: &str) {
    let (l, r, t, b) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    for &y in yticks {
        let py = f.py(y);
        let _ = writeln!(
            out,
            r##"<line x1="{l}" y1="{py:.1}" x2="{r}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            l - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
    }
    for (x, label) in xticks {
        let px = f.px(*x);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{b}" x2="{px:.1}" y2="{:.1}" stroke="#333333"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            b + 5.0,
            b + 19.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        r##"<polyline points="{l},{t} {l},{b} {r},{b}" fill="none" stroke="#333333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (l + r) / 2.0,
        H - 12.0,
        esc(xl)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (t + b) / 2.0,
        esc(yl)
    );
}

fn legend(out: &mut String, entries: &[(String, &str, bool)]) {
    let x = W - RIGHT + 16.0;
    for (i, (name, c, dashed)) in entries.iter().enumerate() {
        let y = TOP + 8.0 + 20.0 * i as f64;
        let dash = if *dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{c}" stroke-width="3"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 22.0,
            x + 28.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// Quality against measured decode speedup at batch size `batch`: one line per strategy
/// through its targets, full depth marked at (1, its value). `None` when no row has both
/// quality and speed.
pub fn quality_chart(report: &Report, batch: usize, metric: QualityMetric) -> Option<String> {
    let value = |r: &RowReport| -> Option<f64> {
        let q = r.quality.as_ref()?;
        Some(match metric {
            QualityMetric::Kl => q.kl_mean,
            QualityMetric::Ppl => q.perplexity,
        })
    };
    let point = |r: &RowReport| -> Option<(f64, f64)> {
        Some((r.at_batch(batch)?.speedup.median, value(r)?))
    };
    let full = report.rows.iter().find(|r| r.strategy == "full")?;
    let full_point = point(full)?;
    let mut names: Vec<&str> = Vec::new();
    for r in &report.rows {
        if r.strategy != "full"
            && !r.strategy.starts_with("full,")
            && !names.contains(&&*r.strategy)
        {
            names.push(&r.strategy);
        }
    }
    let series: Vec<(&str, Points)> = names
        .iter()
        .map(|&n| {
            let mut pts: Vec<(f64, f64, String)> = report
                .rows
                .iter()
                .filter(|r| r.strategy == n)
                .filter_map(|r| {
                    point(r).map(|(x, y)| (x, y, r.target.map_or(String::new(), fmt_target)))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (n, pts)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let all = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, y, _)| (x, y)))
        .chain([full_point]);
    let (mut x0, mut x1, mut y0, mut y1) = (1.0f64, 1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let pad = (x1 - x0).max(0.2) * 0.08;
    let (x0, x1) = ((x0 - pad).max(0.0), x1 + pad);
    let ylog = metric == QualityMetric::Ppl;
    let (y0, y1) = if ylog {
        let (a, b) = (y0.max(1e-3).log10().floor(), y1.max(1e-3).log10().ceil());
        (10f64.powf(a), 10f64.powf(b.max(a + 1.0)))
    } else {
        (0.0, if y1 > 0.0 { y1 * 1.08 } else { 1.0 })
    };
    let f = Frame {
        x0,
        x1,
        y0,
        y1,
        ylog,
    };
    let mut out = String::new();
    let (title, ylabel) = match metric {
        QualityMetric::Kl => (
            "Quality cost against measured speedup (lower is better)",
            "mean KL divergence from full depth (nats)",
        ),
        QualityMetric::Ppl => (
            "Perplexity against measured speedup (lower is better)",
            "perplexity (log scale)",
        ),
    };
    header(
        &mut out,
        title,
        &[
            format!(
                "{}, batch {batch}, {} threads, {}",
                report.model.name, report.speed_settings.threads, report.date
            ),
            report.machine.summary(),
        ],
    );
    let xt: Vec<(f64, String)> = ticks(x0, x1, 8)
        .into_iter()
        .map(|t| (t, format!("{}x", fmt_tick(t))))
        .collect();
    let yt: Vec<f64> = if ylog {
        let mut v = Vec::new();
        let mut t = y0;
        while t <= y1 * 1.0001 {
            v.push(t);
            t *= 10.0;
        }
        v
    } else {
        ticks(y0, y1, 6)
    };
    axes(
        &mut out,
        &f,
        &xt,
        &yt,
        &format!("measured decode speedup over full depth (batch {batch})"),
        ylabel,
    );
    for (name, pts) in &series {
        let c = color(name);
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y, t) in pts {
            let (px, py) = (f.px(*x), f.py(*y));
            let _ = writeln!(
                out,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{c}"><title>{} {}: {:.3}x, {:.4}</title></circle><text x="{:.1}" y="{:.1}" font-size="10" fill="#555555">{}</text>"##,
                esc(name),
                esc(t),
                x,
                y,
                px + 6.0,
                py - 6.0,
                esc(t)
            );
        }
    }
    let (px, py) = (f.px(full_point.0), f.py(full_point.1));
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#000000" transform="rotate(45 {px:.1} {py:.1})"/><text x="{:.1}" y="{:.1}" font-weight="bold">full depth</text>"##,
        px - 5.0,
        py - 5.0,
        px + 9.0,
        py - 9.0
    );
    let mut entries: Vec<(String, &str, bool)> = series
        .iter()
        .map(|(n, _)| (n.to_string(), color(n), false))
        .collect();
    entries.push(("full depth".into(), color("full"), false));
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    Some(out)
}

/// Decode throughput at batch size `batch`: a group of bars per target, one bar per
/// strategy, full depth as a dashed line. `None` when the batch size was not measured.
pub fn throughput_chart(report: &Report, batch: usize) -> Option<String> {
    let full = report
        .rows
        .iter()
        .find(|r| r.strategy == "full")?
        .at_batch(batch)?
        .decode_tokens_per_s
        .median;
    let mut targets: Vec<f64> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in &report.rows {
        if r.strategy == "full" || r.strategy.starts_with("full,") {
            continue;
        }
        if let Some(t) = r.target
            && !targets.contains(&t)
        {
            targets.push(t);
        }
        if !names.contains(&&*r.strategy) {
            names.push(&r.strategy);
        }
    }
    let names: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            report
                .rows
                .iter()
                .any(|r| r.strategy == *n && r.at_batch(batch).is_some() && r.target.is_some())
        })
        .collect();
    if targets.is_empty() || names.is_empty() {
        return None;
    }
    let value = |n: &str, t: f64| -> Option<(f64, f64, f64)> {
        let r = report
            .rows
            .iter()
            .find(|r| r.strategy == n && r.target == Some(t))?;
        let d = &r.at_batch(batch)?.decode_tokens_per_s;
        Some((d.median, d.min, d.max))
    };
    let ymax = names
        .iter()
        .flat_map(|n| targets.iter().filter_map(|&t| value(n, t).map(|v| v.2)))
        .fold(full, f64::max)
        * 1.1;
    let f = Frame {
        x0: 0.0,
        x1: targets.len() as f64,
        y0: 0.0,
        y1: ymax,
        ylog: false,
    };
    let mut out = String::new();
    header(
        &mut out,
        &format!("Decode throughput at batch {batch} (higher is better)"),
        &[
            format!(
                "{}, {} threads, median of {} rounds (whiskers: min..max), {}",
                report.model.name,
                report.speed_settings.threads,
                report.speed_settings.rounds,
                report.date
            ),
            report.machine.summary(),
        ],
    );
    let xt: Vec<(f64, String)> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| (i as f64 + 0.5, format!("target {}", fmt_target(t))))
        .collect();
    axes(
        &mut out,
        &f,
        &xt,
        &ticks(0.0, ymax, 6),
        "target speedup",
        &format!("generated tokens/s, {batch} sequences together"),
    );
    let group_w = f.px(1.0) - f.px(0.0);
    let bar_w = group_w * 0.8 / names.len() as f64;
    for (gi, &t) in targets.iter().enumerate() {
        for (si, &n) in names.iter().enumerate() {
            let x = f.px(gi as f64) + group_w * 0.1 + bar_w * si as f64;
            match value(n, t) {
                Some((m, lo, hi)) => {
                    let (ym, ylo, yhi) = (f.py(m), f.py(lo), f.py(hi));
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x:.1}" y="{ym:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {:.1} tok/s</title></rect>"#,
                        bar_w * 0.9,
                        f.py(0.0) - ym,
                        color(n),
                        esc(n),
                        fmt_target(t),
                        m
                    );
                    let cx = x + bar_w * 0.45;
                    let _ = writeln!(
                        out,
                        r##"<line x1="{cx:.1}" y1="{ylo:.1}" x2="{cx:.1}" y2="{yhi:.1}" stroke="#333333"/>"##
                    );
                }
                None => {
                    let (tx, ty) = (x + bar_w * 0.45 + 4.0, f.py(0.0) - 6.0);
                    let _ = writeln!(
                        out,
                        r##"<text x="{tx:.1}" y="{ty:.1}" font-size="10" fill="#999999" transform="rotate(-90 {tx:.1} {ty:.1})">impossible</text>"##
                    );
                }
            }
        }
    }
    let y = f.py(full);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#000000" stroke-width="2" stroke-dasharray="6 4"/>"##,
        W - RIGHT
    );
    let mut entries: Vec<(String, &str, bool)> = names
        .iter()
        .map(|n| (n.to_string(), color(n), false))
        .collect();
    entries.push((format!("full depth ({full:.0})"), color("full"), true));
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    Some(out)
}

#[cfg(test)]
#[path = "svg_tests.rs"]
mod tests;
