//! What the masters' own files say, as the rules of an upgrade need it:
//! each master's static-pod manifests (their flags and host mounts), the
//! `kubeadm-config` ClusterConfiguration they are regenerated from, the
//! master's file systems and kubeadm's backup directories.
//!
//! A live observer fills it over SSH and the Kubernetes API
//! (`kubeadm::masters`); a state file may carry it. Absent: not observed,
//! and the rules that need it answer "unknown".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The static-pod components kubeadm writes, with their manifest files.
pub const COMPONENTS: [(&str, &str); 4] = [
    (
        "kube-apiserver",
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
    ),
    (
        "kube-controller-manager",
        "/etc/kubernetes/manifests/kube-controller-manager.yaml",
    ),
    (
        "kube-scheduler",
        "/etc/kubernetes/manifests/kube-scheduler.yaml",
    ),
    ("etcd", "/etc/kubernetes/manifests/etcd.yaml"),
];

/// The masters as observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MastersState {
    /// What `kube-system/kubeadm-config` says; absent: not read (see
    /// `kubeadmConfigError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeadm_config: Option<KubeadmConfigView>,
    /// Why `kubeadm-config` could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeadm_config_error: Option<String>,
    /// Each master of the topology, in topology order.
    #[serde(default)]
    pub nodes: Vec<MasterFiles>,
}

impl MastersState {
    /// What a simulated cluster's masters show: a kubeadm-config with no
    /// extra arguments, manifests with nothing added by hand, `/` and
    /// etcd's data a fifth full (100 GiB each), a 100 MiB etcd database,
    /// no kubeadm backup.
    pub fn simulated<'a>(masters: impl IntoIterator<Item = &'a str>) -> MastersState {
        const GIB: u64 = 1 << 30;
        let fs = |path: &str| Filesystem {
            path: path.to_string(),
            mount: "/".into(),
            size_bytes: 100 * GIB,
            used_bytes: 20 * GIB,
            avail_bytes: 80 * GIB,
        };
        MastersState {
            kubeadm_config: Some(KubeadmConfigView::default()),
            kubeadm_config_error: None,
            nodes: masters
                .into_iter()
                .map(|m| MasterFiles {
                    node: m.to_string(),
                    error: None,
                    manifests: Vec::new(),
                    disks: Some(vec![fs("/"), fs("/var/lib/etcd")]),
                    etcd_db_bytes: Some(100 << 20),
                    kubeadm_backups: Some(Vec::new()),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// One master's files, if it was observed.
    pub fn node(&self, name: &str) -> Option<&MasterFiles> {
        self.nodes.iter().find(|n| n.node == name)
    }

    /// Each master's disks (and etcd database size) as `from` gives them,
    /// over what SSH read: node-exporter through Prometheus when
    /// configured. A master `from` does not name is added with its disks
    /// alone (its other files unread, for `why`).
    pub fn with_disks_from(mut self, from: MastersState, why: &str) -> MastersState {
        for d in from.nodes {
            match self.nodes.iter_mut().find(|n| n.node == d.node) {
                Some(n) => {
                    n.disks = d.disks;
                    n.etcd_db_bytes = d.etcd_db_bytes;
                    n.disks_source = d.disks_source;
                    n.disks_error = d.disks_error;
                }
                None => self.nodes.push(MasterFiles {
                    error: Some(why.to_string()),
                    ..d
                }),
            }
        }
        self
    }
}

/// The parts of a ClusterConfiguration that kubeadm writes into the
/// static-pod manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeadmConfigView {
    /// `kubernetesVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Per component (`kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`, `etcd`): `apiServer`, `controllerManager`,
    /// `scheduler`, `etcd.local`'s `extraArgs` and `extraVolumes`.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentConfig>,
}

/// One component's `extraArgs` and `extraVolumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentConfig {
    /// `extraArgs` (v1beta3's map or v1beta4's list, in order).
    #[serde(default)]
    pub extra_args: Vec<Flag>,
    /// `extraVolumes` (hostPath mounts).
    #[serde(default)]
    pub extra_volumes: Vec<Mount>,
}

/// A command-line flag `--name=value` (value empty for a bare `--name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Without the dashes.
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

impl Flag {
    /// A flag.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Flag {
        Flag {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A hostPath volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// The volume's name.
    pub name: String,
    /// The host path.
    pub host_path: String,
    /// Where the container sees it.
    pub mount_path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// One master's files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MasterFiles {
    /// The node.
    pub node: String,
    /// Why the master could not be read (its manifests are then unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The static-pod manifests found.
    #[serde(default)]
    pub manifests: Vec<StaticPod>,
    /// The file systems that hold `/` and etcd's data directory; absent:
    /// not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<Filesystem>>,
    /// Where `disks` (and `etcdDbBytes`) come from: `ssh` (`df` on the
    /// master) or `prometheus URL` (node-exporter's and etcd's series);
    /// absent: `ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks_source: Option<String>,
    /// Why `disks` could not be read from their source (the master's
    /// `error` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks_error: Option<String>,
    /// etcd's database size in bytes (`member/snap/db`); absent: not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_db_bytes: Option<u64>,
    /// kubeadm's backup directories under `/etc/kubernetes/tmp`; absent:
    /// not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeadm_backups: Option<Vec<KubeadmBackup>>,
}

/// One static pod as its manifest declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticPod {
    /// The component (`kube-apiserver`...).
    pub component: String,
    /// The manifest file.
    pub file: String,
    /// Its container's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The flags of its container's command and args.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Its hostPath mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// A file system, as `df` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filesystem {
    /// The path asked about (`/`, `/var/lib/etcd`).
    pub path: String,
    /// The mount point holding it.
    pub mount: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Bytes available to an unprivileged writer.
    pub avail_bytes: u64,
}

impl Filesystem {
    /// Percent used, as `df` rounds it (used over used + available, up).
    pub fn used_percent(&self) -> u64 {
        let total = self.used_bytes + self.avail_bytes;
        if total == 0 {
            return 0;
        }
        (self.used_bytes * 100).div_ceil(total)
    }
}

/// One of kubeadm's backup directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeadmBackup {
    /// Its path (`/etc/kubernetes/tmp/kubeadm-backup-etcd-...`).
    pub path: String,
    /// Bytes it holds.
    pub bytes: u64,
    /// Its modification time, seconds since the epoch.
    pub mtime: i64,
}

