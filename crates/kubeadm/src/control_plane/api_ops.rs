//! The operations on the Kubernetes API: the `kubeadm-config`,
//! `kube-proxy` and `cluster-info` ConfigMaps, Nodes and their taints, the
//! `kubeadm-certs` Secret. Updates carry the `resourceVersion` they read
//! (a concurrent change is a conflict, read again), every request has a
//! deadline.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret as KubeSecret, Taint};
use kube::Api;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use ssh::Cmd;
use tokio::time::timeout_at;

use super::ssh_ops::{KUBEADM_CONFIG, kubeconfig_servers, set_kubeconfig_servers};
use super::{CpError, KubeadmControlPlane};

/// The control-plane taint kubeadm puts on masters.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
/// Where the original ClusterConfiguration is kept before hacli changes it.
pub const CONFIG_BACKUP: &str = "hacli-kubeadm-config-backup";

/// A ClusterConfiguration document (YAML) as JSON.
pub fn parse_cluster_configuration(text: &str) -> Result<Value, String> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if v.get("kind").and_then(Value::as_str) != Some("ClusterConfiguration") {
        return Err("not a ClusterConfiguration document".into());
    }
    Ok(v)
}

/// `cfg` with `controlPlaneEndpoint` set and `sans` added to
/// `apiServer.certSANs` (kept in order, no duplicates).
pub fn with_endpoint(cfg: &Value, endpoint: &str, sans: &[String]) -> Value {
    let mut v = cfg.clone();
    v["controlPlaneEndpoint"] = json!(endpoint);
    add_sans(&mut v, sans);
    v
}

fn add_sans(v: &mut Value, sans: &[String]) {
    if !v["apiServer"].is_object() {
        v["apiServer"] = json!({});
    }
    let mut list: Vec<Value> = v["apiServer"]["certSANs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in sans {
        if !list.iter().any(|x| x.as_str() == Some(s)) {
            list.push(json!(s));
        }
    }
    v["apiServer"]["certSANs"] = Value::Array(list);
}

fn endpoint_and_sans(v: &Value) -> (Option<String>, Vec<String>) {
    (
        v["controlPlaneEndpoint"].as_str().map(str::to_string),
        v["apiServer"]["certSANs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The kubeadm configuration file for `node`: an InitConfiguration naming
/// the node and its own address, and the ClusterConfiguration.
pub fn kubeadm_config_file(
    cluster: &Value,
    node: &str,
    address: std::net::IpAddr,
    port: u16,
) -> Result<String, String> {
    let api_version = cluster["apiVersion"]
        .as_str()
        .unwrap_or("kubeadm.k8s.io/v1beta4");
    let init = json!({
        "apiVersion": api_version,
        "kind": "InitConfiguration",
        "localAPIEndpoint": {"advertiseAddress": address.to_string(), "bindPort": port},
        "nodeRegistration": {"name": node},
    });
    let a = serde_saphyr::to_string(&init).map_err(|e| e.to_string())?;
    let b = serde_saphyr::to_string(cluster).map_err(|e| e.to_string())?;
    Ok(format!("{a}---\n{b}"))
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_master(n: &Node) -> bool {
    n.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CONTROL_PLANE_TAINT))
}

fn has_taint(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == CONTROL_PLANE_TAINT && t.effect == "NoSchedule")
        })
}

