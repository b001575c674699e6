//! The steps a join does not do by itself (issue 12 point 2): package
//! versions, the apiserver's hand-added flags and files, a direct probe
//! of the new apiserver, its static pods, a template that joins by
//! itself, and workloads pinned to a master by hostname.
//!
//! A check that fails for good (versions differ, the VM joined by itself)
//! answers an error naming what differs, so the step's failure says why;
//! a check that may still come true (the apiserver starting) is polled up
//! to [`super::ControlPlaneOptions::check_wait`]. The VIP's smoke test
//! before the cut-over is here too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;
use ssh::Cmd;

use super::ssh_ops::{APISERVER_MANIFEST, KUBELET_CONF};
use super::{CpError, KubeadmControlPlane};

/// How long the VIP smoke test retries before it fails.
pub const VIP_SMOKE_TEST_BOUND: std::time::Duration = std::time::Duration::from_secs(20);

/// Flags that differ per master by design and are never copied.
pub const PER_NODE_FLAGS: &[&str] = &["advertise-address", "bind-address", "external-hostname"];

/// Flags that name a file the new master must have too.
pub const FILE_FLAGS: &[&str] = &[
    "oidc-ca-file",
    "audit-policy-file",
    "audit-webhook-config-file",
    "encryption-provider-config",
    "admission-control-config-file",
    "authentication-config",
    "authorization-config",
    "authentication-token-webhook-config-file",
    "authorization-webhook-config-file",
    "egress-selector-config-file",
    "tracing-config-file",
];

/// Flags that name a file the apiserver writes: its directory is created.
pub const LOG_FLAGS: &[&str] = &["audit-log-path"];

/// A static pod manifest read from a node, checked for what hacli reads
/// of it: a mapping whose `spec.containers` is a non-empty list of
/// mappings. The error names `file` (as `node: path`) and what is missing,
/// never quietly an empty list.
pub fn parse_pod_manifest(file: &str, text: &str) -> Result<Value, CpError> {
    let bad = |detail: String| CpError::Protocol {
        what: file.to_string(),
        detail,
    };
    let v: Value = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad("not a static pod manifest: not a mapping".into()));
    }
    match v.pointer("/spec/containers") {
        None | Some(Value::Null) => Err(bad(
            "not a static pod manifest: it has no spec.containers".into(),
        )),
        Some(Value::Array(list)) if list.is_empty() => Err(bad(
            "not a static pod manifest: spec.containers is empty".into(),
        )),
        Some(Value::Array(list)) => match list.iter().position(|c| !c.is_object()) {
            Some(i) => Err(bad(format!("spec.containers[{i}] is not a mapping"))),
            None => Ok(v),
        },
        Some(_) => Err(bad("spec.containers is not a list".into())),
    }
}

/// The `--flag=value` arguments of the kube-apiserver container, in order.
pub fn apiserver_flags(manifest: &Value) -> Vec<(String, String)> {
    let c = &manifest["spec"]["containers"][0];
    c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}

/// What `node`'s manifest must change to serve the same API as `from`'s:
/// the flags to set (name, value) and the volumes and mounts to add.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExtrasDiff {
    /// Flags missing or different on the new master.
    pub flags: Vec<(String, String)>,
    /// `spec.volumes` entries missing by name.
    pub volumes: Vec<Value>,
    /// `volumeMounts` entries of the container missing by name.
    pub mounts: Vec<Value>,
}

impl ExtrasDiff {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.volumes.is_empty() && self.mounts.is_empty()
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// The differences between `from`'s apiserver manifest and `node`'s.
pub fn extras_diff(from: &Value, node: &Value) -> ExtrasDiff {
    let have: BTreeMap<String, String> = apiserver_flags(node).into_iter().collect();
    let flags = apiserver_flags(from)
        .into_iter()
        .filter(|(k, v)| !PER_NODE_FLAGS.contains(&k.as_str()) && have.get(k) != Some(v))
        .collect();
    let have_vols = names(&node["spec"]["volumes"]);
    let volumes = from["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| !have_vols.iter().any(|h| h == n))
        })
        .cloned()
        .collect();
    let have_mounts = names(&node["spec"]["containers"][0]["volumeMounts"]);
    let mounts = from["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| !have_mounts.iter().any(|h| h == n))
        })
        .cloned()
        .collect();
    ExtrasDiff {
        flags,
        volumes,
        mounts,
    }
}

