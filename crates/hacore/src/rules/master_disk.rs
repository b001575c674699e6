//! A master's disk must have room for an upgrade: `kubeadm upgrade` copies
//! etcd's data to `/etc/kubernetes/tmp/kubeadm-backup-etcd-*` (and the
//! manifests to `kubeadm-backup-manifests-*`) and never removes them, the
//! kubelet pulls the new images, and above its image-GC high threshold
//! (85 % by default) the kubelet garbage-collects images and evicts pods
//! mid-upgrade. Each master's `/`, etcd's data directory and
//! `/etc/kubernetes/tmp` are checked against that threshold, and the file
//! system of `/etc/kubernetes/tmp` against a floor for kubeadm's copy of
//! etcd (about twice the database). kubeadm's backup directories are
//! counted and sized, and the fix names the command that prunes them.

use serde::{Deserialize, Serialize};

use super::node_drift::DriftSeverity;
use super::{Context, and_list, pass, unknown};
use crate::action::Action;
use crate::masters::{Filesystem, is_kubeadm_backup};
use crate::verdict::{Finding, Severity};

/// Rule id.
pub const ID: &str = "master-disk";

/// Where kubeadm writes its backups.
pub const KUBEADM_TMP: &str = "/etc/kubernetes/tmp";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// The kubelet's `imageGCHighThresholdPercent`: a file system used at
    /// or above it is too full to upgrade on.
    #[serde(default = "gc_high")]
    pub image_gc_high_percent: u8,
    /// Free space needed where kubeadm writes its backups, as a multiple
    /// of etcd's database size.
    #[serde(default = "factor")]
    pub backup_factor: f64,
    /// The severity of a finding before an upgrade: `deny` (the default),
    /// `unknown` or `warn`.
    #[serde(default = "deny")]
    pub severity: DriftSeverity,
}

fn gc_high() -> u8 {
    85
}
fn factor() -> f64 {
    2.0
}
fn deny() -> DriftSeverity {
    DriftSeverity::Deny
}

impl Default for Params {
    fn default() -> Self {
        Params {
            image_gc_high_percent: gc_high(),
            backup_factor: factor(),
            severity: deny(),
        }
    }
}

/// Bytes for people: "512 MiB", "3.2 GiB".
pub fn bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let f = n as f64;
    if f >= GIB {
        format!("{:.1} GiB", f / GIB)
    } else if f >= MIB {
        format!("{:.0} MiB", f / MIB)
    } else {
        format!("{:.0} KiB", f / 1024.0)
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if ctx.action != Action::Upgrade {
        out.push(pass(
            ID,
            format!(
                "only an upgrade writes kubeadm's backups and pulls new images, not a {}",
                ctx.action
            ),
        ));
        return;
    }
    if !ctx.targets_control_plane() {
        out.push(pass(ID, "no master is upgraded"));
        return;
    }
    let Some(masters) = &ctx.state.masters else {
        return out.push(unknown(
            ID,
            "the masters' disks were not observed (they are read over SSH when SSH is configured: give the topology's `ssh:` section or `--ssh-identity`)",
        ));
    };
    let mut found = Found::default();
    for node in ctx.topology.nodes.iter().filter(|n| n.is_control_plane()) {
        one_master(node.name.as_str(), masters, p, &mut found, out);
    }
    let Found {
        problems,
        fixes,
        ok,
    } = found;
    if problems.is_empty() {
        if !ok.is_empty() {
            out.push(pass(
                ID,
                format!(
                    "the masters' disks have room for the upgrade: {}",
                    and_list(&ok)
                ),
            ));
        }
        return;
    }
    // The fix is in the message too: `roll` and `disrupt` print messages.
    let fix = fixes.join("; ");
    out.push(
        Finding::new(
            ID,
            Severity::from(p.severity),
            format!("{}; fix: {fix}", problems.join("; ")),
        )
        .fix(fix),
    );
}