impl KubeadmControlPlane {
    /// `f` within the call deadline; kube's errors named by `what`.
    pub(crate) async fn kube_call<T>(
        &self,
        what: impl Into<String>,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CpError> {
        let what = what.into();
        match timeout_at(self.until(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CpError::kube(what, e)),
            Err(_) => Err(CpError::Timeout {
                what: format!("Kubernetes API: {what}"),
                deadline: self.opts.timeout,
            }),
        }
    }

    async fn get_node(&self, node: &str) -> Result<Option<Node>, CpError> {
        let api: Api<Node> = Api::all(self.kube.clone());
        self.kube_call(format!("get Node {node}"), api.get_opt(node))
            .await
    }

    pub(crate) async fn node_exists(&self, node: &str) -> Result<bool, CpError> {
        Ok(self.get_node(node).await?.is_some())
    }

    pub(crate) async fn node_ready(&self, node: &str) -> Result<bool, CpError> {
        Ok(self.get_node(node).await?.as_ref().is_some_and(is_ready))
    }

    /// The node is Ready by a heartbeat newer than `since` (a kubelet
    /// restarted at `since` has reported again; an older Ready is the
    /// status from before the restart).
    pub(crate) async fn node_ready_since(
        &self,
        node: &str,
        since: jiff::Timestamp,
    ) -> Result<bool, CpError> {
        let Some(n) = self.get_node(node).await? else {
            return Ok(false);
        };
        let fresh = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .is_some_and(|t| t.0.timestamp() > since.as_second());
        Ok(fresh && is_ready(&n))
    }

    /// Every listed master is registered, Ready and labelled control-plane.
    pub(crate) async fn nodes_ready(&self, nodes: &[String]) -> Result<bool, CpError> {
        for n in nodes {
            match self.get_node(n).await? {
                Some(node) if is_ready(&node) && is_master(&node) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The master that runs cluster-wide kubeadm commands: the option, else
    /// the first control-plane node of the topology registered as a Ready
    /// master.
    pub(crate) async fn primary(&self) -> Result<String, CpError> {
        if let Some(p) = &self.opts.primary {
            return Ok(p.clone());
        }
        let api: Api<Node> = Api::all(self.kube.clone());
        let nodes = self
            .kube_call(
                "list control-plane Nodes",
                api.list(&ListParams::default().labels(CONTROL_PLANE_TAINT)),
            )
            .await?;
        self.topology
            .control_plane_nodes()
            .find(|t| {
                nodes
                    .items
                    .iter()
                    .any(|n| n.metadata.name.as_deref() == Some(&t.name) && is_ready(n))
            })
            .map(|n| n.name.clone())
            .ok_or_else(|| {
                CpError::Refused(
                    "no control-plane node of the topology is a Ready master: nothing to run kubeadm on (set the primary master explicitly)".into(),
                )
            })
    }

    pub(crate) async fn has_control_plane_taint(&self, node: &str) -> Result<bool, CpError> {
        Ok(self.get_node(node).await?.as_ref().is_some_and(has_taint))
    }

    pub(crate) async fn add_control_plane_taint(&self, node: &str) -> Result<(), CpError> {
        let api: Api<Node> = Api::all(self.kube.clone());
        for _ in 0..5 {
            let Some(mut n) = self.get_node(node).await? else {
                return Err(CpError::Refused(format!(
                    "Node {node} is not registered: join it first"
                )));
            };
            if has_taint(&n) {
                return Ok(());
            }
            let spec = n.spec.get_or_insert_with(Default::default);
            spec.taints.get_or_insert_with(Vec::new).push(Taint {
                key: CONTROL_PLANE_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
            match timeout_at(self.until(), api.replace(node, &PostParams::default(), &n)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => continue,
                Ok(Err(e)) => return Err(CpError::kube(format!("taint Node {node}"), e)),
                Err(_) => {
                    return Err(CpError::Timeout {
                        what: format!("Kubernetes API: taint Node {node}"),
                        deadline: self.opts.timeout,
                    });
                }
            }
        }
        Err(CpError::Refused(format!(
            "Node {node} kept changing while hacli tainted it (5 conflicts): try again"
        )))
    }

    /// Cordon `node`, then evict its pods through the Eviction API, which
    /// honours PodDisruptionBudgets (DaemonSet and mirror pods stay, as
    /// `kubectl drain --ignore-daemonsets` leaves them). A refused
    /// eviction (429) is retried until
    /// [`super::ControlPlaneOptions::drain_timeout`]; then the drain gives
    /// up, naming the pods still blocked.
    pub async fn drain(&self, node: &str) -> Result<(), CpError> {
        let nodes: Api<Node> = Api::all(self.kube.clone());
        let cordon = json!({"spec": {"unschedulable": true}});
        self.kube_call(
            format!("cordon Node {node}"),
            nodes.patch(node, &PatchParams::default(), &Patch::Merge(&cordon)),
        )
        .await?;
        let pods: Api<Pod> = Api::all(self.kube.clone());
        let until = tokio::time::Instant::now() + self.opts.drain_timeout;
        loop {
            let list = self
                .kube_call(
                    format!("list Pods on {node}"),
                    pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))),
                )
                .await?;
            let evictable: Vec<(String, String)> = list
                .items
                .iter()
                .filter(|p| {
                    let m = &p.metadata;
                    let daemon = m
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "DaemonSet");
                    let mirror = m
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
                    let finished = p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
                    !daemon && !mirror && !finished
                })
                .map(|p| {
                    (
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default(),
                    )
                })
                .collect();
            if evictable.is_empty() {
                return Ok(());
            }
            let mut blocked = Vec::new();
            for (ns, name) in &evictable {
                let api: Api<Pod> = Api::namespaced(self.kube.clone(), ns);
                match timeout_at(self.until(), api.evict(name, &EvictParams::default())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
                    Ok(Err(kube::Error::Api(e))) if e.code == 429 => {
                        blocked.push(format!("{ns}/{name}"));
                    }
                    Ok(Err(e)) => return Err(CpError::kube(format!("evict Pod {ns}/{name}"), e)),
                    Err(_) => {
                        return Err(CpError::Timeout {
                            what: format!("Kubernetes API: evict Pod {ns}/{name}"),
                            deadline: self.opts.timeout,
                        });
                    }
                }
            }
            if !blocked.is_empty() && tokio::time::Instant::now() >= until {
                return Err(CpError::Refused(format!(
                    "drain {node}: PodDisruptionBudgets still forbid evicting {} after {:?}: scale those workloads or relax their budgets, then run again",
                    blocked.join(", "),
                    self.opts.drain_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(crate) async fn delete_node(&self, node: &str) -> Result<(), CpError> {
        let api: Api<Node> = Api::all(self.kube.clone());
        // Only the Node that is this node: its name and its address.
        let address = self.topology.node(node).map(|n| n.address);
        if let Some(found) = self
            .kube_call(format!("get Node {node}"), api.get_opt(node))
            .await?
        {
            node_is(&found, node, address).map_err(CpError::Refused)?;
        }
        match timeout_at(self.until(), api.delete(node, &DeleteParams::default())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(()),
            Ok(Err(e)) => Err(CpError::kube(format!("delete Node {node}"), e)),
            Err(_) => Err(CpError::Timeout {
                what: format!("Kubernetes API: delete Node {node}"),
                deadline: self.opts.timeout,
            }),
        }
    }

    pub(crate) async fn kubeadm_certs_secret_exists(&self) -> Result<bool, CpError> {
        let api: Api<KubeSecret> = Api::namespaced(self.kube.clone(), "kube-system");
        // Only its existence is read; its data is never kept.
        let got = self
            .kube_call(
                "get Secret kube-system/kubeadm-certs",
                api.get_metadata_opt("kubeadm-certs"),
            )
            .await;
        match got {
            Ok(s) => Ok(s.is_some()),
            // A server that does not serve Secrets to this client has none.
            Err(CpError::Kube { message, .. }) if message.contains("could not find") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn is_joined(
        &self,
        node: &str,
        address: std::net::IpAddr,
    ) -> Result<bool, CpError> {
        let _ = address;
        Ok(self.node_exists(node).await? && self.member_of(node).await?.is_some())
    }

    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, CpError> {
        let api: Api<ConfigMap> = Api::namespaced(self.kube.clone(), ns);
        self.kube_call(format!("get ConfigMap {ns}/{name}"), api.get_opt(name))
            .await
    }

    fn cm_value(cm: &ConfigMap, key: &str) -> Option<String> {
        cm.data.as_ref().and_then(|d| d.get(key).cloned())
    }

    /// The ClusterConfiguration in `kube-system/kubeadm-config`: its text
    /// and its value.
    pub async fn cluster_configuration(&self) -> Result<(String, Value), CpError> {
        let cm = self
            .config_map("kube-system", "kubeadm-config")
            .await?
            .ok_or_else(|| {
                CpError::Refused(
                    "ConfigMap kube-system/kubeadm-config does not exist: is this a kubeadm cluster?"
                        .into(),
                )
            })?;
        let text =
            Self::cm_value(&cm, "ClusterConfiguration").ok_or_else(|| CpError::Protocol {
                what: "ConfigMap kube-system/kubeadm-config".into(),
                detail: "no key ClusterConfiguration".into(),
            })?;
        let v = parse_cluster_configuration(&text).map_err(|detail| CpError::Protocol {
            what: "ConfigMap kube-system/kubeadm-config key ClusterConfiguration".into(),
            detail,
        })?;
        Ok((text, v))
    }

    pub(crate) async fn endpoint_is_set(
        &self,
        endpoint: &str,
        sans: &[String],
    ) -> Result<bool, CpError> {
        let (_, v) = self.cluster_configuration().await?;
        let (ep, have) = endpoint_and_sans(&v);
        Ok(ep.as_deref() == Some(endpoint) && sans.iter().all(|s| have.contains(s)))
    }

    /// The kubeadm configuration file for `node`, from the cluster's
    /// ClusterConfiguration with `sans` added.
    pub(crate) async fn kubeadm_config_for(
        &self,
        node: &str,
        sans: &[String],
    ) -> Result<String, CpError> {
        let (_, mut v) = self.cluster_configuration().await?;
        add_sans(&mut v, sans);
        self.config_file(node, &v)
    }

    fn config_file(&self, node: &str, cluster: &Value) -> Result<String, CpError> {
        kubeadm_config_file(
            cluster,
            node,
            self.node_address(node)?,
            self.apiserver_port(),
        )
        .map_err(|detail| CpError::Protocol {
            what: "writing the kubeadm configuration".into(),
            detail,
        })
    }

    /// Store `cluster` with `kubeadm init phase upload-config kubeadm` on
    /// the primary master, so kubeadm owns it.
    async fn upload_config(&self, cluster: &Value) -> Result<(), CpError> {
        let primary = self.primary().await?;
        let file = self.config_file(&primary, cluster)?;
        self.write_remote(&primary, KUBEADM_CONFIG, file.as_bytes())
            .await?;
        self.run(
            &primary,
            &Cmd::new("kubeadm")
                .args(["init", "phase", "upload-config", "kubeadm", "--config"])
                .arg(KUBEADM_CONFIG),
            self.opts.timeout.max(Duration::from_secs(60)),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn set_endpoint(
        &self,
        endpoint: &str,
        sans: &[String],
    ) -> Result<(), CpError> {
        let (text, v) = self.cluster_configuration().await?;
        // Keep the original once, for RestoreClusterConfiguration.
        if self
            .config_map("kube-system", CONFIG_BACKUP)
            .await?
            .is_none()
        {
            let api: Api<ConfigMap> = Api::namespaced(self.kube.clone(), "kube-system");
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": CONFIG_BACKUP, "namespace": "kube-system",
                    "labels": {"app.kubernetes.io/managed-by": "hacli"}},
                "data": {"ClusterConfiguration": text},
            }))
            .map_err(|e| CpError::Protocol {
                what: CONFIG_BACKUP.into(),
                detail: e.to_string(),
            })?;
            match timeout_at(self.until(), api.create(&PostParams::default(), &cm)).await {
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => {}
                Ok(Err(e)) => {
                    return Err(CpError::kube(
                        format!("create ConfigMap kube-system/{CONFIG_BACKUP}"),
                        e,
                    ));
                }
                Err(_) => {
                    return Err(CpError::Timeout {
                        what: format!("create ConfigMap kube-system/{CONFIG_BACKUP}"),
                        deadline: self.opts.timeout,
                    });
                }
            }
        }
        self.upload_config(&with_endpoint(&v, endpoint, sans))
            .await?;
        if !self.endpoint_is_set(endpoint, sans).await? {
            return Err(CpError::Protocol {
                what: "kubeadm init phase upload-config kubeadm".into(),
                detail: format!(
                    "kube-system/kubeadm-config does not name controlPlaneEndpoint {endpoint} with SANs {sans:?} afterwards"
                ),
            });
        }
        Ok(())
    }

    async fn config_backup(&self) -> Result<Option<Value>, CpError> {
        let Some(cm) = self.config_map("kube-system", CONFIG_BACKUP).await? else {
            return Ok(None);
        };
        // Only a backup this tool made is restored from (and deleted).
        made_by_hacli(&cm).map_err(CpError::Refused)?;
        let text = Self::cm_value(&cm, "ClusterConfiguration").unwrap_or_default();
        parse_cluster_configuration(&text)
            .map(Some)
            .map_err(|detail| CpError::Protocol {
                what: format!("ConfigMap kube-system/{CONFIG_BACKUP}"),
                detail,
            })
    }

    pub(crate) async fn cluster_configuration_restored(&self) -> Result<bool, CpError> {
        Ok(self.config_backup().await?.is_none())
    }

    pub(crate) async fn restore_cluster_configuration(&self) -> Result<(), CpError> {
        let Some(old) = self.config_backup().await? else {
            return Ok(());
        };
        let (_, now) = self.cluster_configuration().await?;
        if endpoint_and_sans(&now) != endpoint_and_sans(&old) {
            self.upload_config(&old).await?;
            let (_, after) = self.cluster_configuration().await?;
            if endpoint_and_sans(&after) != endpoint_and_sans(&old) {
                return Err(CpError::Protocol {
                    what: "kubeadm init phase upload-config kubeadm".into(),
                    detail: "kube-system/kubeadm-config is not the kept original afterwards".into(),
                });
            }
        }
        let api: Api<ConfigMap> = Api::namespaced(self.kube.clone(), "kube-system");
        match timeout_at(
            self.until(),
            api.delete(CONFIG_BACKUP, &DeleteParams::default()),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(()),
            Ok(Err(e)) => Err(CpError::kube(
                format!("delete ConfigMap kube-system/{CONFIG_BACKUP}"),
                e,
            )),
            Err(_) => Err(CpError::Timeout {
                what: format!("delete ConfigMap kube-system/{CONFIG_BACKUP}"),
                deadline: self.opts.timeout,
            }),
        }
    }

    async fn cm_kubeconfig_is(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        server: &str,
    ) -> Result<bool, CpError> {
        let Some(cm) = self.config_map(ns, name).await? else {
            return Ok(false);
        };
        let servers = kubeconfig_servers(&Self::cm_value(&cm, key).unwrap_or_default());
        Ok(!servers.is_empty() && servers.iter().all(|s| s == server))
    }

    /// Point the kubeconfig in ConfigMap `ns/name` key `key` at `server`;
    /// Ok(false) when it already named it.
    async fn set_cm_kubeconfig(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        server: &str,
    ) -> Result<bool, CpError> {
        let api: Api<ConfigMap> = Api::namespaced(self.kube.clone(), ns);
        for _ in 0..5 {
            let Some(mut cm) = self.config_map(ns, name).await? else {
                return Err(CpError::Refused(format!(
                    "ConfigMap {ns}/{name} does not exist"
                )));
            };
            let text = Self::cm_value(&cm, key).ok_or_else(|| CpError::Protocol {
                what: format!("ConfigMap {ns}/{name}"),
                detail: format!("no key {key}"),
            })?;
            if kubeconfig_servers(&text).is_empty() {
                return Err(CpError::Protocol {
                    what: format!("ConfigMap {ns}/{name} key {key}"),
                    detail: "no `server:` line".into(),
                });
            }
            let new = set_kubeconfig_servers(&text, server);
            if new == text {
                return Ok(false);
            }
            cm.data
                .get_or_insert_with(Default::default)
                .insert(key.into(), new);
            match timeout_at(self.until(), api.replace(name, &PostParams::default(), &cm)).await {
                Ok(Ok(_)) => return Ok(true),
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => continue,
                Ok(Err(e)) => {
                    return Err(CpError::kube(format!("update ConfigMap {ns}/{name}"), e));
                }
                Err(_) => {
                    return Err(CpError::Timeout {
                        what: format!("Kubernetes API: update ConfigMap {ns}/{name}"),
                        deadline: self.opts.timeout,
                    });
                }
            }
        }
        Err(CpError::Refused(format!(
            "ConfigMap {ns}/{name} kept changing while hacli edited it (5 conflicts): try again"
        )))
    }

    pub(crate) async fn kube_proxy_server_is(&self, server: &str) -> Result<bool, CpError> {
        self.cm_kubeconfig_is("kube-system", "kube-proxy", "kubeconfig.conf", server)
            .await
    }

    pub(crate) async fn set_kube_proxy_server(&self, server: &str) -> Result<(), CpError> {
        self.set_cm_kubeconfig("kube-system", "kube-proxy", "kubeconfig.conf", server)
            .await?;
        // Restart the kube-proxy pods as `kubectl rollout restart` does.
        let api: Api<DaemonSet> = Api::namespaced(self.kube.clone(), "kube-system");
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": jiff::Timestamp::now().to_string()}}}}});
        match timeout_at(
            self.until(),
            api.patch("kube-proxy", &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                self.notice("DaemonSet kube-system/kube-proxy does not exist: no kube-proxy pods to restart (a CNI replacing kube-proxy?)");
                Ok(())
            }
            Ok(Err(e)) => Err(CpError::kube("restart DaemonSet kube-system/kube-proxy", e)),
            Err(_) => Err(CpError::Timeout {
                what: "Kubernetes API: restart DaemonSet kube-system/kube-proxy".into(),
                deadline: self.opts.timeout,
            }),
        }
    }

    pub(crate) async fn cluster_info_server_is(&self, server: &str) -> Result<bool, CpError> {
        self.cm_kubeconfig_is("kube-public", "cluster-info", "kubeconfig", server)
            .await
    }

    pub(crate) async fn set_cluster_info_server(&self, server: &str) -> Result<(), CpError> {
        self.set_cm_kubeconfig("kube-public", "cluster-info", "kubeconfig", server)
            .await
            .map(|_| ())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const CC: &str = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.32.0\napiServer:\n  certSANs:\n  - old.example\nnetworking:\n  podSubnet: 10.244.0.0/16\n";

    #[test]
    fn endpoint_and_sans_are_set_and_the_rest_kept() {
        let v = parse_cluster_configuration(CC).unwrap();
        let n = with_endpoint(
            &v,
            "198.18.0.10:6443",
            &["198.18.0.10".into(), "old.example".into()],
        );
        assert_eq!(
            endpoint_and_sans(&n),
            (
                Some("198.18.0.10:6443".into()),
                vec!["old.example".into(), "198.18.0.10".into()]
            )
        );
        assert_eq!(n["networking"]["podSubnet"], "10.244.0.0/16");
        let file = kubeadm_config_file(&n, "m2", "198.18.0.12".parse().unwrap(), 6443).unwrap();
        let docs: Vec<&str> = file.split("---\n").collect();
        assert_eq!(docs.len(), 2, "{file}");
        let init: Value = serde_saphyr::from_str(docs[0]).unwrap();
        assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "198.18.0.12");
        assert_eq!(init["nodeRegistration"]["name"], "m2");
        let back = parse_cluster_configuration(docs[1]).unwrap();
        assert_eq!(back, n);
        assert!(parse_cluster_configuration("kind: InitConfiguration\n").is_err());
    }
}

/// Whether the ConfigMap carries the label hacli puts on what it creates
/// (`app.kubernetes.io/managed-by: hacli`); the error names what it found.
pub fn made_by_hacli(cm: &ConfigMap) -> Result<(), String> {
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
    match cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
    {
        Some(v) if v == "hacli" => Ok(()),
        other => Err(format!(
            "ConfigMap {ns}/{name} was not made by hacli (app.kubernetes.io/managed-by: {}): not restoring from it",
            other.map(String::as_str).unwrap_or("unset")
        )),
    }
}

/// Whether Node `found` is the topology's `node` at `address`: a Node whose
/// reported addresses do not include it is another machine that took the
/// name, and is not deleted (a Node that reports no address is taken by its
/// name).
pub fn node_is(found: &Node, node: &str, address: Option<std::net::IpAddr>) -> Result<(), String> {
    let listed: Vec<&str> = found
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .map(|a| a.address.as_str())
        .collect();
    if listed.is_empty() {
        return Ok(());
    }
    let want = address.map(|a| a.to_string());
    if want.as_deref().is_some_and(|w| listed.contains(&w)) {
        return Ok(());
    }
    Err(format!(
        "Node {node} has addresses {}, not {}: another machine took the name; not deleting it",
        listed.join(", "),
        want.as_deref().unwrap_or("(none in the topology)")
    ))
}

#[cfg(test)]
mod ownership_tests {
    use super::*;

    #[test]
    fn a_node_is_deleted_only_at_its_topology_address() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "k8s-master-2"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "198.18.20.105"},
                {"type": "Hostname", "address": "k8s-master-2"}]}
        }))
        .unwrap();
        let at = |a: &str| Some(a.parse().unwrap());
        assert_eq!(node_is(&node, "k8s-master-2", at("198.18.20.105")), Ok(()));
        assert_eq!(
            node_is(&node, "k8s-master-2", at("198.18.20.150")).unwrap_err(),
            "Node k8s-master-2 has addresses 198.18.20.105, not 198.18.20.150: another machine took the name; not deleting it"
        );
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(node_is(&bare, "x", at("198.18.20.105")), Ok(()));
    }

    #[test]
    fn only_a_backup_hacli_made_is_restored() {
        let cm = |labels: Value| -> ConfigMap {
            serde_json::from_value(json!({
                "metadata": {"name": CONFIG_BACKUP, "namespace": "kube-system", "labels": labels},
                "data": {"ClusterConfiguration": "x"}
            }))
            .unwrap()
        };
        assert_eq!(
            made_by_hacli(&cm(json!({"app.kubernetes.io/managed-by": "hacli"}))),
            Ok(())
        );
        assert_eq!(
            made_by_hacli(&cm(json!({}))).unwrap_err(),
            "ConfigMap kube-system/hacli-kubeadm-config-backup was not made by hacli (app.kubernetes.io/managed-by: unset): not restoring from it"
        );
    }
}