/// kubeadm's backup directory names: `kubeadm-backup-etcd-<date>` and
/// `kubeadm-backup-manifests-<date>` directly under `/etc/kubernetes/tmp`.
pub fn is_kubeadm_backup(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/etc/kubernetes/tmp/") else {
        return false;
    };
    !name.contains('/')
        && ["kubeadm-backup-etcd-", "kubeadm-backup-manifests-"]
            .iter()
            .any(|p| {
                name.strip_prefix(p).is_some_and(|rest| {
                    !rest.is_empty()
                        && rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
            })
}

/// Which of `backups` to remove so that the newest `keep` remain: the
/// older ones, oldest first; only directories named as kubeadm names its
/// backups ([`is_kubeadm_backup`]) count or go.
pub fn backups_to_prune(backups: &[KubeadmBackup], keep: usize) -> Vec<&KubeadmBackup> {
    let mut ours: Vec<&KubeadmBackup> = backups
        .iter()
        .filter(|b| is_kubeadm_backup(&b.path))
        .collect();
    ours.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| b.path.cmp(&a.path)));
    let mut old: Vec<&KubeadmBackup> = ours.into_iter().skip(keep).collect();
    old.reverse();
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubeadms_backup_names_are_kubeadms() {
        assert!(is_kubeadm_backup(
            "/etc/kubernetes/tmp/kubeadm-backup-etcd-2026-12-07-04-38-02"
        ));
        assert!(is_kubeadm_backup(
            "/etc/kubernetes/tmp/kubeadm-backup-manifests-2026-12-07-04-38-02"
        ));
        assert!(!is_kubeadm_backup(
            "/etc/kubernetes/tmp/kubeadm-backup-etcd-"
        ));
        assert!(!is_kubeadm_backup("/etc/kubernetes/tmp/my-backup-etcd-1"));
        assert!(!is_kubeadm_backup(
            "/etc/kubernetes/tmp/kubeadm-backup-etcd-1/../../pki"
        ));
        assert!(!is_kubeadm_backup("/root/kubeadm-backup-etcd-1"));
    }

    #[test]
    fn pruning_keeps_the_newest_and_leaves_other_names_alone() {
        let b = |p: &str, t| KubeadmBackup {
            path: format!("/etc/kubernetes/tmp/{p}"),
            bytes: 1,
            mtime: t,
        };
        let all = [
            b("kubeadm-backup-etcd-a", 1),
            b("kubeadm-backup-etcd-b", 3),
            b("kubeadm-backup-manifests-c", 2),
            b("something-else", 0),
        ];
        let gone: Vec<&str> = backups_to_prune(&all, 1)
            .iter()
            .map(|b| b.path.as_str())
            .collect();
        assert_eq!(
            gone,
            [
                "/etc/kubernetes/tmp/kubeadm-backup-etcd-a",
                "/etc/kubernetes/tmp/kubeadm-backup-manifests-c"
            ]
        );
        assert!(backups_to_prune(&all, 5).is_empty());
    }
}
