//! Live implementations of the disruption operations (issue 14), as
//! functions the control-plane backend's match arms call:
//!
//! - through the Kubernetes API: cordon, uncordon, drain (the Eviction API,
//!   honouring PodDisruptionBudgets; DaemonSet and static pods stay), delete
//!   the Node, wait for a reboot (the Node's `bootID` changes);
//! - through etcd: move leadership away ([`crate::etcd_leader`]), remove a
//!   member by id (refusing the last member and any removal that leaves the
//!   remaining voters without a healthy quorum);
//! - through the observer: "healthy" = the Node Ready, its etcd member
//!   healthy and caught up, its apiserver answering `/readyz` directly;
//! - the commands a node runs over SSH (`kubeadm upgrade ...`,
//!   `systemctl reboot`), as argument vectors for the SSH runner.
//!
//! Every call has a deadline.

use std::time::Duration;

use hacore::disrupt::CAUGHT_UP_LAG;
use hacore::rules::Context;
use hacore::state::{ClusterState, EtcdMember, Probe};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use tokio::time::{Instant, sleep, timeout_at};

use crate::{Error, Observer};

fn kube_err(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |e| Error::kube(what, e)
}

async fn within<T>(
    until: Instant,
    what: &str,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let ms = until.saturating_duration_since(Instant::now()).as_millis();
    timeout_at(until, f).await.unwrap_or_else(|_| {
        Err(Error::Timeout {
            what: what.to_string(),
            ms,
        })
    })
}

/// Whether Node `node` is cordoned (`spec.unschedulable`).
pub async fn is_cordoned(
    client: &kube::Client,
    node: &str,
    deadline: Duration,
) -> Result<bool, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let what = format!("read Node {node}");
    let n = within(Instant::now() + deadline, &what, async {
        api.get(node).await.map_err(kube_err(what.clone()))
    })
    .await?;
    Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
}

/// Cordon (`on`) or uncordon Node `node` (a merge patch of
/// `spec.unschedulable`).
pub async fn set_cordoned(
    client: &kube::Client,
    node: &str,
    on: bool,
    deadline: Duration,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "spec": { "unschedulable": if on { serde_json::Value::Bool(true) } else { serde_json::Value::Null } } });
    let what = format!("{} Node {node}", if on { "cordon" } else { "uncordon" });
    within(Instant::now() + deadline, &what, async {
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(kube_err(what.clone()))
    })
    .await
}

/// Whether a pod stays through a drain: a DaemonSet's pod, a static
/// (mirror) pod, or one already finished.
fn stays(p: &Pod) -> bool {
    let daemon = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let done = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
    daemon || mirror || done
}

/// The pods a drain of `node` must evict, as `namespace/name`.
pub async fn evictable_pods(
    client: &kube::Client,
    node: &str,
    deadline: Duration,
) -> Result<Vec<(String, String)>, Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let what = format!("list the pods on {node}");
    let pods = within(Instant::now() + deadline, &what, async {
        api.list(&lp).await.map_err(kube_err(what.clone()))
    })
    .await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| !stays(p))
        .map(|p| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect())
}

/// Drain `node`: evict every pod that must go through the Eviction API
/// (a PodDisruptionBudget that allows no disruption answers 429: retried
/// until `deadline`), then wait until they are gone. Gives up at the
/// deadline naming the pods that are left. The node should be cordoned
/// first.
pub async fn drain(client: &kube::Client, node: &str, deadline: Duration) -> Result<(), Error> {
    let until = Instant::now() + deadline;
    loop {
        let left = evictable_pods(
            client,
            node,
            until.saturating_duration_since(Instant::now()),
        )
        .await?;
        if left.is_empty() {
            return Ok(());
        }
        for (ns, name) in &left {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            match timeout_at(until, api.evict(name, &EvictParams::default())).await {
                // Evicted; 404: gone already; 429: a PDB says not now.
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 429 => {}
                Ok(Err(e)) => {
                    return Err(Error::kube(format!("evict pod {ns}/{name} from {node}"), e));
                }
                Err(_) => break,
            }
        }
        if Instant::now() >= until {
            let names: Vec<String> = left.iter().map(|(n, p)| format!("{n}/{p}")).collect();
            return Err(Error::Timeout {
                what: format!(
                    "draining {node}: still there (a PodDisruptionBudget may allow no disruption): {}",
                    names.join(", ")
                ),
                ms: deadline.as_millis(),
            });
        }
        sleep(Duration::from_millis(500)).await;
    }
}

