//! Write what the masters run back into `kube-system/kubeadm-config`, so
//! that `kubeadm upgrade` keeps it: every live flag and host mount the
//! `control-plane-drift` rule reports becomes the component's `extraArgs`
//! or `extraVolumes` entry, stored through kubeadm itself (`kubeadm init
//! phase upload-config kubeadm --config FILE` on a master, FILE written
//! with mode 0600 from the command's stdin and removed afterwards), after
//! a copy of the ConfigMap as it was (labelled as hacli's).
//!
//! Refused when a master could not be read (reconciling from the others
//! would drop what it holds) or when masters disagree on a value
//! (kubeadm-config holds one value for every master).

use hacore::masters::{Flag, MastersState, Mount};
use hacore::rules::control_plane_drift::{Drift, config_key, drift};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde_json::{Value, json};

use crate::control_plane::{CpError, KubeadmControlPlane};

/// The label every ConfigMap hacli makes carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "hacli");
/// The prefix of the copies of kubeadm-config made before a reconcile.
pub const BACKUP_PREFIX: &str = "hacli-kubeadm-config-reconcile-";

/// One entry written into kubeadm-config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Where: `apiServer.extraArgs`, `etcd.local.extraArgs`,
    /// `scheduler.extraVolumes`...
    pub key: String,
    /// The entry: `name=value`, or a mount `name: HOST -> MOUNT`.
    pub entry: String,
    /// What kubeadm-config said before (an `extraArgs` value replaced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
    /// Where it was found: `NODE FILE`, each master that has it.
    pub found_on: Vec<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(w) = &self.was {
            writeln!(f, "- {}: {}", self.key, w)?;
        }
        write!(
            f,
            "+ {}: {}    (live on {})",
            self.key,
            self.entry,
            self.found_on.join(", ")
        )
    }
}

/// What a reconcile would write: the changes and the new ClusterConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// The ClusterConfiguration with them.
    pub config: Value,
}

fn part_mut<'a>(cc: &'a mut Value, component: &str) -> &'a mut Value {
    let path: &[&str] = match component {
        "kube-apiserver" => &["apiServer"],
        "kube-controller-manager" => &["controllerManager"],
        "kube-scheduler" => &["scheduler"],
        _ => &["etcd", "local"],
    };
    let mut v = cc;
    for k in path {
        if !v.get(*k).is_some_and(Value::is_object) {
            v[*k] = json!({});
        }
        v = &mut v[*k];
    }
    v
}

fn set_arg(cc: &mut Value, component: &str, flag: &Flag) -> Option<String> {
    let v1beta3 = cc["apiVersion"].as_str() == Some("kubeadm.k8s.io/v1beta3");
    let part = part_mut(cc, component);
    let args = &mut part["extraArgs"];
    if args.is_null() {
        *args = if v1beta3 { json!({}) } else { json!([]) };
    }
    match args {
        Value::Object(m) => m
            .insert(flag.name.clone(), json!(flag.value))
            .map(|w| w.as_str().map(str::to_string).unwrap_or(w.to_string())),
        Value::Array(a) => {
            let was: Vec<String> = a
                .iter()
                .filter(|e| e["name"].as_str() == Some(flag.name.as_str()))
                .filter_map(|e| e["value"].as_str().map(str::to_string))
                .collect();
            a.retain(|e| e["name"].as_str() != Some(flag.name.as_str()));
            a.push(json!({"name": flag.name, "value": flag.value}));
            (!was.is_empty()).then(|| was.join(","))
        }
        _ => None,
    }
}

fn add_volume(cc: &mut Value, component: &str, m: &Mount) {
    let part = part_mut(cc, component);
    let vols = &mut part["extraVolumes"];
    if !vols.is_array() {
        *vols = json!([]);
    }
    if let Value::Array(a) = vols {
        a.push(json!({
            "name": m.name, "hostPath": m.host_path, "mountPath": m.mount_path,
            "readOnly": m.read_only, "pathType": "",
        }));
    }
}

