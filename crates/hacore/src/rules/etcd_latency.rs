//! etcd must write fast enough for the disruption: a member whose WAL
//! fsync or backend commit is slow, that applies slowly, or whose cluster
//! keeps changing leaders, turns a master's restart into missed
//! heartbeats, leader elections and apiserver timeouts, and a kubeadm
//! upgrade into a stall on its static-pod wait. The thresholds default to
//! etcd's hardware guidance: WAL fsync p99 under 10 ms, backend commit p99
//! under 25 ms; no slow apply and no leader change over the window.
//!
//! The figures come from each member's metrics (read twice over the
//! window by the observer, or from Prometheus); a member whose metrics
//! could not be read is unknown (a warning when the policy only warns).

use serde::{Deserialize, Serialize};

use super::node_drift::DriftSeverity;
use super::{Context, and_list, pass};
use crate::state::{EtcdLatency, MemberLatency};
use crate::units::Dur;
use crate::verdict::{Finding, Severity};

/// Rule id.
pub const ID: &str = "etcd-latency";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// The highest WAL fsync p99 allowed (`etcd_disk_wal_fsync_duration_seconds`).
    #[serde(default = "wal")]
    pub wal_fsync_p99: Dur,
    /// The highest backend commit p99 allowed
    /// (`etcd_disk_backend_commit_duration_seconds`).
    #[serde(default = "commit")]
    pub backend_commit_p99: Dur,
    /// The most slow applies (`etcd_server_slow_apply_total`) allowed over
    /// the window, on any member.
    #[serde(default)]
    pub slow_applies: u64,
    /// The most leader changes (`etcd_server_leader_changes_seen_total`)
    /// allowed over the window, on any member.
    #[serde(default)]
    pub leader_changes: u64,
    /// The window the observer reads the metrics over (two reads this far
    /// apart). `0s`: one read, the histograms since each member started,
    /// the counters not judged.
    #[serde(default = "window")]
    pub window: Dur,
    /// The severity of slow figures, and of figures not read: `deny` (the
    /// upgrade policy's), `unknown` or `warn` (the reboot policy's; then a
    /// member not read is a warning too).
    #[serde(default = "deny")]
    pub severity: DriftSeverity,
}

fn wal() -> Dur {
    Dur(jiff::SignedDuration::from_millis(10))
}
fn commit() -> Dur {
    Dur(jiff::SignedDuration::from_millis(25))
}
fn window() -> Dur {
    Dur::secs(5)
}
fn deny() -> DriftSeverity {
    DriftSeverity::Deny
}

impl Default for Params {
    fn default() -> Self {
        Params {
            wal_fsync_p99: wal(),
            backend_commit_p99: commit(),
            slow_applies: 0,
            leader_changes: 0,
            window: window(),
            severity: deny(),
        }
    }
}

impl Params {
    /// The reboot policy's: the same thresholds, one read (no wait), a
    /// warning.
    pub fn advisory() -> Params {
        Params {
            window: Dur::secs(0),
            severity: DriftSeverity::Warn,
            ..Params::default()
        }
    }

    /// What a member whose figures are missing weighs: unknown, or a
    /// warning under a policy that only warns.
    fn missing(&self) -> Severity {
        match self.severity {
            DriftSeverity::Warn => Severity::Warn,
            _ => Severity::Unknown,
        }
    }
}