/// Node `node`'s `status.nodeInfo.bootID` (changes with every boot).
pub async fn boot_id(
    client: &kube::Client,
    node: &str,
    deadline: Duration,
) -> Result<String, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let what = format!("read Node {node}");
    let n = within(Instant::now() + deadline, &what, async {
        api.get(node).await.map_err(kube_err(what.clone()))
    })
    .await?;
    Ok(n.status
        .and_then(|s| s.node_info)
        .map(|i| i.boot_id)
        .unwrap_or_default())
}

/// Wait until Node `node` reports a boot id other than `before`, within
/// `deadline` (a reboot was asked for; the API may be briefly unreachable).
pub async fn wait_rebooted(
    client: &kube::Client,
    node: &str,
    before: &str,
    deadline: Duration,
) -> Result<(), Error> {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if let Ok(id) = boot_id(client, node, left.min(Duration::from_secs(5))).await
            && !id.is_empty()
            && id != before
        {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(Error::Timeout {
                what: format!(
                    "waiting for {node} to come back from its reboot (bootID still {before})"
                ),
                ms: deadline.as_millis(),
            });
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Delete Node `node` (done when it is not there).
pub async fn delete_node(
    client: &kube::Client,
    node: &str,
    deadline: Duration,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let what = format!("delete Node {node}");
    within(Instant::now() + deadline, &what, async {
        match api.delete(node, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(what.clone(), e)),
        }
    })
    .await
}

/// Whether Node `node` exists.
pub async fn node_exists(
    client: &kube::Client,
    node: &str,
    deadline: Duration,
) -> Result<bool, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let what = format!("read Node {node}");
    within(Instant::now() + deadline, &what, async {
        api.get_opt(node)
            .await
            .map(|n| n.is_some())
            .map_err(kube_err(what.clone()))
    })
    .await
}

/// The etcd member that runs on `node` in `state`.
fn member_of<'a>(
    observer: &Observer,
    state: &'a ClusterState,
    node: &str,
) -> Option<&'a EtcdMember> {
    let topology = observer.topology();
    let (targets, host) = hacore::gate::resolve_target(topology, node).ok()?;
    let ctx = Context::new(
        topology,
        state,
        hacore::Action::Reboot,
        node,
        targets,
        host,
        state.observed_at,
        None,
    );
    state
        .etcd
        .as_ref()?
        .members
        .iter()
        .find(|m| ctx.member_is_target(m))
}

/// Why `node` is not healthy yet, or None when it is: its Node Ready and,
/// for a master, its etcd member healthy and no more than
/// [`CAUGHT_UP_LAG`] entries behind the leader, and its apiserver answering
/// `/readyz` directly.
pub fn unhealthy(observer: &Observer, state: &ClusterState, node: &str) -> Option<String> {
    let ready = state.node(node).and_then(|n| n.ready);
    if ready != Some(true) {
        return Some(format!("Node {node} is not Ready ({ready:?})"));
    }
    let master = observer
        .topology()
        .node(node)
        .is_some_and(|n| n.is_control_plane());
    if !master {
        return None;
    }
    if let Some(e) = state.probe_errors.get(&Probe::Etcd) {
        return Some(format!("etcd not observed: {e}"));
    }
    let Some(m) = member_of(observer, state, node) else {
        return Some(format!("no etcd member of {node} is listed"));
    };
    if m.healthy != Some(true) {
        return Some(format!("{node}'s etcd member is not healthy"));
    }
    let leader = state
        .etcd
        .as_ref()
        .and_then(|e| e.members.iter().find(|m| m.leader))
        .and_then(|l| l.raft_index);
    match (m.raft_index, leader) {
        (Some(i), Some(l)) if i + CAUGHT_UP_LAG >= l => {}
        (i, l) => {
            return Some(format!(
                "{node}'s etcd member is not caught up (raft index {i:?}, leader {l:?})"
            ));
        }
    }
    match state.apiservers.as_ref().and_then(|a| a.per_node.get(node)) {
        Some(true) => None,
        other => Some(format!(
            "{node}'s apiserver does not answer /readyz ({other:?})"
        )),
    }
}

