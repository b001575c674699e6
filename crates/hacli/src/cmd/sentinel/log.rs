//! The sentinel's one line per cycle, as text or JSON.

use super::cycle::Outcome;
use super::{Args, LogFormat};
use crate::sentinel_metrics::CycleMetrics;

/// The line of cycle `n`, which ended at `now` with `m` and `outcome`.
pub(super) fn line(
    a: &Args,
    n: u64,
    now: jiff::Timestamp,
    m: &CycleMetrics<'_>,
    outcome: &anyhow::Result<Outcome>,
) -> String {
    let node = &a.node;
    match (a.log_format, outcome) {
        (LogFormat::Text, Ok(o)) => format!("{now} cycle {n} node {node}: {}", o.message),
        (LogFormat::Text, Err(e)) => format!(
            "{now} cycle {n} node {node}: error: {}",
            kubeadm::redact_urls_in(&format!("{e:#}"))
        ),
        (LogFormat::Json, Ok(o)) => serde_json::json!({
            "time": now.to_string(),
            "level": "info",
            "cycle": n,
            "node": node,
            "message": o.message,
            "evaluated": o.verdict.is_some(),
            "decision": o.verdict.as_ref().map(|v| v.decision),
            "blocking": o.verdict.iter().flat_map(|v| v.blocking()).map(|f| &f.rule).collect::<Vec<_>>(),
            "rebootRequired": m.reboot_required,
            "lockHeld": m.lock_held,
            "gatedFile": m.gated_file,
            "probeErrors": o.probe_errors.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "durationSeconds": m.duration.as_secs_f64(),
        })
        .to_string(),
        (LogFormat::Json, Err(e)) => serde_json::json!({
            "time": now.to_string(),
            "level": "error",
            "cycle": n,
            "node": node,
            "error": kubeadm::redact_urls_in(&format!("{e:#}")),
            "rebootRequired": m.reboot_required,
            "gatedFile": m.gated_file,
            "durationSeconds": m.duration.as_secs_f64(),
        })
        .to_string(),
    }
}
