//! The sentinel's one line per cycle, as text or JSON.

use super::cycle::Outcome;
use super::{Args, LogFormat};
use crate::sentinel_metrics::CycleMetrics;
use hacore::remediation::Decision;

/// The line of cycle `n`, which ended at `now` with `m` and `outcome`
/// (and, with `--remediate`, the remediation decision that stands).
pub(super) fn line(
    a: &Args,
    n: u64,
    now: jiff::Timestamp,
    m: &CycleMetrics<'_>,
    outcome: &anyhow::Result<Outcome>,
    remediation: Option<&anyhow::Result<Decision>>,
) -> String {
    let node = &a.node;
    let redact = |e: &anyhow::Error| kubeadm::redact_urls_in(&format!("{e:#}")).into_owned();
    let text = match remediation {
        None => String::new(),
        Some(Ok(d)) => format!("; remediation: {}", d.line()),
        Some(Err(e)) => format!("; remediation: error: {}", redact(e)),
    };
    let json = match remediation {
        None => serde_json::Value::Null,
        Some(Ok(d)) => serde_json::json!(d),
        Some(Err(e)) => serde_json::json!({ "error": redact(e) }),
    };
    match (a.log_format, outcome) {
        (LogFormat::Text, Ok(o)) => format!("{now} cycle {n} node {node}: {}{text}", o.message),
        (LogFormat::Text, Err(e)) => {
            format!("{now} cycle {n} node {node}: error: {}{text}", redact(e))
        }
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
            "remediation": json,
        })
        .to_string(),
        (LogFormat::Json, Err(e)) => serde_json::json!({
            "time": now.to_string(),
            "level": "error",
            "cycle": n,
            "node": node,
            "error": redact(e),
            "rebootRequired": m.reboot_required,
            "gatedFile": m.gated_file,
            "durationSeconds": m.duration.as_secs_f64(),
            "remediation": json,
        })
        .to_string(),
    }
}