/// Wait until `node` is healthy (see [`unhealthy`]), observing again every
/// second, within `deadline`; the error says what is still missing.
pub async fn wait_healthy(
    observer: &Observer,
    node: &str,
    deadline: Duration,
) -> Result<(), Error> {
    let until = Instant::now() + deadline;
    loop {
        let state = Box::pin(observer.observe()).await;
        let why = match unhealthy(observer, &state, node) {
            None => return Ok(()),
            Some(w) => w,
        };
        if Instant::now() >= until {
            return Err(Error::Timeout {
                what: format!("waiting until {node} is healthy: {why}"),
                ms: deadline.as_millis(),
            });
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `node` leads etcd now.
pub async fn leads(observer: &Observer, node: &str) -> Result<bool, Error> {
    let state = Box::pin(observer.observe()).await;
    if let Some(e) = state.probe_errors.get(&Probe::Etcd) {
        return Err(Error::Disruption {
            node: node.into(),
            reason: format!("etcd not observed: {e}"),
        });
    }
    Ok(member_of(observer, &state, node).is_some_and(|m| m.leader))
}

/// Whether `node` still has an etcd member.
pub async fn has_member(observer: &Observer, node: &str) -> Result<bool, Error> {
    let state = Box::pin(observer.observe()).await;
    if let Some(e) = state.probe_errors.get(&Probe::Etcd) {
        return Err(Error::Disruption {
            node: node.into(),
            reason: format!("etcd not observed: {e}"),
        });
    }
    Ok(member_of(observer, &state, node).is_some())
}

/// Why member `m` is not `node`'s own (the reason to refuse removing
/// it), or `None` when it is.
fn not_the_nodes_member(observer: &Observer, node: &str, m: &EtcdMember) -> Option<String> {
    // Only the member that is this node: its name (none before it started)
    // and its peer URL on the node's address.
    let addr = observer
        .topology()
        .node(node)
        .map(|n| n.address.to_string());
    let on_addr = addr.is_some()
        && m.peer_urls.iter().all(|u| {
            hacore::state::url_host(u).map(|h| {
                h.parse::<std::net::IpAddr>()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| h.to_string())
            }) == addr
        });
    if !(on_addr && !m.peer_urls.is_empty() && (m.name == node || m.name.is_empty())) {
        return Some(format!(
            "etcd member {:x} is named `{}` with peer URLs [{}], not {node} at {}: not removing it",
            m.id.0,
            m.name,
            m.peer_urls.join(", "),
            addr.as_deref().unwrap_or("(no address in the topology)")
        ));
    }
    None
}

/// Remove `node`'s etcd member by its id, through another member. Refused
/// (with the reason) when it is the last member, when it leads (move
/// leadership first), or when the voters left would not hold a healthy
/// quorum. Done when the node has no member.
pub async fn remove_member(
    observer: &Observer,
    node: &str,
    deadline: Duration,
) -> Result<(), Error> {
    let until = Instant::now() + deadline;
    let refuse = |reason: String| Error::Disruption {
        node: node.into(),
        reason: format!("member remove refused: {reason}"),
    };
    let state = within(until, "observing etcd", async {
        Ok(Box::pin(observer.observe()).await)
    })
    .await?;
    if let Some(e) = state.probe_errors.get(&Probe::Etcd) {
        return Err(refuse(format!("etcd not observed: {e}")));
    }
    let Some(m) = member_of(observer, &state, node) else {
        return Ok(());
    };
    if let Some(why) = not_the_nodes_member(observer, node, m) {
        return Err(refuse(why));
    }
    let members = &state.etcd.as_ref().expect("observed").members;
    if members.len() == 1 {
        return Err(refuse("it is the last member".into()));
    }
    if m.leader {
        return Err(refuse("it leads etcd: move leadership first".into()));
    }
    let left: Vec<&EtcdMember> = members
        .iter()
        .filter(|o| o.id != m.id && !o.is_learner)
        .collect();
    let healthy = left.iter().filter(|o| o.healthy == Some(true)).count();
    let quorum = left.len() / 2 + 1;
    if healthy < quorum {
        return Err(refuse(format!(
            "{healthy} of the {} voters left are healthy, below their quorum of {quorum}",
            left.len()
        )));
    }
    let via = left
        .iter()
        .find(|o| o.healthy == Some(true))
        .and_then(|o| o.client_urls.first())
        .cloned()
        .ok_or_else(|| refuse("no healthy member to ask".into()))?;
    let mut client = observer.etcd_client(&via).await.map_err(&refuse)?;
    let id = m.id.0;
    loop {
        match timeout_at(until, client.member_remove(id)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                let why = crate::observe::describe(&e);
                // Removed already (a resumed step).
                if why.contains("member not found") {
                    return Ok(());
                }
                // etcd's own check: the voters left must have been
                // connected for a few seconds (a member that just
                // restarted). It clears by itself: try again.
                if why.contains("unhealthy cluster")
                    && Instant::now() + Duration::from_secs(1) < until
                {
                    sleep(Duration::from_secs(1)).await;
                    continue;
                }
                return Err(refuse(format!(
                    "member remove {id:x} through {}: {why}",
                    crate::redact_url(&via),
                )));
            }
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("etcd member remove {id:x} ({node})"),
                    ms: deadline.as_millis(),
                });
            }
        }
    }
}

