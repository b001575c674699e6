//! The masters' own files, as the upgrade rules need them
//! (`hacore::masters`): each master's static-pod manifests read over SSH,
//! the `kube-system/kubeadm-config` ClusterConfiguration they are
//! regenerated from, the file systems of `/` and etcd's data directory
//! (`df`), etcd's database size and kubeadm's backup directories under
//! `/etc/kubernetes/tmp`.
//!
//! One SSH command per master, every master at once, each under the
//! backend's deadline. What could not be read is recorded as such (the
//! rules answer "unknown"), never as empty.

use hacore::masters::{
    COMPONENTS, ComponentConfig, Filesystem, Flag, KubeadmBackup, KubeadmConfigView, MasterFiles,
    MastersState, Mount, StaticPod,
};
use serde_json::Value;
use ssh::Cmd;

use crate::control_plane::{CpError, KubeadmControlPlane};

/// etcd's data directory when its manifest does not say.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

/// The script that reads one master (`$1` etcd's data directory, then the
/// manifest files): each readable manifest after a `==> FILE <==` line,
/// then `==> df <==` and, for `/`, DATA_DIR and `/etc/kubernetes/tmp`
/// (else `/etc/kubernetes`), the path and its `df -P -B1` line, `==> db <==` and the size
/// of etcd's `member/snap/db`, `==> backups <==` and one line per kubeadm
/// backup directory: `MTIME BYTES PATH`.
pub const READ_SCRIPT: &str = r#"d=$1; shift
for f in "$@"; do if [ -r "$f" ]; then printf '\n==> %s <==\n' "$f"; cat -- "$f"; fi; done
printf '\n==> df <==\n'; t=/etc/kubernetes/tmp; [ -d $t ] || t=/etc/kubernetes
for p in / "$d" $t; do printf '%s ' "$p"; df -P -B1 -- "$p" | tail -n 1; done
printf '==> db <==\n'; stat -c %s -- "$d/member/snap/db" 2>/dev/null || :
printf '==> backups <==\n'
find /etc/kubernetes/tmp -mindepth 1 -maxdepth 1 -type d -name 'kubeadm-backup-*' -printf '%T@ %p\n' 2>/dev/null |
while read -r t p; do printf '%s %s %s\n' "${t%.*}" "$(du -sb -- "$p" | cut -f1)" "$p"; done
exit 0"#;

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `extraArgs` as v1beta3 writes it (a map) or v1beta4 (a list of
/// `{name, value}`).
pub fn extra_args(v: &Value) -> Vec<Flag> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| Flag::new(k.clone(), str_of(v)))
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|e| {
                Some(Flag::new(
                    e.get("name")?.as_str()?,
                    e.get("value").map(str_of).unwrap_or_default(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn extra_volumes(v: &Value) -> Vec<Mount> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Mount {
                name: e.get("name")?.as_str()?.to_string(),
                host_path: e.get("hostPath")?.as_str()?.to_string(),
                mount_path: e.get("mountPath")?.as_str()?.to_string(),
                read_only: e.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// What a ClusterConfiguration (as a value) makes of each component.
pub fn config_view(cc: &Value) -> KubeadmConfigView {
    let part = |v: &Value| ComponentConfig {
        extra_args: extra_args(&v["extraArgs"]),
        extra_volumes: extra_volumes(&v["extraVolumes"]),
    };
    let mut components = std::collections::BTreeMap::new();
    components.insert("kube-apiserver".to_string(), part(&cc["apiServer"]));
    components.insert(
        "kube-controller-manager".to_string(),
        part(&cc["controllerManager"]),
    );
    components.insert("kube-scheduler".to_string(), part(&cc["scheduler"]));
    components.insert("etcd".to_string(), part(&cc["etcd"]["local"]));
    KubeadmConfigView {
        kubernetes_version: cc["kubernetesVersion"].as_str().map(str::to_string),
        components,
    }
}

/// A static-pod manifest's first container: image, the flags of its
/// command and args (`--name=value`, `--name` alone with an empty value),
/// its hostPath mounts.
pub fn parse_manifest(component: &str, file: &str, text: &str) -> Result<StaticPod, String> {
    let pod: Value = serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let c = &pod["spec"]["containers"][0];
    if !c.is_object() {
        return Err(format!("{file}: no spec.containers[0]"));
    }
    let words = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str);
    let flags = words
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| match w.split_once('=') {
            Some((n, v)) => Flag::new(n, v),
            None => Flag::new(w, ""),
        })
        .collect();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mounts = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m["name"].as_str()?;
            let vol = volumes.iter().find(|v| v["name"].as_str() == Some(name))?;
            Some(Mount {
                name: name.to_string(),
                host_path: vol["hostPath"]["path"].as_str()?.to_string(),
                mount_path: m["mountPath"].as_str()?.to_string(),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    Ok(StaticPod {
        component: component.to_string(),
        file: file.to_string(),
        image: c["image"].as_str().map(str::to_string),
        flags,
        mounts,
    })
}

/// The df section: a line per path, `PATH` then `df -P -B1`'s line.
pub fn parse_df(text: &str) -> Result<Vec<Filesystem>, String> {
    let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if rows.len() != 3 {
        return Err(format!(
            "df printed {} lines for 3 paths: {text:?}",
            rows.len()
        ));
    }
    rows.iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| -> Result<u64, String> {
                f.get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("df: cannot read line {l:?}"))
            };
            Ok(Filesystem {
                path: f.first().copied().unwrap_or_default().to_string(),
                mount: f.get(6..).map(|m| m.join(" ")).unwrap_or_default(),
                size_bytes: num(2)?,
                used_bytes: num(3)?,
                avail_bytes: num(4)?,
            })
        })
        .collect()
}

/// What [`READ_SCRIPT`] printed, as a master's files.
pub fn parse_read(node: &str, text: &str) -> MasterFiles {
    let mut files = MasterFiles {
        node: node.to_string(),
        ..Default::default()
    };
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if let Some(name) = l.strip_prefix("==> ").and_then(|r| r.strip_suffix(" <==")) {
            sections.push((name.to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
        }
    }
    let mut errors = Vec::new();
    for (name, body) in &sections {
        match name.as_str() {
            "df" => match parse_df(body) {
                Ok(d) => files.disks = Some(d),
                Err(e) => errors.push(e),
            },
            "db" => files.etcd_db_bytes = body.trim().parse().ok(),
            "backups" => {
                files.kubeadm_backups = Some(
                    body.lines()
                        .filter_map(|l| {
                            let mut it = l.splitn(3, ' ');
                            Some(KubeadmBackup {
                                mtime: it.next()?.parse().ok()?,
                                bytes: it.next()?.parse().ok()?,
                                path: it.next()?.to_string(),
                            })
                        })
                        .collect(),
                )
            }
            file => {
                let Some((component, _)) = COMPONENTS.iter().find(|(_, f)| *f == file) else {
                    continue;
                };
                match parse_manifest(component, file, body) {
                    Ok(p) => files.manifests.push(p),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    if !errors.is_empty() {
        files.error = Some(errors.join("; "));
    }
    files
}

impl KubeadmControlPlane {
    /// Read one master's files ([`READ_SCRIPT`]).
    pub async fn master_files(&self, node: &str) -> MasterFiles {
        let data_dir = ETCD_DATA_DIR;
        let cmd = Cmd::shell(READ_SCRIPT)
            .arg(data_dir)
            .args(COMPONENTS.iter().map(|(_, f)| *f))
            .max_output(4 << 20);
        match self.run(node, &cmd, self.options().timeout).await {
            Ok(out) => {
                let mut f = parse_read(node, &out.stdout_str());
                // The etcd manifest may name another data directory: read
                // its file system there.
                let dir = f
                    .manifests
                    .iter()
                    .find(|p| p.component == "etcd")
                    .and_then(|p| p.flags.iter().find(|f| f.name == "data-dir"))
                    .map(|f| f.value.clone());
                if let Some(dir) = dir.filter(|d| d != data_dir) {
                    let cmd = Cmd::shell(READ_SCRIPT).arg(dir.as_str());
                    match self.run(node, &cmd, self.options().timeout).await {
                        Ok(out) => {
                            let again = parse_read(node, &out.stdout_str());
                            f.disks = again.disks;
                            f.etcd_db_bytes = again.etcd_db_bytes;
                        }
                        Err(e) => {
                            f.disks = None;
                            f.etcd_db_bytes = None;
                            f.error = Some(e.to_string());
                        }
                    }
                }
                f
            }
            Err(e) => MasterFiles {
                node: node.to_string(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    /// Every master's files and the kubeadm-config ClusterConfiguration.
    pub async fn observe_masters(&self) -> MastersState {
        let masters: Vec<String> = self
            .topology()
            .nodes
            .iter()
            .filter(|n| n.is_control_plane())
            .map(|n| n.name.clone())
            .collect();
        let (config, nodes) = futures::join!(
            self.cluster_configuration(),
            futures::future::join_all(masters.iter().map(|m| self.master_files(m)))
        );
        let (kubeadm_config, kubeadm_config_error) = match config {
            Ok((_, v)) => (Some(config_view(&v)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        MastersState {
            kubeadm_config,
            kubeadm_config_error,
            nodes,
        }
    }
}

/// The script that removes one of kubeadm's backup directories (`$1`),
/// only if it is a directory (not a link) directly under
/// `/etc/kubernetes/tmp` named as kubeadm names its backups.
pub const PRUNE_SCRIPT: &str = r#"p=$1; case "$p" in /etc/kubernetes/tmp/kubeadm-backup-etcd-?*|/etc/kubernetes/tmp/kubeadm-backup-manifests-?*) ;; *) echo "not a kubeadm backup: $p" >&2; exit 3;; esac
case "${p#/etc/kubernetes/tmp/}" in */*) echo "not directly under /etc/kubernetes/tmp: $p" >&2; exit 3;; esac
if [ ! -e "$p" ]; then echo gone; exit 0; fi
if [ -L "$p" ] || [ ! -d "$p" ]; then echo "not a directory: $p" >&2; exit 3; fi
rm -rf -- "$p" && echo removed"#;

impl KubeadmControlPlane {
    /// Remove all but the newest `keep` of kubeadm's backup directories on
    /// `node` (only directories named as kubeadm names them, looked at
    /// again just before): the paths removed.
    pub async fn prune_kubeadm_backups(
        &self,
        node: &str,
        keep: usize,
    ) -> Result<Vec<String>, CpError> {
        let files = self.master_files(node).await;
        let Some(backups) = &files.kubeadm_backups else {
            return Err(CpError::Refused(format!(
                "{node}: kubeadm's backups could not be listed: {}",
                files.error.as_deref().unwrap_or("no answer")
            )));
        };
        let mut removed = Vec::new();
        for b in hacore::masters::backups_to_prune(backups, keep) {
            let out = self
                .run(
                    node,
                    &Cmd::shell(PRUNE_SCRIPT).arg(b.path.as_str()),
                    self.options().timeout,
                )
                .await?;
            if out.stdout_str().trim() == "removed" {
                removed.push(b.path.clone());
            }
        }
        Ok(removed)
    }
}

impl KubeadmControlPlane {
    /// Every Node's kubelet version (`status.nodeInfo.kubeletVersion`).
    pub async fn kubelet_versions(&self) -> Result<Vec<(String, String)>, CpError> {
        use k8s_openapi::api::core::v1::Node;
        let api: kube::Api<Node> = kube::Api::all(self.client().clone());
        let list = match tokio::time::timeout(
            self.options().timeout,
            api.list(&kube::api::ListParams::default()),
        )
        .await
        {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(CpError::kube("list Nodes", e)),
            Err(_) => {
                return Err(CpError::Timeout {
                    what: "list Nodes".into(),
                    deadline: self.options().timeout,
                });
            }
        };
        Ok(list
            .items
            .into_iter()
            .filter_map(|n| {
                let v = n.status?.node_info?.kubelet_version;
                Some((n.metadata.name?, v))
            })
            .collect())
    }

    /// kubeadm's version rules for an upgrade to `to`
    /// (`hacore::rules::version_skew`): the cluster's version from
    /// kubeadm-config, the kubelets' from their Nodes. Ok(Err(why)): refused.
    pub async fn upgrade_path(&self, to: &str) -> Result<Result<String, String>, CpError> {
        let (_, cc) = self.cluster_configuration().await?;
        let cluster = cc["kubernetesVersion"]
            .as_str()
            .ok_or_else(|| CpError::Protocol {
                what: "kube-system/kubeadm-config".into(),
                detail: "no kubernetesVersion".into(),
            })?;
        let kubelets = self.kubelet_versions().await?;
        Ok(hacore::rules::version_skew::check_upgrade(
            cluster, to, &kubelets,
        ))
    }
}

/// [`KubeadmControlPlane::observe_masters`] from outside an async context.
pub fn observe_blocking(cp: &KubeadmControlPlane) -> MastersState {
    cp.block_on(cp.observe_masters())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_gives_its_flags_and_host_mounts() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.33.1
    command: [kube-apiserver, --advertise-address=198.18.0.11, --audit-log-maxage=30, --profiling]
    volumeMounts:
    - {name: k8s-certs, mountPath: /etc/kubernetes/pki, readOnly: true}
    - {name: audit, mountPath: /etc/kubernetes/audit.yaml}
  volumes:
  - {name: k8s-certs, hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}}
  - {name: audit, hostPath: {path: /srv/audit.yaml, type: File}}
"#;
        let p = parse_manifest("kube-apiserver", "f.yaml", text).unwrap();
        assert_eq!(
            p.flags,
            [
                Flag::new("advertise-address", "198.18.0.11"),
                Flag::new("audit-log-maxage", "30"),
                Flag::new("profiling", "")
            ]
        );
        assert_eq!(p.mounts.len(), 2);
        assert_eq!(p.mounts[1].host_path, "/srv/audit.yaml");
        assert!(p.mounts[0].read_only);
        assert!(parse_manifest("x", "bad.yaml", "spec: {}").is_err());
    }

    #[test]
    fn both_extra_args_shapes_are_read() {
        let v3: Value = serde_json::json!({"apiServer": {"extraArgs": {"a": "1"}},
            "etcd": {"local": {"extraArgs": {"quota-backend-bytes": 8589934592_u64}}}});
        let v4: Value = serde_json::json!({"apiServer": {"extraArgs": [{"name": "a", "value": "1"}],
            "extraVolumes": [{"name": "x", "hostPath": "/h", "mountPath": "/m", "readOnly": true}]}});
        let a = config_view(&v3);
        assert_eq!(
            a.components["kube-apiserver"].extra_args,
            [Flag::new("a", "1")]
        );
        assert_eq!(
            a.components["etcd"].extra_args,
            [Flag::new("quota-backend-bytes", "8589934592")]
        );
        let b = config_view(&v4);
        assert_eq!(
            b.components["kube-apiserver"].extra_args,
            [Flag::new("a", "1")]
        );
        assert_eq!(
            b.components["kube-apiserver"].extra_volumes[0].host_path,
            "/h"
        );
    }

    #[test]
    fn the_read_scripts_output_is_parsed_and_a_short_df_is_an_error() {
        let out = "\n==> /etc/kubernetes/manifests/kube-scheduler.yaml <==\nspec:\n  containers:\n  - command: [kube-scheduler, --leader-elect=true]\n\n==> df <==\n/ /dev/vda 1000 900 100 90% /\n/var/lib/etcd /dev/vdb 2000 100 1900 5% /var/lib/etcd\n/etc/kubernetes/tmp /dev/vda 1000 900 100 90% /\n==> db <==\n4096\n==> backups <==\n1700000000 1234 /etc/kubernetes/tmp/kubeadm-backup-etcd-2026-01-01-00-00-00\n";
        let f = parse_read("m1", out);
        assert_eq!(f.error, None);
        assert_eq!(f.manifests[0].component, "kube-scheduler");
        let d = f.disks.unwrap();
        assert_eq!(d[0].used_percent(), 90);
        assert_eq!(d[1].mount, "/var/lib/etcd");
        assert_eq!(d[2].path, "/etc/kubernetes/tmp");
        assert_eq!(f.etcd_db_bytes, Some(4096));
        assert_eq!(f.kubeadm_backups.unwrap()[0].bytes, 1234);
        let f = parse_read("m1", "==> df <==\n/ /dev/vda 1 1 0 100% /\n");
        assert!(f.error.unwrap().contains("df printed 1 lines for 3 paths"));
        assert_eq!(f.disks, None);
    }
}