/// What to write into `cc` (the ClusterConfiguration as it is) so that it
/// produces what `masters` run. Refused (naming why) when a master could
/// not be read or masters disagree.
pub fn plan(masters: &MastersState, cc: &Value) -> Result<Plan, String> {
    let view = crate::masters::config_view(cc);
    let mut unread = Vec::new();
    // (component, flag name) -> [(value, where)]; mounts by (component, host, mount).
    let mut flags: Vec<(String, Flag, Vec<String>, Option<String>)> = Vec::new();
    let mut mounts: Vec<(String, Mount, Vec<String>)> = Vec::new();
    let mut conflicts = Vec::new();
    for node in &masters.nodes {
        if let Some(e) = &node.error {
            unread.push(format!("{}: {e}", node.node));
            continue;
        }
        for pod in &node.manifests {
            for d in drift(view.components.get(&pod.component), pod) {
                let at = format!("{} {}", node.node, pod.file);
                match d {
                    Drift::Flag {
                        component,
                        live,
                        config,
                        ..
                    } => match flags
                        .iter_mut()
                        .find(|(c, f, _, _)| *c == component && f.name == live.name)
                    {
                        Some((_, f, found, _)) if f.value == live.value => found.push(at),
                        Some((_, f, found, _)) => conflicts.push(format!(
                            "--{} is {} on {} but {} on {at}",
                            live.name,
                            f.value,
                            found.join(", "),
                            live.value
                        )),
                        None => flags.push((component, live, vec![at], config)),
                    },
                    Drift::Mount {
                        component, live, ..
                    } => match mounts.iter_mut().find(|(c, m, _)| {
                        *c == component
                            && m.host_path == live.host_path
                            && m.mount_path == live.mount_path
                    }) {
                        Some((_, _, found)) => found.push(at),
                        None => mounts.push((component, live, vec![at])),
                    },
                }
            }
        }
    }
    if masters.nodes.is_empty() {
        unread.push("no master was read".into());
    }
    if !unread.is_empty() {
        return Err(format!(
            "not every master could be read, and kubeadm-config serves them all: {}",
            unread.join("; ")
        ));
    }
    if !conflicts.is_empty() {
        return Err(format!(
            "the masters disagree, and kubeadm-config holds one value for every master: {}; make them the same first",
            conflicts.join("; ")
        ));
    }
    let mut config = cc.clone();
    let mut changes = Vec::new();
    for (component, flag, found_on, _) in flags {
        let was = set_arg(&mut config, &component, &flag);
        changes.push(Change {
            key: format!("{}.extraArgs", config_key(&component)),
            entry: format!("{}={}", flag.name, flag.value),
            was: was.map(|w| format!("{}={w}", flag.name)),
            found_on,
        });
    }
    for (component, m, found_on) in mounts {
        add_volume(&mut config, &component, &m);
        changes.push(Change {
            key: format!("{}.extraVolumes", config_key(&component)),
            entry: format!(
                "{}: {} -> {}{}",
                m.name,
                m.host_path,
                m.mount_path,
                if m.read_only { " (read-only)" } else { "" }
            ),
            was: None,
            found_on,
        });
    }
    Ok(Plan { changes, config })
}

