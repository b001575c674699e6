//! Text output for people: the decision first, then every reason.

use std::fmt::Write;

use hacore::status::{Section, Status};
use hacore::{Decision, Severity, Verdict};

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Pass => "ok  ",
        Severity::Warn => "warn",
        Severity::Unknown => "??  ",
        Severity::Deny => "DENY",
    }
}

fn yes_no(v: Option<bool>, yes: &str, no: &str) -> String {
    match v {
        Some(true) => yes.into(),
        Some(false) => no.into(),
        None => "unknown".into(),
    }
}

/// A hacli document: `apiVersion`, `kind`, then the fields of the body
/// (an object).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Doc<'a, T: ?Sized> {
    api_version: &'static str,
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// A hacli document whose body is not an object (a list: `items`; a
/// single value: `value`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Wrapped<'a, T: ?Sized> {
    api_version: &'static str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a T>,
}

/// Write `value` as document `kind` with `write` (JSON or YAML): its
/// fields beside `apiVersion: hacli/v1` and `kind`, or, for a body that
/// is not an object, under `items` (a list) or `value`.
fn document<T: serde::Serialize + ?Sized, E: std::fmt::Display>(
    kind: &str,
    value: &T,
    write: impl Fn(&dyn erased::Doc) -> Result<String, E>,
) -> anyhow::Result<String> {
    let api_version = crate::API_VERSION;
    if let Ok(s) = write(&Doc {
        api_version,
        kind,
        body: value,
    }) {
        return Ok(s);
    }
    let list = serde_json::to_value(value)?.is_array();
    let wrapped = Wrapped {
        api_version,
        kind,
        items: list.then_some(value),
        value: (!list).then_some(value),
    };
    write(&wrapped).map_err(|e| anyhow::anyhow!("writing the {kind} document: {e}"))
}

/// Type erasure for [`document`]'s writers.
mod erased {
    /// A serializable document.
    pub trait Doc {
        fn json(&self) -> serde_json::Result<String>;
        fn yaml(&self) -> Result<String, serde_saphyr::SerializeError>;
    }
    impl<T: serde::Serialize> Doc for T {
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string_pretty(self)
        }
        fn yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
            serde_saphyr::to_string(self)
        }
    }
}

/// `value` as the JSON document `kind` (`apiVersion: hacli/v1`).
pub fn document_json<T: serde::Serialize + ?Sized>(
    kind: &str,
    value: &T,
) -> anyhow::Result<String> {
    document(kind, value, |d| d.json())
}

/// `value` as the YAML document `kind` (`apiVersion: hacli/v1`).
pub fn document_yaml<T: serde::Serialize + ?Sized>(
    kind: &str,
    value: &T,
) -> anyhow::Result<String> {
    document(kind, value, |d| d.yaml())
}

/// Print a verdict as `output` asks; its decision is the exit status
/// (`check`, `gate`).
pub fn print_verdict(v: &Verdict, output: crate::Output) -> anyhow::Result<crate::Exit> {
    match output {
        crate::Output::Text => out!("{}", verdict(v)),
        o => crate::print_doc(o, "Verdict", v)?,
    }
    Ok(v.decision.into())
}

/// A verdict.
pub fn verdict(v: &Verdict) -> String {
    let mut s = String::new();
    let head = match v.decision {
        Decision::Allow => "ALLOW",
        Decision::Deny => "DENY",
        Decision::Unknown => "UNKNOWN",
    };
    let affected = if v.affected.len() == 1 && v.affected[0] == v.target {
        String::new()
    } else {
        format!(" ({})", v.affected.join(", "))
    };
    let _ = writeln!(
        s,
        "{head}: {} {}{affected} — policy {}, state observed {}, evaluated at {}",
        v.action, v.target, v.policy, v.observed_at, v.at
    );
    let width = v.findings.iter().map(|f| f.rule.len()).max().unwrap_or(0);
    for f in &v.findings {
        let _ = writeln!(
            s,
            "  {} {:<width$}  {}",
            mark(f.severity),
            f.rule,
            f.message
        );
        if let Some(r) = &f.remediation {
            let _ = writeln!(s, "       {:<width$}  -> {r}", "");
        }
    }
    s
}

