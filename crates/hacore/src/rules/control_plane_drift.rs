//! `kubeadm upgrade apply|node` regenerates every control-plane static-pod
//! manifest from the `kubeadm-config` ClusterConfiguration: a flag or a
//! host mount added to a master's manifest by hand (authentication,
//! audit, admission, etcd tuning) and not written back there is silently
//! reverted. Before an upgrade of the control plane, each master's live
//! manifests are compared with what kubeadm-config produces.
//!
//! kubeadm writes some flags itself (addresses, certificate paths, ports):
//! those are kubeadm's, their node-specific values are not compared, and
//! the few with fixed values (`--authorization-mode=Node,RBAC`...) are
//! compared with kubeadm's value. Every other live flag must be in the
//! component's `extraArgs` with the same value, and every host mount that
//! is not one of kubeadm's in its `extraVolumes`. A flag in `extraArgs`
//! that the manifest lacks is not reported: an upgrade adds it, it does
//! not revert anything.

use serde::{Deserialize, Serialize};

use super::node_drift::DriftSeverity;
use super::{Context, and_list, pass, unknown};
use crate::action::Action;
use crate::masters::{ComponentConfig, Flag, Mount, StaticPod};
use crate::verdict::{Finding, Severity};

/// Rule id.
pub const ID: &str = "control-plane-drift";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// The severity of drift before an upgrade: `deny` (the default),
    /// `unknown` or `warn`.
    #[serde(default = "deny")]
    pub severity: DriftSeverity,
}

fn deny() -> DriftSeverity {
    DriftSeverity::Deny
}

impl Default for Params {
    fn default() -> Self {
        Params { severity: deny() }
    }
}

/// Where kubeadm-config keeps a component's settings.
pub fn config_key(component: &str) -> &'static str {
    match component {
        "kube-apiserver" => "apiServer",
        "kube-controller-manager" => "controllerManager",
        "kube-scheduler" => "scheduler",
        "etcd" => "etcd.local",
        _ => "?",
    }
}

/// The flags kubeadm writes itself for `component`, with the value when it
/// is the same on every node (None: node-specific, not compared).
pub fn kubeadm_flags(component: &str) -> &'static [(&'static str, Option<&'static str>)] {
    match component {
        "kube-apiserver" => &[
            ("advertise-address", None),
            ("allow-privileged", Some("true")),
            ("authorization-mode", Some("Node,RBAC")),
            ("client-ca-file", None),
            ("enable-admission-plugins", Some("NodeRestriction")),
            ("enable-bootstrap-token-auth", Some("true")),
            ("etcd-cafile", None),
            ("etcd-certfile", None),
            ("etcd-keyfile", None),
            ("etcd-servers", None),
            ("feature-gates", None),
            ("kubelet-client-certificate", None),
            ("kubelet-client-key", None),
            ("kubelet-preferred-address-types", None),
            ("proxy-client-cert-file", None),
            ("proxy-client-key-file", None),
            ("requestheader-allowed-names", None),
            ("requestheader-client-ca-file", None),
            ("requestheader-extra-headers-prefix", None),
            ("requestheader-group-headers", None),
            ("requestheader-username-headers", None),
            ("secure-port", None),
            ("service-account-issuer", None),
            ("service-account-key-file", None),
            ("service-account-signing-key-file", None),
            ("service-cluster-ip-range", None),
            ("tls-cert-file", None),
            ("tls-private-key-file", None),
        ],
        "kube-controller-manager" => &[
            ("allocate-node-cidrs", None),
            ("authentication-kubeconfig", None),
            ("authorization-kubeconfig", None),
            ("bind-address", Some("127.0.0.1")),
            ("client-ca-file", None),
            ("cluster-cidr", None),
            ("cluster-name", None),
            ("cluster-signing-cert-file", None),
            ("cluster-signing-key-file", None),
            ("controllers", None),
            ("feature-gates", None),
            ("kubeconfig", None),
            ("leader-elect", Some("true")),
            ("requestheader-client-ca-file", None),
            ("root-ca-file", None),
            ("service-account-private-key-file", None),
            ("service-cluster-ip-range", None),
            ("use-service-account-credentials", Some("true")),
        ],
        "kube-scheduler" => &[
            ("authentication-kubeconfig", None),
            ("authorization-kubeconfig", None),
            ("bind-address", Some("127.0.0.1")),
            ("feature-gates", None),
            ("kubeconfig", None),
            ("leader-elect", Some("true")),
        ],
        "etcd" => &[
            ("advertise-client-urls", None),
            ("cert-file", None),
            ("client-cert-auth", Some("true")),
            ("data-dir", None),
            ("experimental-initial-corrupt-check", None),
            ("experimental-watch-progress-notify-interval", None),
            ("feature-gates", None),
            ("initial-advertise-peer-urls", None),
            ("initial-cluster", None),
            ("initial-cluster-state", None),
            ("key-file", None),
            ("listen-client-urls", None),
            ("listen-metrics-urls", None),
            ("listen-peer-urls", None),
            ("name", None),
            ("peer-cert-file", None),
            ("peer-client-cert-auth", Some("true")),
            ("peer-key-file", None),
            ("peer-trusted-ca-file", None),
            ("snapshot-count", Some("10000")),
            ("trusted-ca-file", None),
        ],
        _ => &[],
    }
}