/// What the masters' disks came to so far.
#[derive(Default)]
struct Found {
    /// Each master's problems.
    problems: Vec<String>,
    /// The fix of each master with a problem.
    fixes: Vec<String>,
    /// The masters with room.
    ok: Vec<String>,
}

/// One master's filesystems: its problems, its fix, or its room; what it
/// could not observe is an `unknown` finding.
fn one_master(
    name: &str,
    masters: &crate::masters::MastersState,
    p: &Params,
    found: &mut Found,
    out: &mut Vec<Finding>,
) {
    let Found {
        problems,
        fixes,
        ok,
    } = found;
    let Some(files) = masters.node(name) else {
        out.push(unknown(ID, format!("{name}'s disks were not observed")));
        return;
    };
    let from = files
        .disks_source
        .as_deref()
        .map_or(String::new(), |s| format!(" (from {s})"));
    let Some(disks) = &files.disks else {
        let why = files.disks_error.as_deref().or(files.error.as_deref());
        out.push(unknown(
            ID,
            format!(
                "{name}'s disks could not be read{from}: {}",
                why.unwrap_or("not observed")
            ),
        ));
        return;
    };
    let backups: &[crate::masters::KubeadmBackup] = match &files.kubeadm_backups {
        Some(b) => b,
        None => {
            // node-exporter sees file systems, not the directories on them.
            let why = files.error.as_deref().unwrap_or("not observed");
            out.push(unknown(
                ID,
                format!(
                    "{name}: kubeadm's backup directories under {KUBEADM_TMP} were not read ({why}); they are read over SSH only (node-exporter does not see directories)"
                ),
            ));
            &[]
        }
    };
    let ours: Vec<_> = backups
        .iter()
        .filter(|b| is_kubeadm_backup(&b.path))
        .collect();
    let held: u64 = ours.iter().map(|b| b.bytes).sum();
    let before = problems.len();
    disk_problems(name, disks, files.etcd_db_bytes, p, problems, out);
    if problems.len() > before {
        fixes.push(if ours.is_empty() {
            format!("free space on {name}")
        } else {
            format!(
                "free space on {name}: kubeadm's {} backup directories under {KUBEADM_TMP} hold {}; `hacli roll upgrade --prune-kubeadm-backups 1 ...` removes all but the newest before it starts",
                ours.len(),
                bytes(held)
            )
        });
    } else {
        let room = disks
            .iter()
            .map(|f| format!("{} {}% used", f.path, f.used_percent()))
            .collect::<Vec<_>>()
            .join(", ");
        let src = files
            .disks_source
            .as_deref()
            .map_or(String::new(), |s| format!(", from {s}"));
        ok.push(match &files.kubeadm_backups {
            Some(_) => format!(
                "{name} ({room}{src}; {} kubeadm backups, {})",
                ours.len(),
                bytes(held)
            ),
            None => format!("{name} ({room}{src})"),
        });
    }
}