/// Microseconds for people: "4.2 ms", "850 µs".
fn ms(us: u64) -> String {
    if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// The fix named with every slow finding.
const FIX: &str = "give etcd a faster or less contended disk: its data directory (/var/lib/etcd) on a dedicated SSD/NVMe, no other VM or backup sharing its I/O, or wait until the I/O competing with it ends, then gate again";

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if !ctx.targets_control_plane() {
        out.push(pass(ID, "no master (and no etcd member) is disrupted"));
        return;
    }
    let Some(lat) = &ctx.state.etcd_latency else {
        out.push(Finding::new(
            ID,
            p.missing(),
            "etcd's latency was not observed: each member's /metrics is read over its client URL with the etcd client certificate (or from Prometheus) when the policy enables etcd-latency",
        ));
        return;
    };
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    let mut ok = Vec::new();
    if lat.members.is_empty() {
        missing.push("no member's metrics were read".to_string());
    }
    for m in ctx.state.etcd.iter().flat_map(|e| &e.members) {
        if m.started()
            && !lat
                .members
                .iter()
                .any(|l| l.name == m.name || m.client_urls.contains(&l.endpoint))
        {
            missing.push(format!("{}'s metrics were not read", m.name));
        }
    }
    for m in &lat.members {
        one_member(m, lat, p, &mut problems, &mut missing, &mut ok);
    }
    if !problems.is_empty() {
        out.push(
            Finding::new(
                ID,
                Severity::from(p.severity),
                format!(
                    "etcd is too slow for a master's restart ({}): {}; fix: {FIX}",
                    figures(lat),
                    problems.join("; ")
                ),
            )
            .fix(FIX),
        );
    }
    if !missing.is_empty() {
        out.push(Finding::new(
            ID,
            p.missing(),
            format!("etcd's latency is unknown: {}", missing.join("; ")),
        ));
    }
    if problems.is_empty() && missing.is_empty() {
        out.push(pass(
            ID,
            format!(
                "etcd writes fast enough ({}; WAL fsync p99 under {}, backend commit p99 under {}): {}",
                figures(lat),
                p.wal_fsync_p99,
                p.backend_commit_p99,
                and_list(&ok)
            ),
        ));
    }
}

/// Where the figures come from and what they cover.
fn figures(lat: &EtcdLatency) -> String {
    if lat.window.0.is_zero() {
        format!("{}, since each member started", lat.source)
    } else {
        format!("{}, over {}", lat.source, lat.window)
    }
}