/// The host paths kubeadm mounts itself into `component`.
pub fn kubeadm_host_paths(component: &str) -> &'static [&'static str] {
    const CA: [&str; 6] = [
        "/etc/ssl/certs",
        "/etc/ca-certificates",
        "/etc/pki",
        "/etc/kubernetes/pki",
        "/usr/local/share/ca-certificates",
        "/usr/share/ca-certificates",
    ];
    match component {
        "kube-apiserver" => &CA,
        "kube-controller-manager" => &[
            "/etc/ssl/certs",
            "/etc/ca-certificates",
            "/etc/pki",
            "/etc/kubernetes/pki",
            "/usr/local/share/ca-certificates",
            "/usr/share/ca-certificates",
            "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
            "/etc/kubernetes/controller-manager.conf",
        ],
        "kube-scheduler" => &["/etc/kubernetes/scheduler.conf"],
        "etcd" => &["/etc/kubernetes/pki/etcd", "/var/lib/etcd"],
        _ => &[],
    }
}

/// One difference between a live manifest and kubeadm-config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Drift {
    /// A live flag kubeadm-config does not produce.
    Flag {
        /// The component.
        component: String,
        /// The manifest file.
        file: String,
        /// The live flag.
        live: Flag,
        /// What kubeadm would write instead: the `extraArgs` value or
        /// kubeadm's own; None: nothing (the flag goes).
        config: Option<String>,
    },
    /// A live host mount kubeadm-config does not produce.
    Mount {
        /// The component.
        component: String,
        /// The manifest file.
        file: String,
        /// The live mount.
        live: Mount,
    },
}

impl Drift {
    /// The component.
    pub fn component(&self) -> &str {
        match self {
            Drift::Flag { component, .. } | Drift::Mount { component, .. } => component,
        }
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Flag {
                component,
                file,
                live,
                config: None,
            } => write!(
                f,
                "{file}: --{}={} is not in kubeadm-config ({}.extraArgs)",
                live.name,
                live.value,
                config_key(component)
            ),
            Drift::Flag {
                component,
                file,
                live,
                config: Some(c),
            } => write!(
                f,
                "{file}: --{}={} where kubeadm would write --{}={c} from kubeadm-config ({}.extraArgs, else kubeadm's default)",
                live.name,
                live.value,
                live.name,
                config_key(component)
            ),
            Drift::Mount {
                component,
                file,
                live,
            } => write!(
                f,
                "{file}: mount {} ({} at {}{}) is not in kubeadm-config ({}.extraVolumes)",
                live.name,
                live.host_path,
                live.mount_path,
                if live.read_only { ", read-only" } else { "" },
                config_key(component)
            ),
        }
    }
}