/// What `disks` lack for an upgrade on `name`: a file system at or above
/// the kubelet's image-GC threshold, no room for kubeadm's backup copy of
/// etcd (a database size not observed: unknown).
fn disk_problems(
    name: &str,
    disks: &[Filesystem],
    etcd_db_bytes: Option<u64>,
    p: &Params,
    problems: &mut Vec<String>,
    out: &mut Vec<Finding>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for fs in disks {
        if seen.contains(&fs.mount.as_str()) {
            continue;
        }
        seen.push(&fs.mount);
        if fs.used_percent() >= u64::from(p.image_gc_high_percent) {
            problems.push(format!(
                "{name}: {} ({}) is {}% used, at or above the kubelet's image-GC high threshold of {}%: it garbage-collects images and evicts pods while the upgrade pulls new ones",
                fs.path,
                fs.mount,
                fs.used_percent(),
                p.image_gc_high_percent
            ));
        }
    }
    let tmp: Option<&Filesystem> = disks
        .iter()
        .find(|f| f.path == KUBEADM_TMP)
        .or_else(|| disks.iter().find(|f| f.path == "/"));
    match (tmp, etcd_db_bytes) {
        (Some(fs), Some(db)) => {
            let need = (db as f64 * p.backup_factor) as u64;
            if fs.avail_bytes < need {
                problems.push(format!(
                    "{name}: {} has {} free, and kubeadm's backup copy of etcd ({} database) needs about {} ({}x)",
                    fs.path,
                    bytes(fs.avail_bytes),
                    bytes(db),
                    bytes(need),
                    p.backup_factor
                ));
            }
        }
        _ => out.push(unknown(
            ID,
            format!("{name}: etcd's database size was not observed: the room kubeadm's backup copy needs is unknown"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masters::{MasterFiles, MastersState};
    use crate::state::ClusterState;
    use crate::topology::Topology;

    fn run(masters: MastersState) -> Vec<Finding> {
        let t = Topology::from_yaml(
            "t.yaml",
            "cluster: lab\ncontrolPlaneEndpoint: { address: 127.0.0.1 }\nnodes:\n  - { name: m1, role: control-plane, address: 127.0.0.1 }\n",
        )
        .unwrap()
        .0;
        let mut s = ClusterState::empty(jiff::Timestamp::UNIX_EPOCH);
        s.masters = Some(masters);
        let ctx = Context::new(
            &t,
            &s,
            Action::Upgrade,
            "m1",
            vec![t.node("m1").unwrap()],
            None,
            jiff::Timestamp::UNIX_EPOCH,
            None,
        );
        let mut out = Vec::new();
        check(&ctx, &Params::default(), &mut out);
        out
    }

    fn from_prometheus(used: u64) -> MasterFiles {
        let fs = |path: &str| Filesystem {
            path: path.into(),
            mount: "/".into(),
            size_bytes: 100 << 30,
            used_bytes: used << 30,
            avail_bytes: (100 - used) << 30,
        };
        MasterFiles {
            node: "m1".into(),
            error: Some("not read: SSH is not configured".into()),
            disks: Some(vec![fs("/"), fs("/var/lib/etcd")]),
            disks_source: Some("prometheus https://prom:9090".into()),
            etcd_db_bytes: Some(100 << 20),
            ..Default::default()
        }
    }

    #[test]
    fn disks_from_prometheus_are_judged_and_the_backups_unread_are_unknown() {
        let out = run(MastersState {
            nodes: vec![from_prometheus(90)],
            ..Default::default()
        });
        let deny = out.iter().find(|f| f.severity == Severity::Deny).unwrap();
        assert!(
            deny.message.contains("m1: / (/) is 90% used"),
            "{}",
            deny.message
        );
        let unknown = out
            .iter()
            .find(|f| f.severity == Severity::Unknown)
            .unwrap();
        assert!(
            unknown.message.contains("SSH is not configured")
                && unknown
                    .message
                    .contains("node-exporter does not see directories"),
            "{}",
            unknown.message
        );
        let out = run(MastersState {
            nodes: vec![from_prometheus(20)],
            ..Default::default()
        });
        assert!(
            out.iter().any(|f| f.severity == Severity::Unknown),
            "{out:?}"
        );
        let pass = out.iter().find(|f| f.severity == Severity::Pass).unwrap();
        assert!(
            pass.message.contains("from prometheus https://prom:9090"),
            "{}",
            pass.message
        );
    }

    #[test]
    fn a_master_without_series_is_unknown_naming_why() {
        let out = run(MastersState {
            nodes: vec![MasterFiles {
                node: "m1".into(),
                disks_source: Some("prometheus https://prom:9090".into()),
                disks_error: Some("no node_filesystem_size_bytes series on 127.0.0.1".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::Unknown);
        assert!(
            out[0].message.contains("m1's disks could not be read (from prometheus https://prom:9090): no node_filesystem_size_bytes"),
            "{}",
            out[0].message
        );
    }
}