/// A verdict in a few lines, for a CI log: the decision, then only what
/// did not pass (deny, unknown, warn) with its remedy.
pub fn verdict_short(v: &Verdict) -> String {
    let mut s = String::new();
    let head = match v.decision {
        Decision::Allow => "ALLOW",
        Decision::Deny => "DENY",
        Decision::Unknown => "UNKNOWN",
    };
    let _ = writeln!(
        s,
        "{head}: {} {} (policy {}, observed {})",
        v.action, v.target, v.policy, v.observed_at
    );
    let mut passed = 0;
    for f in &v.findings {
        if f.severity == Severity::Pass {
            passed += 1;
            continue;
        }
        let _ = writeln!(s, "  {} {}: {}", mark(f.severity), f.rule, f.message);
        if let Some(r) = &f.remediation {
            let _ = writeln!(s, "       -> {r}");
        }
    }
    let _ = writeln!(s, "  ({passed} check(s) passed)");
    s
}

/// A status summary.
pub fn status(st: &Status, wide: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cluster {}  endpoint {}  observed {}",
        st.cluster, st.endpoint, st.observed_at
    );
    let _ = writeln!(s);
    status_etcd(&mut s, st, wide);
    let _ = writeln!(s);
    status_nodes(&mut s, st, wide);
    let _ = writeln!(s);
    status_lb_apiservers(&mut s, st);
    let _ = writeln!(s);
    let _ = writeln!(s, "may be rebooted now (policy reboot):");
    for d in &st.disruptions {
        let _ = writeln!(s, "  {:<22} {}", d.node, d.decision);
        for r in &d.reasons {
            let _ = writeln!(s, "  {:<22}   - {r}", "");
        }
    }
    s
}

/// etcd: its members and quorum.
fn status_etcd(s: &mut String, st: &Status, wide: bool) {
    match &st.etcd {
        Section::Unknown(e) => {
            let _ = writeln!(s, "etcd: unknown ({e})");
        }
        Section::Ok(e) => {
            let _ = writeln!(
                s,
                "etcd: {}, {}, {} healthy, quorum {}, can lose {} more (tolerates {} when all healthy), leader {}",
                hacore::rules::count(e.voters, "voter"),
                hacore::rules::count(e.learners, "learner"),
                e.healthy,
                e.quorum,
                e.tolerance_now,
                e.tolerance,
                e.leader.as_deref().unwrap_or("none")
            );
            let _ = writeln!(
                s,
                "  {:<18} {:<18} {:<8} {:<8} {:<7} {}",
                "id",
                "name",
                "role",
                "health",
                "leader",
                if wide {
                    format!("{:<6} node", "lag")
                } else {
                    "lag".into()
                }
            );
            for m in &e.members {
                let lag = m.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                let last = match (wide, &m.node) {
                    (false, _) => lag,
                    (true, Some(n)) => format!("{lag:<6} {n}"),
                    (true, None) => format!("{lag:<6} (not in the topology)"),
                };
                let _ = writeln!(
                    s,
                    "  {:<18} {:<18} {:<8} {:<8} {:<7} {last}",
                    m.id,
                    if m.name.is_empty() {
                        "(unstarted)"
                    } else {
                        &m.name
                    },
                    if m.learner { "learner" } else { "voter" },
                    yes_no(m.healthy, "healthy", "DOWN"),
                    if m.leader { "*" } else { "" },
                );
            }
        }
    }
}

