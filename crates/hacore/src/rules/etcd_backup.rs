//! A recent verified etcd snapshot exists before a master is disrupted: if
//! the disruption costs quorum, recovery starts from it (`hacli snapshot`
//! takes and verifies them). Opt-in: no built-in policy enables it.

use serde::{Deserialize, Serialize};

use super::{Context, pass, unknown};
use crate::action::Action;
use crate::units::Dur;
use crate::verdict::{Finding, Severity};

/// Rule id.
pub const ID: &str = "etcd-backup";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// How old the newest verified snapshot may be.
    #[serde(default = "one_day")]
    pub max_age: Dur,
    /// The finding when it is older, or there is none: `warn` (the default)
    /// or `deny`.
    #[serde(default)]
    pub severity: BackupSeverity,
}

fn one_day() -> Dur {
    Dur::secs(24 * 3600)
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_age: one_day(),
            severity: BackupSeverity::default(),
        }
    }
}

/// How much a stale or missing snapshot weighs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupSeverity {
    /// Report it; the verdict stands.
    #[default]
    Warn,
    /// Deny.
    Deny,
}

impl From<BackupSeverity> for Severity {
    fn from(s: BackupSeverity) -> Severity {
        match s {
            BackupSeverity::Warn => Severity::Warn,
            BackupSeverity::Deny => Severity::Deny,
        }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if ctx.action == Action::Drain || !ctx.targets_control_plane() {
        out.push(pass(ID, "the action does not take down an etcd member"));
        return;
    }
    let Some(backup) = &ctx.state.etcd_backup else {
        return out.push(unknown(
            ID,
            "`etcdBackup` was not observed (give the snapshot directory: --snapshot-dir)",
        ));
    };
    let place = &backup.place;
    if let Some(e) = &backup.error {
        return out.push(unknown(ID, format!("snapshots in {place} not read: {e}")));
    }
    let fix = format!("take one: `hacli snapshot --snapshot-dir {place}`");
    let stale = |msg: String| Finding::new(ID, p.severity.into(), msg).fix(fix.clone());
    let newest = match &backup.newest {
        Some(s) if s.verified => s,
        _ => {
            return out.push(stale(format!("no verified etcd snapshot in {place}")));
        }
    };
    if newest.taken_at > ctx.now {
        return out.push(unknown(
            ID,
            format!(
                "the newest etcd snapshot {} is dated in the future ({})",
                newest.path, newest.taken_at
            ),
        ));
    }
    let age = ctx.now - newest.taken_at;
    let shown = Dur(age.round(jiff::Unit::Second).unwrap_or_default());
    if age > p.max_age.0 {
        out.push(stale(format!(
            "the newest verified etcd snapshot is {shown} old (over {}): {} (revision {})",
            p.max_age, newest.path, newest.revision
        )));
    } else {
        out.push(pass(
            ID,
            format!(
                "the newest verified etcd snapshot is {shown} old: {} (revision {})",
                newest.path, newest.revision
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Policy, Request, evaluate};
    use crate::state::{ClusterState, EtcdBackup, SnapshotSeen};
    use crate::topology::Topology;

    fn topo() -> Topology {
        Topology::from_yaml(
            "t.yaml",
            "cluster: c\ncontrolPlaneEndpoint: { address: 10.0.0.11 }\nnodes:\n  - { name: m1, role: control-plane, address: 10.0.0.11 }\n  - { name: w1, role: worker, address: 10.0.0.21 }\n",
        )
        .unwrap()
        .0
    }

    fn run(state: &ClusterState, params: &str, target: &str) -> Finding {
        let policy: Policy = serde_json::from_str(&format!(
            r#"{{"name":"p","rules":{{"etcd-backup":{params}}}}}"#
        ))
        .unwrap();
        let t = topo();
        let v = evaluate(
            &t,
            state,
            &policy,
            &Request {
                action: Action::Reboot,
                target,
                requester: None,
            },
            state.observed_at,
        )
        .unwrap();
        v.findings.into_iter().find(|f| f.rule == ID).unwrap()
    }

    fn state(age_h: i64, verified: bool) -> ClusterState {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let mut s = ClusterState::empty(now);
        s.etcd_backup = Some(EtcdBackup {
            place: "/var/backups/etcd".into(),
            error: None,
            newest: Some(SnapshotSeen {
                path: "/var/backups/etcd/hacli-etcd-x.db".into(),
                taken_at: now - jiff::SignedDuration::from_hours(age_h),
                revision: 42,
                verified,
            }),
        });
        s
    }

    #[test]
    fn a_snapshot_older_than_the_bound_warns_or_denies_naming_its_age_and_place() {
        let f = run(&state(30, true), "{}", "m1");
        assert_eq!(f.severity, Severity::Warn, "{f:?}");
        assert!(f.message.contains("30h"), "{}", f.message);
        assert!(
            f.message.contains("/var/backups/etcd/hacli-etcd-x.db"),
            "{}",
            f.message
        );
        let f = run(
            &state(30, true),
            r#"{"severity":"deny","maxAge":"48h"}"#,
            "m1",
        );
        assert_eq!(f.severity, Severity::Pass, "{f:?}");
        let f = run(
            &state(30, true),
            r#"{"severity":"deny","maxAge":"6h"}"#,
            "m1",
        );
        assert_eq!(f.severity, Severity::Deny, "{f:?}");
    }

    #[test]
    fn an_unverified_or_missing_snapshot_counts_as_none() {
        let f = run(&state(1, false), r#"{"severity":"deny"}"#, "m1");
        assert_eq!(f.severity, Severity::Deny, "{f:?}");
        assert!(f.message.contains("no verified"), "{}", f.message);
    }

    #[test]
    fn no_backup_information_is_unknown_and_a_worker_does_not_need_it() {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let s = ClusterState::empty(now);
        assert_eq!(run(&s, "{}", "m1").severity, Severity::Unknown);
        assert_eq!(run(&s, "{}", "w1").severity, Severity::Pass);
        let mut unread = state(1, true);
        unread.etcd_backup.as_mut().unwrap().error = Some("permission denied".into());
        let f = run(&unread, "{}", "m1");
        assert_eq!(f.severity, Severity::Unknown);
        assert!(f.message.contains("permission denied"), "{}", f.message);
    }
}
