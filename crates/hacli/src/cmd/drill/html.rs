//! The drill's HTML page: one self-contained file (no scripts, no fetches)
//! with the timeline chart drawn by `plotters` as inline SVG (latency of
//! every request over time on a log scale, failures marked, the
//! disruption window shaded, the load balancer's DOWN and UP marked) and
//! the summary table.

use kubeadm::drill::{DrillReport, PlannedReport};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::text::{at as secs, opt_ms as ms};

/// Escape text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 460;

/// The timeline chart as an SVG document.
pub fn chart(r: &DrillReport) -> Result<String, String> {
    let mut svg = String::new();
    if let Err(e) = draw(r, &mut svg) {
        return Err(format!("drawing the chart: {e}"));
    }
    Ok(svg)
}

/// The chart's latency axis: from half the fastest request (at most
/// 0.5 ms, at least 0.005 ms) to twice the slowest (at least 2 ms).
fn latency_range(r: &DrillReport) -> (f64, f64) {
    let latencies = || r.requests.iter().map(|s| s.latency_ms);
    let lat_max = latencies().fold(1.0_f64, f64::max);
    let y_min = latencies().fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) * 0.5;
    (y_min, lat_max * 2.0)
}

fn draw<'a>(r: &DrillReport, svg: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = (r.duration_ms / 1000.0).max(1.0);
    let (y_min, y_max) = latency_range(r);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} on {}: latency of every request", r.mode, r.node),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the traffic started")
        .y_desc("latency (ms, log)")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let d0 = r.disruption.start_ms / 1000.0;
    let d1 = (r.disruption.end_ms / 1000.0).max(d0 + 0.01);
    let shade = RGBColor(255, 170, 60).mix(0.25).filled();
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(d0, y_min), (d1, y_max)],
            shade,
        )))?
        .label("disruption")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], shade));

    let ok = RGBColor(30, 100, 200);
    chart
        .draw_series(
            r.requests
                .iter()
                .filter(|s| s.outcome.is_ok())
                .map(|s| Circle::new((s.at_ms / 1000.0, s.latency_ms.max(y_min)), 2, ok.filled())),
        )?
        .label("ok")
        .legend(move |(x, y)| Circle::new((x + 6, y), 3, ok.filled()));
    chart
        .draw_series(r.requests.iter().filter(|s| !s.outcome.is_ok()).map(|s| {
            Cross::new(
                (s.at_ms / 1000.0, s.latency_ms.max(y_min)),
                4,
                RED.stroke_width(2),
            )
        }))?
        .label("failed")
        .legend(|(x, y)| Cross::new((x + 6, y), 4, RED.stroke_width(2)));

    if let Some(lb) = &r.lb {
        let marks = [
            (lb.down_ms, RGBColor(200, 0, 0), "LB: DOWN"),
            (lb.up_ms, RGBColor(0, 150, 60), "LB: UP again"),
        ];
        vlines(&mut chart, marks, 2, (y_min, y_max))?;
    }
    // A planned disruption: when etcd leadership moved, and when the act
    // (the reboot) began.
    if let Some(p) = &r.planned {
        let act = p
            .steps
            .iter()
            .find(|s| s.id.rsplit('/').next() == Some("reboot"))
            .and_then(|s| s.started_ms);
        let marks = [
            (
                p.leadership.moved_at_ms,
                RGBColor(130, 0, 160),
                "etcd leader moved",
            ),
            (act, RGBColor(60, 60, 60), "reboot began"),
        ];
        vlines(&mut chart, marks, 1, (y_min, y_max))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A vertical line at each time that is known (ms), labelled.
fn vlines<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>,
    marks: [(Option<f64>, RGBColor, &'static str); 2],
    width: u32,
    (y_min, y_max): (f64, f64),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (t, color, label) in marks {
        let Some(t) = t else { continue };
        let x = t / 1000.0;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y_min), (x, y_max)],
                color.stroke_width(width),
            )))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(width))
            });
    }
    Ok(())
}

/// The rows of the windows table.
fn windows(r: &DrillReport) -> String {
    let mut rows = String::new();
    for (name, w) in [
        ("before", &r.before),
        ("during", &r.during),
        ("after", &r.after),
        ("total", &r.total),
    ] {
        rows.push_str(&format!(
            "<tr><th>{name}</th><td>{:.2} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            w.from_ms / 1000.0,
            if w.to_ms.is_finite() {
                format!("{:.2} s", w.to_ms / 1000.0)
            } else {
                "end".into()
            },
            w.sent,
            w.failed,
            ms(w.p50_ms),
            ms(w.p99_ms)
        ));
    }
    rows
}