/// The command that upgrades a node: `kubeadm upgrade apply VERSION -y` on
/// the first master, `kubeadm upgrade node` elsewhere.
pub fn upgrade_command(version: &str, first: bool) -> Vec<String> {
    if first {
        ["kubeadm", "upgrade", "apply", version, "-y"]
            .map(String::from)
            .to_vec()
    } else {
        ["kubeadm", "upgrade", "node"].map(String::from).to_vec()
    }
}

/// The command that reboots a node (the SSH session then drops; wait with
/// [`wait_rebooted`]).
pub fn reboot_command() -> Vec<String> {
    ["systemctl", "reboot"].map(String::from).to_vec()
}

/// Whether `systemctl reboot`, run over SSH with `result`, asked the node
/// to reboot: it exited 0, or the connection closed under it (the node
/// going down: no exit status, a signal, a deadline passed after the
/// command started). Anything else is the reason it did not, to report at
/// once rather than after waiting for a reboot that will not come: a
/// non-zero exit (sudo refused, systemd refused), a host key, an
/// authentication or a connection that failed before the command ran.
pub fn reboot_asked(node: &str, result: Result<ssh::Output, ssh::SshError>) -> Result<(), Error> {
    let refuse = |reason: String| Error::Disruption {
        node: node.into(),
        reason: format!("`systemctl reboot` did not ask for a reboot: {reason}"),
    };
    match result {
        Ok(out) => match &out.status {
            ssh::ExitStatus::Code(0) | ssh::ExitStatus::Signal(_) => Ok(()),
            status => {
                let err = out.stderr_str();
                let tail: String = {
                    let t = err.trim();
                    let start = t.len().saturating_sub(300);
                    let start = (start..=t.len())
                        .find(|i| t.is_char_boundary(*i))
                        .unwrap_or(t.len());
                    t[start..].to_string()
                };
                Err(refuse(format!("{status}; stderr: {tail}")))
            }
        },
        // The session went down with the node.
        Err(ssh::SshError::Io { ref context, .. })
            if context.starts_with("the channel closed without an exit status") =>
        {
            Ok(())
        }
        Err(ssh::SshError::Timeout { ref what, .. }) if !what.starts_with("it never started") => {
            Ok(())
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// What the live backend remembers between the calls of a disruption: the
/// boot id a node had before its reboot, and the acts done (a command, a
/// worker's `kubeadm upgrade node`), so that the step's verification sees
/// them. Memory only: after a crash the act is done again.
#[derive(Debug, Default)]
pub struct Memory {
    boot_before: std::collections::BTreeMap<String, String>,
    acted: std::collections::BTreeSet<String>,
}

fn cp(e: Error) -> super::CpError {
    match e {
        Error::Timeout { what, ms } => super::CpError::Timeout {
            what,
            deadline: Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)),
        },
        Error::Disruption { .. } => super::CpError::Refused(e.to_string()),
        other => super::CpError::Kube {
            what: "disruption step".into(),
            message: other.chain(),
        },
    }
}

fn act_key(op: &hacore::backend::CpOp) -> String {
    hacore::backend::Op::ControlPlane(op.clone()).to_string()
}

impl super::KubeadmControlPlane {
    /// An observer with this backend's kubeconfig and etcd settings.
    async fn disrupt_observer(&self) -> Result<Observer, super::CpError> {
        let config = crate::ObserverConfig {
            kubeconfig: self.opts.kubeconfig.clone(),
            kube_context: self.opts.kube_context.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: self.opts.etcd_tls.clone(),
            deadline: self.opts.timeout.min(Duration::from_secs(10)),
            member_timeout: self.opts.timeout.min(Duration::from_secs(5)),
            apiserver_port: self.opts.apiserver_port,
            ..Default::default()
        };
        Observer::new(self.topology.clone(), config)
            .await
            .map_err(|e| super::CpError::Config(e.chain()))
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.disrupt_memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the static pods of master `node` run `version` (the
    /// apiserver manifest's image tag).
    async fn runs_version(&self, node: &str, version: &str) -> Result<bool, super::CpError> {
        let manifest = self
            .read_remote(node, "/etc/kubernetes/manifests/kube-apiserver.yaml")
            .await?;
        Ok(manifest.is_some_and(|m| m.contains(&format!("kube-apiserver:{version}"))))
    }

    /// The static-pod manifests of master `node`, in [`COMPONENTS`] order
    /// (None: absent).
    ///
    /// [`COMPONENTS`]: hacore::masters::COMPONENTS
    async fn static_pods(&self, node: &str) -> Result<Vec<Option<String>>, super::CpError> {
        let mut v = Vec::new();
        for (_, file) in hacore::masters::COMPONENTS {
            v.push(self.read_remote(node, file).await?);
        }
        Ok(v)
    }

    /// After `kubeadm upgrade` failed with `e` on master `node`: when its
    /// static-pod manifests are again the ones it had `before` (the same
    /// bytes, so the same hash the kubelet runs), kubeadm rolled its own
    /// upgrade back, and the error says so; otherwise `e`.
    async fn rolled_back(
        &self,
        node: &str,
        argv: &[String],
        before: Vec<Option<String>>,
        e: super::CpError,
    ) -> super::CpError {
        let Ok(after) = self.static_pods(node).await else {
            return e;
        };
        if after != before || before.iter().all(Option::is_none) {
            return e;
        }
        let version = before[0]
            .as_deref()
            .and_then(|m| m.split("kube-apiserver:").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.trim_matches(|c| c == '"' || c == '\''))
            .unwrap_or("the old version");
        super::CpError::RolledBack(format!(
            "{node}'s static-pod manifests are back to the ones before `{}` (the same hashes; the apiserver runs {version} again); kubeadm said: {e}",
            argv.join(" ")
        ))
    }

    /// `is_done` of a disruption operation.
    pub(crate) async fn disrupt_is_done(
        &self,
        op: &hacore::backend::CpOp,
    ) -> Result<bool, super::CpError> {
        use hacore::backend::CpOp;
        let t = self.opts.timeout;
        match op {
            CpOp::MoveLeader { from } => {
                let obs = self.disrupt_observer().await?;
                Ok(!leads(&obs, from).await.map_err(cp)?)
            }
            CpOp::Cordon { node } => is_cordoned(&self.kube, node, t).await.map_err(cp),
            CpOp::Uncordon { node } => Ok(!is_cordoned(&self.kube, node, t).await.map_err(cp)?),
            CpOp::Drain { node } => Ok(evictable_pods(&self.kube, node, t)
                .await
                .map_err(cp)?
                .is_empty()),
            CpOp::Reboot { node } => {
                let Some(before) = self.memory().boot_before.get(node).cloned() else {
                    return Ok(false);
                };
                let now = boot_id(&self.kube, node, t).await.map_err(cp)?;
                Ok(!now.is_empty() && now != before)
            }
            CpOp::Upgrade {
                node,
                version,
                first,
            } => {
                let master = self
                    .topology
                    .node(node)
                    .is_some_and(|n| n.is_control_plane());
                if master && *first {
                    self.runs_version(node, version).await
                } else {
                    Ok(self.memory().acted.contains(&act_key(op)))
                }
            }
            CpOp::RunCommand { .. } => Ok(self.memory().acted.contains(&act_key(op))),
            CpOp::WaitHealthy { node } => {
                let obs = self.disrupt_observer().await?;
                let state = Box::pin(obs.observe()).await;
                Ok(unhealthy(&obs, &state, node).is_none())
            }
            CpOp::RemoveMember { node } => {
                let obs = self.disrupt_observer().await?;
                Ok(!has_member(&obs, node).await.map_err(cp)?)
            }
            CpOp::DeleteNode { node } => Ok(!node_exists(&self.kube, node, t).await.map_err(cp)?),
            _ => Err(super::CpError::Config(format!(
                "`{}` is not a disruption operation",
                act_key(op)
            ))),
        }
    }

    /// `apply` of a disruption operation.
    pub(crate) async fn disrupt_apply(
        &self,
        op: &hacore::backend::CpOp,
    ) -> Result<(), super::CpError> {
        use hacore::backend::CpOp;
        let t = self.opts.timeout;
        let long = self.opts.join_timeout;
        match op {
            CpOp::MoveLeader { from } => {
                let obs = self.disrupt_observer().await?;
                let m = crate::etcd_leader::move_leader_away(&obs, from, t)
                    .await
                    .map_err(cp)?;
                self.notice(&m.to_string());
                Ok(())
            }
            CpOp::Cordon { node } => set_cordoned(&self.kube, node, true, t).await.map_err(cp),
            CpOp::Uncordon { node } => set_cordoned(&self.kube, node, false, t).await.map_err(cp),
            CpOp::Drain { node } => {
                set_cordoned(&self.kube, node, true, t).await.map_err(cp)?;
                drain(&self.kube, node, self.opts.check_wait)
                    .await
                    .map_err(cp)
            }
            CpOp::Reboot { node } => {
                let before = boot_id(&self.kube, node, t).await.map_err(cp)?;
                self.memory()
                    .boot_before
                    .insert(node.clone(), before.clone());
                let cmd = ssh::Cmd::new("systemctl").arg("reboot");
                // The connection drops as the node goes down: not an error;
                // any other failure is, at once (reboot_asked).
                let asked = match self.session(node).await {
                    Ok(s) => reboot_asked(node, s.run(&cmd, t).await),
                    Err(e) => Err(Error::Disruption {
                        node: node.clone(),
                        reason: format!("`systemctl reboot` did not ask for a reboot: {e}"),
                    }),
                };
                if let Ok(mut s) = self.sessions.lock() {
                    s.remove(node);
                }
                asked.map_err(cp)?;
                wait_rebooted(&self.kube, node, &before, long)
                    .await
                    .map_err(cp)
            }
            CpOp::Upgrade {
                node,
                version,
                first,
            } => {
                let argv = upgrade_command(version, *first);
                let cmd = ssh::Cmd::new(&argv[0]).args(argv[1..].iter().cloned());
                let master = self
                    .topology
                    .node(node)
                    .is_some_and(|n| n.is_control_plane());
                let before = match master {
                    true => self.static_pods(node).await.ok(),
                    false => None,
                };
                if let Err(e) = self.run(node, &cmd, long).await {
                    return Err(match before {
                        Some(b) => self.rolled_back(node, &argv, b, e).await,
                        None => e,
                    });
                }
                self.memory().acted.insert(act_key(op));
                Ok(())
            }
            CpOp::RunCommand { node, command } => {
                let Some((program, args)) = command.split_first() else {
                    return Err(super::CpError::Config("run: an empty command".into()));
                };
                let cmd = ssh::Cmd::new(program).args(args.iter().cloned());
                self.run(node, &cmd, long).await?;
                self.memory().acted.insert(act_key(op));
                Ok(())
            }
            CpOp::WaitHealthy { node } => {
                let obs = self.disrupt_observer().await?;
                wait_healthy(&obs, node, long).await.map_err(cp)
            }
            CpOp::RemoveMember { node } => {
                let obs = self.disrupt_observer().await?;
                remove_member(&obs, node, t).await.map_err(cp)
            }
            // Checked first: the Node is this node (its address), not
            // another machine that took the name.
            CpOp::DeleteNode { node } => self.delete_node(node).await,
            _ => Err(super::CpError::Config(format!(
                "`{}` is not a disruption operation",
                act_key(op)
            ))),
        }
    }
}

/// Boot ids for the executor's journal (issue 21: a resumed run knows
/// whether the reboot it asked for happened, and never asks twice).
impl super::KubeadmControlPlane {
    /// `node`'s boot id as its Node reports it (`status.nodeInfo.bootID`).
    /// None reported is an error: a reboot could not be told from none.
    pub(crate) async fn node_boot_id(&self, node: &str) -> Result<String, super::CpError> {
        let id = boot_id(&self.kube, node, self.opts.timeout)
            .await
            .map_err(cp)?;
        if id.is_empty() {
            return Err(super::CpError::Refused(format!(
                "Node {node} reports no boot id (status.nodeInfo.bootID): its reboot could not be told from none"
            )));
        }
        Ok(id)
    }

    /// Wait until `node` reports a boot id other than `before` (a reboot an
    /// earlier run asked for), within the reboot's deadline, without
    /// asking again.
    pub(crate) async fn await_reboot_of(
        &self,
        node: &str,
        before: &str,
    ) -> Result<(), super::CpError> {
        self.memory()
            .boot_before
            .insert(node.to_string(), before.to_string());
        wait_rebooted(&self.kube, node, before, self.opts.join_timeout)
            .await
            .map_err(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: u32, stderr: &str) -> ssh::Output {
        ssh::Output {
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            status: ssh::ExitStatus::Code(code),
        }
    }

    #[test]
    fn a_reboot_that_was_not_asked_is_reported_at_once() {
        let host = "m1 (hacli@198.18.0.11:22)".to_string();
        // Asked: it exited 0, or the session went down with the node.
        assert!(reboot_asked("m1", Ok(out(0, ""))).is_ok());
        assert!(
            reboot_asked(
                "m1",
                Ok(ssh::Output {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    status: ssh::ExitStatus::Signal("TERM".into()),
                })
            )
            .is_ok()
        );
        let closed = ssh::SshError::Io {
            host: host.clone(),
            context: "the channel closed without an exit status for `sudo -n -- systemctl reboot`"
                .into(),
            reason: "the connection or sshd went away; stderr: ".into(),
        };
        assert!(reboot_asked("m1", Err(closed)).is_ok());
        let late = ssh::SshError::Timeout {
            host: host.clone(),
            cmd: "systemctl reboot".into(),
            timeout: Duration::from_secs(10),
            what: "killed".into(),
        };
        assert!(reboot_asked("m1", Err(late)).is_ok());

        // Not asked: said at once, with why.
        let e = reboot_asked("m1", Ok(out(1, "sudo: a password is required\n")))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m1: ")
                && e.contains("did not ask for a reboot")
                && e.contains("exit status 1")
                && e.contains("sudo: a password is required"),
            "{e}"
        );
        for err in [
            ssh::SshError::HostKeyMismatch {
                host: host.clone(),
                expected_fingerprint: "SHA256:a".into(),
                got_fingerprint: "SHA256:b".into(),
                known_hosts_file: "/root/.ssh/known_hosts".into(),
                line: 3,
                fix: "check the host".into(),
            },
            ssh::SshError::Auth {
                host: host.clone(),
                user: "hacli".into(),
                tried: "id_ed25519".into(),
                hint: "add the key".into(),
            },
            ssh::SshError::Connect {
                host: host.clone(),
                reason: "connection refused".into(),
            },
            ssh::SshError::Timeout {
                host: host.clone(),
                cmd: "systemctl reboot".into(),
                timeout: Duration::from_secs(10),
                what: "it never started: no answer to the exec request".into(),
            },
        ] {
            let shown = err.to_string();
            let e = reboot_asked("m1", Err(err)).unwrap_err().to_string();
            assert!(
                e.contains("did not ask for a reboot") && e.contains(&shown),
                "{e}"
            );
        }
    }
}