/// `node`'s manifest with `diff` applied (flags set in place or appended).
pub fn apply_extras(node: &Value, diff: &ExtrasDiff) -> Value {
    let mut m = node.clone();
    // A manifest without a container was refused when it was read
    // (parse_pod_manifest): nothing to apply to.
    let Some(c) = m
        .pointer_mut("/spec/containers/0")
        .filter(|c| c.is_object())
    else {
        return m;
    };
    let mut cmd: Vec<Value> = c["command"].as_array().cloned().unwrap_or_default();
    for (k, v) in &diff.flags {
        let arg = if v.is_empty() {
            format!("--{k}")
        } else {
            format!("--{k}={v}")
        };
        let pos = cmd.iter().position(|a| {
            a.as_str()
                .is_some_and(|a| a == format!("--{k}") || a.starts_with(&format!("--{k}=")))
        });
        match pos {
            Some(i) => cmd[i] = Value::String(arg),
            None => cmd.push(Value::String(arg)),
        }
    }
    c["command"] = Value::Array(cmd);
    let mut mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    mounts.extend(diff.mounts.iter().cloned());
    c["volumeMounts"] = Value::Array(mounts);
    let mut vols = m["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    vols.extend(diff.volumes.iter().cloned());
    m["spec"]["volumes"] = Value::Array(vols);
    m
}

/// The version in `kubeadm version -o short`, `kubelet --version`
/// (`Kubernetes v1.32.0`) or `containerd --version` (`containerd
/// github.com/containerd/containerd v1.7.22 HASH`): the first word that
/// starts with a digit or `v` and a digit.
pub fn version_word(out: &str) -> Option<String> {
    out.split_whitespace()
        .find(|w| {
            let w = w.strip_prefix('v').unwrap_or(w);
            w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.')
        })
        .map(|w| w.trim_start_matches('v').to_string())
}

fn pinned_to(spec: Option<&PodSpec>, node: &str) -> bool {
    let Some(s) = spec else { return false };
    if s.node_name.as_deref() == Some(node) {
        return true;
    }
    if s.node_selector
        .as_ref()
        .and_then(|m| m.get("kubernetes.io/hostname"))
        .is_some_and(|h| h == node)
    {
        return true;
    }
    s.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_expressions.iter().flatten().any(|e| {
                    e.key == "kubernetes.io/hostname"
                        && e.operator == "In"
                        && e.values.iter().flatten().any(|v| v == node)
                })
            })
        })
}

impl KubeadmControlPlane {
    async fn version_of(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
    ) -> Result<String, CpError> {
        let out = self
            .run(
                node,
                &Cmd::new(program).args(args.iter().copied()),
                self.opts.timeout,
            )
            .await?;
        version_word(&out.stdout_str()).ok_or_else(|| CpError::Protocol {
            what: format!("{node}: {program} {}", args.join(" ")),
            detail: format!("no version in `{}`", out.stdout_str().trim()),
        })
    }

    /// kubeadm, kubelet and containerd versions on `node`.
    pub async fn versions(&self, node: &str) -> Result<[(String, String); 3], CpError> {
        Ok([
            (
                "kubeadm".into(),
                self.version_of(node, "kubeadm", &["version", "-o", "short"])
                    .await?,
            ),
            (
                "kubelet".into(),
                self.version_of(node, "kubelet", &["--version"]).await?,
            ),
            (
                "containerd".into(),
                self.version_of(node, "containerd", &["--version"]).await?,
            ),
        ])
    }