/// How `pod` differs from what `config` (its component's kubeadm-config
/// settings; None: none) produces.
pub fn drift(config: Option<&ComponentConfig>, pod: &StaticPod) -> Vec<Drift> {
    let empty = ComponentConfig::default();
    let config = config.unwrap_or(&empty);
    let owned = kubeadm_flags(&pod.component);
    let mut out = Vec::new();
    for live in &pod.flags {
        let extra: Vec<&str> = config
            .extra_args
            .iter()
            .filter(|a| a.name == live.name)
            .map(|a| a.value.as_str())
            .collect();
        let want = if !extra.is_empty() {
            if extra.contains(&live.value.as_str()) {
                continue;
            }
            Some(extra.join(","))
        } else {
            match owned.iter().find(|(n, _)| *n == live.name) {
                Some((_, None)) => continue,
                Some((_, Some(v))) if *v == live.value => continue,
                Some((_, Some(v))) => Some((*v).to_string()),
                None => None,
            }
        };
        out.push(Drift::Flag {
            component: pod.component.clone(),
            file: pod.file.clone(),
            live: live.clone(),
            config: want,
        });
    }
    let kubeadms = kubeadm_host_paths(&pod.component);
    for m in &pod.mounts {
        let known = kubeadms.contains(&m.host_path.trim_end_matches('/'))
            || config
                .extra_volumes
                .iter()
                .any(|v| v.host_path == m.host_path && v.mount_path == m.mount_path);
        if !known {
            out.push(Drift::Mount {
                component: pod.component.clone(),
                file: pod.file.clone(),
                live: m.clone(),
            });
        }
    }
    out
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if ctx.action != Action::Upgrade {
        out.push(pass(
            ID,
            format!(
                "only `kubeadm upgrade` regenerates the static-pod manifests, not a {}",
                ctx.action
            ),
        ));
        return;
    }
    if !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            "no master is upgraded: no static-pod manifest is regenerated",
        ));
        return;
    }
    let Some(masters) = &ctx.state.masters else {
        return out.push(unknown(
            ID,
            "the masters' static-pod manifests were not observed (they are read over SSH when SSH is configured: give the topology's `ssh:` section or `--ssh-identity`)",
        ));
    };
    let Some(config) = &masters.kubeadm_config else {
        return out.push(unknown(
            ID,
            format!(
                "kube-system/kubeadm-config could not be read: {}",
                masters
                    .kubeadm_config_error
                    .as_deref()
                    .unwrap_or("not observed")
            ),
        ));
    };
    let mut found: Vec<(String, Drift)> = Vec::new();
    let mut clean = Vec::new();
    for node in ctx.topology.nodes.iter().filter(|n| n.is_control_plane()) {
        let files = match masters.node(&node.name) {
            None => {
                out.push(unknown(
                    ID,
                    format!("{}'s static-pod manifests were not observed", node.name),
                ));
                continue;
            }
            Some(f) => f,
        };
        if let Some(e) = &files.error {
            out.push(unknown(
                ID,
                format!(
                    "{}'s static-pod manifests could not be read: {e}",
                    node.name
                ),
            ));
            continue;
        }
        let before = found.len();
        for pod in &files.manifests {
            for d in drift(config.components.get(&pod.component), pod) {
                found.push((node.name.clone(), d));
            }
        }
        if found.len() == before {
            clean.push(node.name.as_str());
        }
    }
    if found.is_empty() {
        if !clean.is_empty() {
            out.push(pass(
                ID,
                format!(
                    "the static-pod manifests of {} are what kube-system/kubeadm-config produces",
                    and_list(&clean)
                ),
            ));
        }
        return;
    }
    let items: Vec<String> = found.iter().map(|(n, d)| format!("{n} {d}")).collect();
    // The fix is in the message too: `roll` and `disrupt` print messages.
    const FIX: &str = "write the live values into kubeadm-config through kubeadm: `hacli reconcile-config --topology TOPOLOGY` shows the change, then again with `--confirm` (or remove them from the manifests if they are not wanted)";
    out.push(
        Finding::new(
            ID,
            Severity::from(p.severity),
            format!(
                "kubeadm upgrade would revert this: {}; fix: {FIX}",
                items.join("; ")
            ),
        )
        .fix(FIX),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(flags: &[(&str, &str)], mounts: &[(&str, &str)]) -> StaticPod {
        StaticPod {
            component: "kube-apiserver".into(),
            file: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
            image: None,
            flags: flags.iter().map(|(n, v)| Flag::new(*n, *v)).collect(),
            mounts: mounts
                .iter()
                .map(|(h, m)| Mount {
                    name: "v".into(),
                    host_path: (*h).into(),
                    mount_path: (*m).into(),
                    read_only: false,
                })
                .collect(),
        }
    }

    #[test]
    fn a_hand_added_flag_and_mount_drift_and_kubeadms_own_do_not() {
        let p = pod(
            &[
                ("advertise-address", "198.18.0.11"),
                ("authorization-mode", "Node,RBAC"),
                ("audit-log-maxage", "30"),
                ("audit-policy-file", "/etc/kubernetes/audit.yaml"),
            ],
            &[
                ("/etc/kubernetes/pki", "/etc/kubernetes/pki"),
                ("/etc/kubernetes/audit.yaml", "/etc/kubernetes/audit.yaml"),
            ],
        );
        let cfg = ComponentConfig {
            extra_args: vec![Flag::new("audit-policy-file", "/etc/kubernetes/audit.yaml")],
            extra_volumes: vec![],
        };
        let d: Vec<String> = drift(Some(&cfg), &p)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            [
                "/etc/kubernetes/manifests/kube-apiserver.yaml: --audit-log-maxage=30 is not in kubeadm-config (apiServer.extraArgs)",
                "/etc/kubernetes/manifests/kube-apiserver.yaml: mount v (/etc/kubernetes/audit.yaml at /etc/kubernetes/audit.yaml) is not in kubeadm-config (apiServer.extraVolumes)",
            ]
        );
    }

    #[test]
    fn a_changed_fixed_default_or_extra_arg_value_drifts() {
        let p = pod(
            &[
                ("authorization-mode", "Node,RBAC,Webhook"),
                ("max-requests-inflight", "800"),
            ],
            &[],
        );
        let cfg = ComponentConfig {
            extra_args: vec![Flag::new("max-requests-inflight", "400")],
            extra_volumes: vec![],
        };
        let d: Vec<String> = drift(Some(&cfg), &p)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            [
                "/etc/kubernetes/manifests/kube-apiserver.yaml: --authorization-mode=Node,RBAC,Webhook where kubeadm would write --authorization-mode=Node,RBAC from kubeadm-config (apiServer.extraArgs, else kubeadm's default)",
                "/etc/kubernetes/manifests/kube-apiserver.yaml: --max-requests-inflight=800 where kubeadm would write --max-requests-inflight=400 from kubeadm-config (apiServer.extraArgs, else kubeadm's default)",
            ]
        );
    }
}