/// What [`KubeadmControlPlane::reconcile_config`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciled {
    /// The changes (written, or that would be).
    pub changes: Vec<Change>,
    /// Whether they were written.
    pub written: bool,
    /// The copy of kubeadm-config made before writing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The master kubeadm ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl KubeadmControlPlane {
    /// Compare the masters with kubeadm-config and, with `confirm`, write
    /// the live values into it through kubeadm (see the module's doc).
    /// Idempotent: with nothing to write, nothing is done.
    pub async fn reconcile_config(&self, confirm: bool) -> Result<Reconciled, CpError> {
        let masters = self.observe_masters().await;
        let (text, cc) = self.cluster_configuration().await?;
        let p = plan(&masters, &cc).map_err(CpError::Refused)?;
        let mut done = Reconciled {
            changes: p.changes.clone(),
            written: false,
            backup: None,
            via: None,
        };
        if p.changes.is_empty() || !confirm {
            return Ok(done);
        }
        let name = format!(
            "{BACKUP_PREFIX}{}",
            jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")
        );
        let api: Api<ConfigMap> = Api::namespaced(self.client().clone(), "kube-system");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system",
                "labels": {MANAGED_BY.0: MANAGED_BY.1},
                "annotations": {"hacli/what": "kube-system/kubeadm-config before `hacli reconcile-config`"}},
            "data": {"ClusterConfiguration": text},
        }))
        .map_err(|e| CpError::Protocol {
            what: name.clone(),
            detail: e.to_string(),
        })?;
        match tokio::time::timeout(
            self.options().timeout,
            api.create(&PostParams::default(), &cm),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(CpError::kube(
                    format!("create ConfigMap kube-system/{name}"),
                    e,
                ));
            }
            Err(_) => {
                return Err(CpError::Timeout {
                    what: format!("create ConfigMap kube-system/{name}"),
                    deadline: self.options().timeout,
                });
            }
        }
        done.backup = Some(format!("kube-system/{name}"));
        let primary = self.primary().await?;
        let file = crate::control_plane::api_ops::kubeadm_config_file(
            &p.config,
            &primary,
            self.node_address(&primary)?,
            self.apiserver_port(),
        )
        .map_err(|detail| CpError::Protocol {
            what: "writing the kubeadm configuration".into(),
            detail,
        })?;
        self.kubeadm_with_secret_config(
            &primary,
            &["init", "phase", "upload-config", "kubeadm"],
            file,
            &[],
            self.options()
                .timeout
                .max(std::time::Duration::from_secs(60)),
        )
        .await?;
        done.via = Some(primary);
        let (_, after) = self.cluster_configuration().await?;
        let left = plan(&masters, &after).map_err(CpError::Refused)?;
        if !left.changes.is_empty() {
            return Err(CpError::Protocol {
                what: "kubeadm init phase upload-config kubeadm".into(),
                detail: format!(
                    "kube-system/kubeadm-config still lacks {} afterwards",
                    left.changes
                        .iter()
                        .map(|c| format!("{} {}", c.key, c.entry))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        done.written = true;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::masters::{MasterFiles, StaticPod};

    fn master(node: &str, value: &str) -> MasterFiles {
        MasterFiles {
            node: node.into(),
            manifests: vec![StaticPod {
                component: "kube-apiserver".into(),
                file: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
                image: None,
                flags: vec![
                    Flag::new("advertise-address", "198.18.0.1"),
                    Flag::new("audit-log-maxage", value),
                ],
                mounts: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn live_flags_go_into_extra_args_in_the_configs_own_shape() {
        let m = MastersState {
            nodes: vec![master("m1", "30"), master("m2", "30")],
            ..Default::default()
        };
        let v4 = json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration"});
        let p = plan(&m, &v4).unwrap();
        assert_eq!(
            p.config["apiServer"]["extraArgs"],
            json!([{"name": "audit-log-maxage", "value": "30"}])
        );
        assert_eq!(p.changes[0].found_on.len(), 2);
        let v3 = json!({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration",
            "apiServer": {"extraArgs": {"audit-log-maxage": "7"}}});
        let p = plan(&m, &v3).unwrap();
        assert_eq!(p.config["apiServer"]["extraArgs"]["audit-log-maxage"], "30");
        assert_eq!(p.changes[0].was.as_deref(), Some("audit-log-maxage=7"));
        // Written, nothing is left.
        assert!(plan(&m, &p.config).unwrap().changes.is_empty());
    }

    #[test]
    fn disagreeing_or_unread_masters_are_refused() {
        let cc = json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration"});
        let m = MastersState {
            nodes: vec![master("m1", "30"), master("m2", "7")],
            ..Default::default()
        };
        let e = plan(&m, &cc).unwrap_err();
        assert!(e.contains("--audit-log-maxage is 30 on m1"), "{e}");
        let mut bad = master("m2", "30");
        bad.error = Some("ssh: connection refused".into());
        let m = MastersState {
            nodes: vec![master("m1", "30"), bad],
            ..Default::default()
        };
        assert!(
            plan(&m, &cc)
                .unwrap_err()
                .contains("m2: ssh: connection refused")
        );
    }
}