    pub(crate) async fn check_versions(&self, node: &str, like: &str) -> Result<bool, CpError> {
        let (a, b) = (self.versions(node).await?, self.versions(like).await?);
        let diff: Vec<String> = a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, y)| format!("{} {} on {node}, {} on {like}", x.0, x.1, y.1))
            .collect();
        if diff.is_empty() {
            Ok(true)
        } else {
            Err(CpError::Refused(format!(
                "versions differ: {}: install the same versions on {node} (or build its template with them) before it joins",
                diff.join("; ")
            )))
        }
    }

    async fn manifest(&self, node: &str) -> Result<(String, Value), CpError> {
        let text = self
            .read_remote(node, APISERVER_MANIFEST)
            .await?
            .ok_or_else(|| {
                CpError::Refused(format!(
                    "{node}: {APISERVER_MANIFEST} does not exist: is {node} a joined master?"
                ))
            })?;
        let v = parse_pod_manifest(&format!("{node}: {APISERVER_MANIFEST}"), &text)?;
        Ok((text, v))
    }

    async fn sha256(&self, node: &str, path: &str) -> Result<Option<String>, CpError> {
        let cmd =
            Cmd::shell(r#"if [ -e "$1" ]; then sha256sum -- "$1"; else exit 3; fi"#).arg(path);
        let out = self.run_raw(node, &cmd, self.opts.timeout).await?;
        Ok(out
            .success()
            .then(|| {
                out.stdout_str()
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .flatten())
    }

    /// The files `from`'s flags name that `node` lacks or has different.
    async fn files_to_copy(
        &self,
        from: &Value,
        node: &str,
        src: &str,
    ) -> Result<Vec<String>, CpError> {
        let mut out = Vec::new();
        for (k, v) in apiserver_flags(from) {
            if FILE_FLAGS.contains(&k.as_str()) && !v.is_empty() {
                let want = self.sha256(src, &v).await?.ok_or_else(|| {
                    CpError::Refused(format!(
                        "{src}: --{k} names {v}, which does not exist there"
                    ))
                })?;
                if self.sha256(node, &v).await? != Some(want) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn extras_synced(&self, from: &str, node: &str) -> Result<bool, CpError> {
        let (_, f) = self.manifest(from).await?;
        let (_, n) = self.manifest(node).await?;
        if !extras_diff(&f, &n).is_empty() {
            return Ok(false);
        }
        Ok(self.files_to_copy(&f, node, from).await?.is_empty())
    }

    pub(crate) async fn sync_extras(&self, from: &str, node: &str) -> Result<(), CpError> {
        let (_, f) = self.manifest(from).await?;
        for path in self.files_to_copy(&f, node, from).await? {
            let content = self.read_remote(from, &path).await?.ok_or_else(|| {
                CpError::Refused(format!("{from}: {path} vanished while copying it"))
            })?;
            self.write_remote(node, &path, content.as_bytes()).await?;
        }
        for (k, v) in apiserver_flags(&f) {
            if LOG_FLAGS.contains(&k.as_str()) && v.starts_with('/') {
                let dir = std::path::Path::new(&v)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "/".into());
                self.run(
                    node,
                    &Cmd::new("mkdir").args(["-p", "-m", "700", "--"]).arg(dir),
                    self.opts.timeout,
                )
                .await?;
            }
        }
        let (_, n) = self.manifest(node).await?;
        let diff = extras_diff(&f, &n);
        if !diff.is_empty() {
            let new = apply_extras(&n, &diff);
            let text = serde_saphyr::to_string(&new).map_err(|e| CpError::Protocol {
                what: format!("{node}: {APISERVER_MANIFEST}"),
                detail: e.to_string(),
            })?;
            self.backup_once(node, APISERVER_MANIFEST).await?;
            self.write_remote(node, APISERVER_MANIFEST, text.as_bytes())
                .await?;
        }
        if !self.extras_synced(from, node).await? {
            return Err(CpError::Protocol {
                what: format!("{node}: {APISERVER_MANIFEST}"),
                detail: format!("still differs from {from}'s after the copy"),
            });
        }
        Ok(())
    }

    /// One `/readyz` on `address:port`, verified with the cluster CA: Ok
    /// when it answers 200 `ok`, else what it answered.
    pub async fn readyz(&self, address: IpAddr, port: u16) -> Result<(), String> {
        let url = format!("https://{}/readyz", SocketAddr::new(address, port));
        self.readyz_at(&url, None).await
    }

    /// One `/readyz` through the VIP by `name`, the name pinned to
    /// `address:port` (not looked up), verified with the cluster CA: the
    /// certificate presented must carry `name`.
    pub async fn readyz_by_name(
        &self,
        name: &str,
        address: IpAddr,
        port: u16,
    ) -> Result<(), String> {
        let url = format!("https://{name}:{port}/readyz");
        self.readyz_at(&url, Some((name, SocketAddr::new(address, port))))
            .await
    }

    async fn readyz_at(&self, url: &str, pin: Option<(&str, SocketAddr)>) -> Result<(), String> {
        if self.cluster_ca.is_empty() {
            return Err(
                "the kubeconfig names no cluster CA (certificate-authority or certificate-authority-data): hacli cannot verify an apiserver directly".into(),
            );
        }
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .timeout(self.opts.timeout.min(std::time::Duration::from_secs(5)));
        if let Some((name, addr)) = pin {
            b = b.resolve(name, addr);
        }
        for der in &self.cluster_ca {
            let c = reqwest::Certificate::from_der(der).map_err(|e| format!("cluster CA: {e}"))?;
            b = b.add_root_certificate(c);
        }
        let client = b.build().map_err(|e| e.to_string())?;
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Err(format!("{url}: HTTP {status}: {}", body.trim()))
            }
            Err(e) => Err(format!("{url}: {}", crate::observe::describe(&e))),
        }
    }

    pub(crate) async fn probe_apiserver(
        &self,
        node: &str,
        address: IpAddr,
        port: u16,
    ) -> Result<bool, CpError> {
        let until = tokio::time::Instant::now() + self.opts.check_wait;
        loop {
            match self.readyz(address, port).await {
                Ok(()) => return Ok(true),
                Err(last) if tokio::time::Instant::now() >= until => {
                    return Err(CpError::Refused(format!(
                        "{node}'s apiserver does not answer /readyz directly within {:?} ({last}): it must not join the load balancer's pool",
                        self.opts.check_wait
                    )));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// The VIP smoke test before the cut-over: `/readyz` through the VIP
    /// by `name` and by `address`, each verified with the cluster CA (so
    /// both must be SANs of what the pool's apiservers present), retried
    /// for [`VIP_SMOKE_TEST_BOUND`] at most (the pool was UP a step
    /// before: a certificate or CA that is wrong stays wrong); then
    /// refused with the last answer.
    pub(crate) async fn probe_vip(
        &self,
        name: Option<&str>,
        address: IpAddr,
        port: u16,
    ) -> Result<bool, CpError> {
        let bound = self.opts.check_wait.min(VIP_SMOKE_TEST_BOUND);
        let until = tokio::time::Instant::now() + bound;
        loop {
            let mut r = self.readyz(address, port).await;
            if let (Ok(()), Some(n)) = (&r, name) {
                r = self.readyz_by_name(n, address, port).await;
            }
            match r {
                Ok(()) => return Ok(true),
                Err(last) if tokio::time::Instant::now() >= until => {
                    return Err(CpError::Refused(format!(
                        "the VIP {} does not pass its smoke test within {bound:?} ({last}): no client is moved to it",
                        SocketAddr::new(address, port),
                    )));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// The static pods of `node` that are not running (mirror pods
    /// `NAME-node` in kube-system).
    pub async fn static_pods_missing(&self, node: &str) -> Result<Vec<String>, CpError> {
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), "kube-system");
        let pods = self
            .kube_call(
                format!("list Pods on {node}"),
                api.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))),
            )
            .await?;
        Ok([
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .iter()
        .filter(|p| {
            let name = format!("{p}-{node}");
            !pods.items.iter().any(|pod| {
                pod.metadata.name.as_deref() == Some(&name)
                    && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
        })
        .map(|p| p.to_string())
        .collect())
    }

    pub(crate) async fn verify_not_joined(&self, node: &str) -> Result<bool, CpError> {
        self.wait_sshd(node).await?;
        let registered = self.node_exists(node).await?;
        let kubelet_conf = self.exists_remote(node, KUBELET_CONF).await?;
        if registered || kubelet_conf {
            let how = match (registered, kubelet_conf) {
                (true, true) => format!("a Node object `{node}` exists and it has {KUBELET_CONF}"),
                (true, false) => format!("a Node object `{node}` exists"),
                _ => format!("it has {KUBELET_CONF}"),
            };
            return Err(CpError::Refused(format!(
                "{node} joined the cluster by itself before hacli joined it ({how}): its template runs `kubeadm join` from cloud-init; fix the template, then delete this VM and its Node"
            )));
        }
        Ok(true)
    }

    /// Wait until `node`'s sshd answers (a VM just started runs cloud-init
    /// first), retrying connection failures and timeouts for up to
    /// [`super::ControlPlaneOptions::boot_wait`]; any other SSH error (a
    /// host key that does not match, a refused key) fails at once.
    pub(crate) async fn wait_sshd(&self, node: &str) -> Result<(), CpError> {
        let until = tokio::time::Instant::now() + self.opts.boot_wait;
        loop {
            match self.session(node).await {
                Ok(_) => return Ok(()),
                Err(CpError::Ssh(e))
                    if matches!(
                        *e,
                        ssh::SshError::Connect { .. } | ssh::SshError::Timeout { .. }
                    ) =>
                {
                    if tokio::time::Instant::now() + std::time::Duration::from_secs(1) >= until {
                        let addr = self
                            .node_address(node)
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        return Err(CpError::Refused(format!(
                            "{node} ({addr}): its sshd did not answer within {:?} of the VM's start ({e}); check the VM's console (cloud-init, network, sshd), then resume",
                            self.opts.boot_wait
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Jobs and CronJobs pinned to `node` by hostname (`namespace/Kind/name`).
    pub async fn pinned_workloads(&self, node: &str) -> Result<Vec<String>, CpError> {
        let jobs: Api<Job> = Api::all(self.kube.clone());
        let crons: Api<CronJob> = Api::all(self.kube.clone());
        let lp = ListParams::default();
        let (j, c) = (
            self.kube_call("list Jobs", jobs.list(&lp)).await?,
            self.kube_call("list CronJobs", crons.list(&lp)).await?,
        );
        let id = |m: &kube::api::ObjectMeta, kind: &str| {
            format!(
                "{}/{kind}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        };
        let mut out: Vec<String> = j
            .items
            .iter()
            .filter(|x| pinned_to(x.spec.as_ref().and_then(|s| s.template.spec.as_ref()), node))
            .map(|x| id(&x.metadata, "Job"))
            .collect();
        out.extend(
            c.items
                .iter()
                .filter(|x| {
                    pinned_to(
                        x.spec
                            .as_ref()
                            .and_then(|s| s.job_template.spec.as_ref())
                            .and_then(|s| s.template.spec.as_ref()),
                        node,
                    )
                })
                .map(|x| id(&x.metadata, "CronJob")),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(cmd: &[&str], vols: &[&str]) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "spec": {
            "containers": [{"name": "kube-apiserver", "command": cmd,
                "volumeMounts": vols.iter().map(|v| json!({"name": v, "mountPath": format!("/{v}")})).collect::<Vec<_>>()}],
            "volumes": vols.iter().map(|v| json!({"name": v, "hostPath": {"path": format!("/{v}")}})).collect::<Vec<_>>()}})
    }

    #[test]
    fn hand_added_flags_and_volumes_are_found_and_applied_per_node_ones_kept() {
        let from = manifest(
            &[
                "kube-apiserver",
                "--advertise-address=10.0.0.11",
                "--audit-policy-file=/etc/kubernetes/audit/policy.yaml",
                "--audit-log-path=/var/log/kubernetes/audit.log",
                "--oidc-issuer-url=https://idp",
            ],
            &["k8s-certs", "audit"],
        );
        let node = manifest(
            &[
                "kube-apiserver",
                "--advertise-address=10.0.0.12",
                "--oidc-issuer-url=https://old",
            ],
            &["k8s-certs"],
        );
        let d = extras_diff(&from, &node);
        assert_eq!(
            d.flags,
            [
                (
                    "audit-policy-file".into(),
                    "/etc/kubernetes/audit/policy.yaml".into()
                ),
                (
                    "audit-log-path".into(),
                    "/var/log/kubernetes/audit.log".into()
                ),
                ("oidc-issuer-url".into(), "https://idp".into()),
            ]
        );
        assert_eq!(d.volumes.len(), 1);
        assert_eq!(d.mounts.len(), 1);
        let new = apply_extras(&node, &d);
        assert!(extras_diff(&from, &new).is_empty());
        let flags: BTreeMap<String, String> = apiserver_flags(&new).into_iter().collect();
        assert_eq!(flags["advertise-address"], "10.0.0.12");
        assert_eq!(flags["oidc-issuer-url"], "https://idp");
    }

    #[test]
    fn a_manifest_without_containers_is_an_error_naming_the_file() {
        let file = "m2: /etc/kubernetes/manifests/kube-apiserver.yaml";
        for (text, why) in [
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec: {hostNetwork: true}\n",
                "no spec.containers",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: []\n",
                "spec.containers is empty",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: kube-apiserver\n",
                "not a list",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: [kube-apiserver]\n",
                "spec.containers[0] is not a mapping",
            ),
            ("- a list\n", "not a mapping"),
            ("kind: Pod\nspec: [\n", ""),
        ] {
            let e = parse_pod_manifest(file, text).unwrap_err().to_string();
            assert!(e.starts_with(file) && e.contains(why), "{text:?}: {e}");
        }
        let ok = parse_pod_manifest(
            file,
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --secure-port=6443]\n",
        )
        .unwrap();
        assert_eq!(
            apiserver_flags(&ok),
            [("secure-port".into(), "6443".into())]
        );
        // Applying flags to a manifest without a container leaves it be
        // (no panic); sync_extras then finds it still differs.
        let none = json!({"spec": {}});
        let diff = ExtrasDiff {
            flags: vec![("audit-log-path".into(), "/x".into())],
            ..Default::default()
        };
        assert_eq!(apply_extras(&none, &diff), none);
    }

    #[test]
    fn versions_are_read_from_each_tool() {
        assert_eq!(version_word("v1.32.0\n").as_deref(), Some("1.32.0"));
        assert_eq!(
            version_word("Kubernetes v1.32.0\n").as_deref(),
            Some("1.32.0")
        );
        assert_eq!(
            version_word("containerd github.com/containerd/containerd v1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c\n").as_deref(),
            Some("1.7.22")
        );
        assert_eq!(version_word("no version"), None);
    }
}
