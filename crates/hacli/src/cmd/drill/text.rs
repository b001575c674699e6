//! The drill's report as text for people: the traffic, the windows, the
//! load balancer and the bound, the planned disruption's steps.

use std::fmt::Write as _;

use kubeadm::drill::{DrillReport, PlannedLeadership, PlannedReport};
use kubeadm::traffic::Connections;

/// `12.3 ms`, or `-`.
pub(super) fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

/// `1.23 s`, or `not seen`.
pub(super) fn at(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} s", v / 1000.0))
        .unwrap_or_else(|| "not seen".into())
}

/// The text summary.
pub fn summary(r: &DrillReport) -> String {
    let mut s = String::new();
    traffic(&mut s, r);
    lb(&mut s, r);
    if let Some(p) = &r.planned {
        planned(&mut s, p);
    }
    if let Some(e) = &r.disruption.error {
        let _ = writeln!(s, "error: {e}");
    }
    s
}

/// What was sent, what failed, the longest gap, the three windows.
fn traffic(s: &mut String, r: &DrillReport) {
    let _ = writeln!(
        s,
        "drill {} on {}: {} ({} req/s of GET {} through {}, {} connections)",
        r.mode,
        r.node,
        r.disruption.action,
        r.rate,
        r.path,
        r.endpoint,
        match r.connections {
            Connections::Fresh => "fresh",
            Connections::KeepAlive => "kept-alive",
        }
    );
    let errors = if r.total.errors.is_empty() {
        String::new()
    } else {
        let e: Vec<String> = r
            .total
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        format!(" ({})", e.join(", "))
    };
    let _ = writeln!(
        s,
        "requests: {} sent, {} failed{errors}",
        r.total.sent, r.total.failed
    );
    let _ = writeln!(
        s,
        "longest stretch with no successful answer: {:.1} ms (from {:.2} s to {:.2} s)",
        r.longest_gap.ms,
        r.longest_gap.from_ms / 1000.0,
        r.longest_gap.to_ms / 1000.0
    );
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>7} {:>10} {:>10}",
        "window", "sent", "failed", "p50", "p99"
    );
    for (name, w) in [
        ("before", &r.before),
        ("during", &r.during),
        ("after", &r.after),
    ] {
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>7} {:>10} {:>10}",
            name,
            w.sent,
            w.failed,
            opt_ms(w.p50_ms),
            opt_ms(w.p99_ms)
        );
    }
    let _ = writeln!(
        s,
        "disruption: began {:.2} s, over {:.2} s",
        r.disruption.start_ms / 1000.0,
        r.disruption.end_ms / 1000.0
    );
}

/// The load balancer's view and the bound.
fn lb(s: &mut String, r: &DrillReport) {
    if let Some(lb) = &r.lb {
        let _ = writeln!(
            s,
            "load balancer: {} out of rotation (DOWN, DRAIN or MAINT) at {}, UP again at {} (pool {}, polled every {:.0} ms)",
            lb.server,
            at(lb.down_ms),
            at(lb.up_ms),
            lb.pool,
            lb.poll_ms
        );
    }
    if let Some(b) = &r.bound {
        let _ = writeln!(
            s,
            "bound (fall × interval + interval = {}): {:.0} ms; longest gap {:.1} ms: {}",
            b.formula,
            b.bound_ms,
            b.gap_ms,
            if b.gap_within { "within" } else { "EXCEEDED" }
        );
        let _ = writeln!(
            s,
            "LB detection (disruption to DOWN): {}; failures seen for {}",
            opt_ms(b.detection_ms),
            opt_ms(b.failure_span_ms)
        );
    }
}

/// The planned disruption: its outcome, etcd leadership, each step.
fn planned(s: &mut String, p: &PlannedReport) {
    let _ = writeln!(
        s,
        "planned disruption: {} (lock holder {}, journal {})",
        p.summary, p.lock_holder, p.journal
    );
    let l = &p.leadership;
    let _ = writeln!(s, "etcd leadership: {}", leadership(l));
    if let Some(e) = &l.error {
        let _ = writeln!(s, "etcd leadership: {e}");
    }
    for st in &p.steps {
        let _ = writeln!(
            s,
            "  {:<32} started {:>9} done {:>9}{}{}{}",
            st.id,
            at(st.started_ms),
            at(st.done_ms),
            if st.skipped { " (already so)" } else { "" },
            st.error
                .as_ref()
                .map(|e| format!(" FAILED: {e}"))
                .unwrap_or_default(),
            if st.rolled_back { " (rolled back)" } else { "" }
        );
    }
}

/// Where etcd leadership went, in one line (the page shows it too).
pub(super) fn leadership(l: &PlannedLeadership) -> String {
    let who = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    if l.moved {
        format!(
            "moved from {} to {} at {} (leader after the move: {}; after the disruption: {})",
            who(&l.before),
            who(&l.expected_to),
            at(l.moved_at_ms),
            who(&l.after_move),
            who(&l.after)
        )
    } else {
        format!(
            "not moved (leader {} before, {} after)",
            who(&l.before),
            who(&l.after)
        )
    }
}