/// One member's figures against the thresholds.
fn one_member(
    m: &MemberLatency,
    lat: &EtcdLatency,
    p: &Params,
    problems: &mut Vec<String>,
    missing: &mut Vec<String>,
    ok: &mut Vec<String>,
) {
    let name = &m.name;
    if let Some(e) = &m.error {
        missing.push(format!("{name}'s metrics could not be read: {e}"));
        return;
    }
    let before = (problems.len(), missing.len());
    let limit = |d: Dur| u64::try_from(d.0.as_micros()).unwrap_or(u64::MAX);
    // A p99 over its limit is a problem; one not read is missing.
    let p99 = |what: &str, v: Option<u64>, max: Dur| match v {
        Some(us) if us > limit(max) => Some(Ok(format!(
            "{name}'s {what} p99 is {} (at most {max})",
            ms(us)
        ))),
        Some(_) => None,
        None => Some(Err(format!("{name}'s {what} p99 was not read"))),
    };
    let wal = match m.wal_fsyncs {
        Some(0) => Some(Err(format!(
            "{name} fsynced no WAL entry in the window: its WAL fsync latency cannot be judged"
        ))),
        _ => p99("WAL fsync", m.wal_fsync_p99_micros, p.wal_fsync_p99),
    };
    let commit = p99(
        "backend commit",
        m.backend_commit_p99_micros,
        p.backend_commit_p99,
    );
    for r in [wal, commit].into_iter().flatten() {
        match r {
            Ok(problem) => problems.push(problem),
            Err(gap) => missing.push(gap),
        }
    }
    if !lat.window.0.is_zero() {
        let mut count = |what: &str, v: Option<u64>, max: u64| match v {
            Some(n) if n > max => problems.push(format!(
                "{name} saw {n} {what} in {} (at most {max})",
                lat.window
            )),
            Some(_) => {}
            None => missing.push(format!("{name}'s {what} were not read")),
        };
        count("slow applies", m.slow_applies, p.slow_applies);
        count("leader changes", m.leader_changes, p.leader_changes);
    }
    if (problems.len(), missing.len()) == before {
        ok.push(format!(
            "{name} (WAL fsync p99 {}, backend commit p99 {})",
            m.wal_fsync_p99_micros.map_or("?".into(), ms),
            m.backend_commit_p99_micros.map_or("?".into(), ms)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::state::ClusterState;
    use crate::topology::Topology;

    fn topology() -> Topology {
        Topology::from_yaml(
            "t.yaml",
            "cluster: lab\ncontrolPlaneEndpoint: { address: 127.0.0.1 }\nnodes:\n  - { name: m1, role: control-plane, address: 127.0.0.1 }\n  - { name: w1, role: worker, address: 127.0.0.2 }\n",
        )
        .unwrap()
        .0
    }

    fn member(wal_us: u64, slow: u64) -> MemberLatency {
        MemberLatency {
            name: "m1".into(),
            endpoint: "https://127.0.0.1:2379".into(),
            error: None,
            wal_fsync_p99_micros: Some(wal_us),
            backend_commit_p99_micros: Some(3_000),
            wal_fsyncs: Some(40),
            slow_applies: Some(slow),
            leader_changes: Some(0),
        }
    }

    fn run(lat: Option<EtcdLatency>, target: &str, p: &Params) -> Vec<Finding> {
        let t = topology();
        let mut s = ClusterState::empty(jiff::Timestamp::UNIX_EPOCH);
        s.etcd_latency = lat;
        let targets = vec![t.node(target).unwrap()];
        let ctx = Context::new(
            &t,
            &s,
            Action::Upgrade,
            target,
            targets,
            None,
            jiff::Timestamp::UNIX_EPOCH,
            None,
        );
        let mut out = Vec::new();
        check(&ctx, p, &mut out);
        out
    }

    fn lat(members: Vec<MemberLatency>) -> Option<EtcdLatency> {
        Some(EtcdLatency {
            source: "metrics".into(),
            window: Dur::secs(5),
            members,
        })
    }

    #[test]
    fn a_slow_wal_fsync_denies_with_cause_and_fix() {
        let out = run(lat(vec![member(52_000, 0)]), "m1", &Params::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Deny);
        assert!(
            out[0]
                .message
                .contains("m1's WAL fsync p99 is 52.0 ms (at most 10ms)"),
            "{}",
            out[0].message
        );
        assert!(
            out[0].message.contains("fix: give etcd a faster"),
            "{}",
            out[0].message
        );
    }

    #[test]
    fn fast_members_pass_and_slow_applies_deny() {
        let out = run(lat(vec![member(2_000, 0)]), "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Pass, "{}", out[0].message);
        let out = run(lat(vec![member(2_000, 3)]), "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Deny);
        assert!(
            out[0].message.contains("3 slow applies"),
            "{}",
            out[0].message
        );
    }

    #[test]
    fn unread_metrics_are_never_safe() {
        let mut m = member(2_000, 0);
        m.error = Some("connect: refused".into());
        let out = run(lat(vec![m]), "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Unknown);
        assert!(out[0].message.contains("connect: refused"));
        let out = run(None, "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Unknown);
        let out = run(lat(vec![]), "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Unknown);
        let mut idle = member(2_000, 0);
        idle.wal_fsyncs = Some(0);
        idle.wal_fsync_p99_micros = None;
        let out = run(lat(vec![idle]), "m1", &Params::default());
        assert_eq!(out[0].severity, Severity::Unknown);
        // The reboot policy only warns, also on what it could not read.
        let out = run(None, "m1", &Params::advisory());
        assert_eq!(out[0].severity, Severity::Warn);
        let out = run(lat(vec![member(52_000, 0)]), "m1", &Params::advisory());
        assert_eq!(out[0].severity, Severity::Warn);
    }

    #[test]
    fn a_worker_alone_does_not_touch_etcd() {
        let out = run(None, "w1", &Params::default());
        assert_eq!(out[0].severity, Severity::Pass);
    }

    #[test]
    fn thresholds_read_as_durations() {
        let p: Params =
            serde_json::from_str(r#"{"walFsyncP99": "20ms", "window": "10s"}"#).unwrap();
        assert_eq!(p.wal_fsync_p99, Dur(jiff::SignedDuration::from_millis(20)));
        assert_eq!(p.window, Dur::secs(10));
        assert_eq!(p.backend_commit_p99, commit());
    }
}