/// The nodes, one line each.
fn status_nodes(s: &mut String, st: &Status, wide: bool) {
    match &st.nodes_error {
        Some(e) => {
            let _ = writeln!(s, "nodes: unknown ({e})");
        }
        None => {
            let _ = writeln!(s, "nodes:");
            let _ = writeln!(
                s,
                "  {:<22} {:<14} {:<10} {:<10} {}",
                "name",
                "role",
                "host",
                "ready",
                if wide {
                    format!(
                        "{:<26} {:<16} {:<6} {:<7} taints",
                        "since", "address", "vmid", "reboot"
                    )
                } else {
                    "since".into()
                }
            );
            for n in &st.nodes {
                let since = n
                    .ready_since
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into());
                let last = if wide {
                    format!(
                        "{since:<26} {:<16} {:<6} {:<7} {}",
                        n.address,
                        n.vmid.map_or("-".into(), |v| v.to_string()),
                        match n.reboot_required {
                            Some(true) => "needed",
                            Some(false) => "no",
                            None => "-",
                        },
                        if n.taints.is_empty() {
                            "-".to_string()
                        } else {
                            n.taints.join(",")
                        }
                    )
                } else {
                    since
                };
                let _ = writeln!(
                    s,
                    "  {:<22} {:<14} {:<10} {:<10} {last}",
                    n.name,
                    match n.role {
                        hacore::topology::Role::ControlPlane => "control-plane",
                        hacore::topology::Role::Worker => "worker",
                    },
                    n.hypervisor.as_deref().unwrap_or("-"),
                    format!(
                        "{}{}",
                        yes_no(n.ready, "Ready", "NotReady"),
                        if n.cordoned { ",cordon" } else { "" }
                    ),
                );
            }
        }
    }
}

/// The load balancer's backends and the apiservers' readiness.
fn status_lb_apiservers(s: &mut String, st: &Status) {
    match &st.load_balancer {
        Section::Unknown(e) => {
            let _ = writeln!(s, "load balancer: unknown ({e})");
        }
        Section::Ok(b) => {
            let list: Vec<String> = b
                .iter()
                .map(|b| {
                    format!(
                        "{} {}{}",
                        b.server,
                        b.status,
                        b.sessions
                            .map(|n| format!(" ({n} sessions)"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "load balancer: {}",
                if list.is_empty() {
                    "no backends".into()
                } else {
                    list.join(", ")
                }
            );
        }
    }
    match &st.apiservers {
        Section::Unknown(e) => {
            let _ = writeln!(s, "apiservers: unknown ({e})");
        }
        Section::Ok(a) => {
            let per: Vec<String> = a
                .per_node
                .iter()
                .map(|(n, r)| format!("{n} {}", if *r { "ready" } else { "NOT READY" }))
                .collect();
            let _ = writeln!(
                s,
                "apiservers: {}; via endpoint: {}",
                per.join(", "),
                yes_no(a.via_endpoint, "ready", "NOT READY")
            );
        }
    }
}

/// How long each phase took: `setup 12.3 ms, observe 40.1 ms, ...`.
pub fn phases(phases: &[(&str, std::time::Duration)]) -> String {
    let line: Vec<String> = phases
        .iter()
        .map(|(n, d)| format!("{n} {:.1} ms", d.as_secs_f64() * 1000.0))
        .collect();
    line.join(", ")
}

/// A snapshot taken (`hacli snapshot`): its record, then the files the
/// retention removed.
pub fn snapshot(r: &kubeadm::snapshot::Record, removed: &[std::path::PathBuf]) -> String {
    let mut s = format!("snapshot {}\n", r.path.display());
    let _ = writeln!(
        s,
        "  from {} ({}): revision {}, hash {:#010x}, {} keys, {} bytes, verified",
        r.member, r.endpoint, r.revision, r.hash, r.keys, r.size
    );
    if let Some(c) = &r.restore {
        let _ = writeln!(
            s,
            "  restore verified: read {} at revision {}",
            c.key, c.revision
        );
    }
    for c in &r.copies {
        let _ = writeln!(s, "  copied to {c}");
    }
    for p in removed {
        let _ = writeln!(s, "  removed (retention) {}", p.display());
    }
    s
}