/// The summary table's facts: the traffic, the disruption, the load
/// balancer, the bound.
fn facts(r: &DrillReport) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("disruption", esc(&r.disruption.action)),
        (
            "traffic",
            esc(&format!(
                "{} req/s, GET {} via {}, {} connections, {} ms deadline",
                r.rate,
                r.path,
                r.endpoint,
                match r.connections {
                    kubeadm::traffic::Connections::Fresh => "fresh",
                    kubeadm::traffic::Connections::KeepAlive => "kept-alive",
                },
                r.timeout_ms
            )),
        ),
        ("started", esc(&r.started_at.to_string())),
        (
            "requests",
            format!("{} sent, {} failed", r.total.sent, r.total.failed),
        ),
        (
            "failures by kind",
            esc(&r
                .total
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")),
        ),
        (
            "longest gap",
            format!(
                "{:.1} ms (no successful answer from {:.2} s to {:.2} s)",
                r.longest_gap.ms,
                r.longest_gap.from_ms / 1000.0,
                r.longest_gap.to_ms / 1000.0
            ),
        ),
        (
            "disruption window",
            format!(
                "{:.2} s – {:.2} s",
                r.disruption.start_ms / 1000.0,
                r.disruption.end_ms / 1000.0
            ),
        ),
    ];
    if let Some(lb) = &r.lb {
        facts.push((
            "load balancer",
            esc(&format!(
                "{} in pool {}: out of rotation (DOWN, DRAIN or MAINT) at {}, UP again at {}",
                lb.server,
                lb.pool,
                secs(lb.down_ms),
                secs(lb.up_ms)
            )),
        ));
    }
    if let Some(b) = &r.bound {
        facts.push((
            "bound",
            esc(&format!(
                "fall × interval + interval = {} = {:.0} ms; gap {:.1} ms: {}; LB detection {}",
                b.formula,
                b.bound_ms,
                b.gap_ms,
                if b.gap_within { "within" } else { "EXCEEDED" },
                ms(b.detection_ms)
            )),
        ));
    }
    facts
}

/// The planned disruption's facts.
fn planned_facts(p: &PlannedReport, facts: &mut Vec<(&'static str, String)>) {
    facts.push((
        "planned disruption",
        esc(&format!(
            "{}: {} (lock holder {}, journal {})",
            p.result, p.summary, p.lock_holder, p.journal
        )),
    ));
    facts.push((
        "etcd leadership",
        esc(&super::text::leadership(&p.leadership)),
    ));
}

/// The planned disruption's steps as a table.
fn steps_table(p: &PlannedReport) -> String {
    let mut steps = String::new();
    steps.push_str("<h2>Planned disruption: steps</h2>\n<table id=\"steps\">\n<tr><th>step</th><th>started</th><th>done</th><th>note</th></tr>\n");
    for st in &p.steps {
        let note = match (&st.error, st.skipped, st.rolled_back) {
            (Some(e), _, rb) => {
                format!("FAILED: {e}{}", if rb { " (rolled back)" } else { "" })
            }
            (None, _, true) => "rolled back".into(),
            (None, true, _) => "already so".into(),
            _ => String::new(),
        };
        steps.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&st.id),
            st.started_ms
                .map_or("–".into(), |v| format!("{:.2} s", v / 1000.0)),
            st.done_ms
                .map_or("–".into(), |v| format!("{:.2} s", v / 1000.0)),
            esc(&note)
        ));
    }
    steps.push_str("</table>\n");
    steps
}

/// The whole page.
pub fn page(r: &DrillReport) -> String {
    let svg = chart(r).unwrap_or_else(|e| format!("<p class=\"error\">{}</p>", esc(&e)));
    let rows = windows(r);
    let mut facts = facts(r);
    let steps = match &r.planned {
        Some(p) => {
            planned_facts(p, &mut facts);
            steps_table(p)
        }
        None => String::new(),
    };
    if let Some(e) = &r.disruption.error {
        facts.push(("error", esc(e)));
    }
    let facts: String = facts
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>\n"))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hacli drill: {mode} on {node}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
#chart svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>Drill: {mode} on {node}</h1>
<div id="chart">
{svg}
</div>
<h2>Summary</h2>
<table id="summary">
{facts}</table>
<h2>Latency by window (successful requests)</h2>
<table id="windows">
<tr><th>window</th><th>time</th><th>sent</th><th>failed</th><th>p50</th><th>p99</th></tr>
{rows}</table>
{steps}</body>
</html>
"#,
        mode = esc(&r.mode),
        node = esc(&r.node),
    )
}
