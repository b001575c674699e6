//! The observer: every probe concurrently, under one overall deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use etcd_client::{Certificate, Client as Etcd, ConnectOptions, Identity, TlsOptions};
use hacore::state::{
    Alert, ApiserverState, EtcdMember, EtcdState, LockState, MemberId, NodeState, Probe,
};
use hacore::{ClusterState, Topology};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{GetParams, ListParams};
use tokio::time::{Instant, timeout_at};

use crate::etcd_alarm::status_alarm;
use crate::{Error, ObserverConfig, to_jiff};

/// Observes one cluster. Build once, observe many times (the sentinel).
pub struct Observer {
    topology: Topology,
    config: ObserverConfig,
    kube: kube::Client,
    /// What the Kubernetes client's connector saw of its connections.
    kube_conn: crate::KubeConn,
    kube_config: kube::Config,
    /// The kubeconfig's TLS settings, built once for every apiserver
    /// connection (and sharing one session cache, so a long-lived observer
    /// resumes its sessions).
    kube_tls: Option<rustls::ClientConfig>,
    etcd_tls: TlsOptions,
    /// For Prometheus, when configured.
    http: Option<reqwest::Client>,
    /// For the etcd members' `/metrics`, when the latency is observed (or
    /// why the client could not be made).
    metrics: Option<Result<crate::etcd_latency::MetricsReader, String>>,
    /// The members' last metrics, for the next observation's window.
    kept: crate::etcd_latency::Kept,
    /// The Prometheus `etcd-latency` and `master-disk` read their figures
    /// from, when configured (or why its client could not be made).
    source: Option<Result<crate::prometheus::Prometheus, String>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("cluster", &self.topology.cluster)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type ProbeResult<T> = Result<T, String>;

/// The shape of one observation's Kubernetes reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads<'a> {
    /// Cluster-wide lists of Nodes, Pods and PodDisruptionBudgets, every
    /// read consistent (served from etcd): a one-off gate or status.
    Cluster,
    /// One node's sentinel: every Node (the rules look at all of them),
    /// the pods of the DaemonSets the configuration names (by each one's
    /// selector) and this node's own pods (by `spec.nodeName`, for its
    /// PodDisruptionBudgets) instead of every pod; PodDisruptionBudgets are
    /// attributed to this node only.
    Node {
        /// The node.
        name: &'a str,
        /// false: advisory reads the apiserver may serve from its watch
        /// cache (`resourceVersion=0`); true: consistent reads, for what a
        /// decision rests on just before the lock is taken.
        consistent: bool,
    },
}

impl Reads<'_> {
    fn cached(&self) -> bool {
        matches!(
            self,
            Reads::Node {
                consistent: false,
                ..
            }
        )
    }
}

/// `Api::get_opt`, from the watch cache when `cached`.
async fn get_opt<K>(api: &Api<K>, name: &str, cached: bool) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !cached {
        return api.get_opt(name).await;
    }
    match api.get_with(name, &GetParams::any()).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.reason == "NotFound" => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `LabelSelector` object as the `labelSelector` query parameter.
fn selector_query(sel: &LabelSelector) -> String {
    let mut terms: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            // Never matches, as `selects` reads an unknown operator.
            other => format!("{} {other} ({vals})", e.key),
        });
    }
    terms.join(",")
}

async fn within<T, E: std::error::Error + 'static>(
    until: Instant,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> ProbeResult<T> {
    match timeout_at(until, f).await {
        Ok(Ok(v)) => Ok(v),
        // `what` names URLs already redacted; a library's message may repeat
        // the URL it was given.
        Ok(Err(e)) => Err(format!("{what}: {}", crate::redact_urls_in(&describe(&e)))),
        Err(_) => Err(format!("{what}: no answer before the deadline")),
    }
}

/// One line for an error: its own message (a gRPC status's message, not
/// its debug dump) and, when that does not already say it, the root cause
/// (such as "Connection refused (os error 111)").
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let (top, mut next) = match e.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(s)) => {
            let top = if s.message().is_empty() {
                format!("{:?}", s.code())
            } else {
                s.message().to_string()
            };
            (top, std::error::Error::source(s))
        }
        _ => (e.to_string(), e.source()),
    };
    let mut root = None;
    while let Some(cause) = next {
        root = Some(cause);
        next = cause.source();
    }
    match root.map(|r| r.to_string()) {
        Some(r) if !r.is_empty() && !top.contains(&r) => format!("{top}: {r}"),
        _ => top,
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::EtcdTlsFile {
        path: path.to_path_buf(),
        source,
    })
}

/// One row of `member list`: id, name, peer URLs, client URLs, learner.
type MemberRow = (u64, String, Vec<String>, Vec<String>, bool);

/// One etcd endpoint's answers.
#[derive(Default)]
struct EndpointView {
    url: String,
    member_id: Option<u64>,
    leader: Option<u64>,
    raft_index: Option<u64>,
    healthy: bool,
    error: Option<String>,
    members: Option<Vec<MemberRow>>,
    /// The alarms this member's status reported (None: no status).
    alarms: Option<Vec<(u64, String)>>,
    /// Its client, for a member list asked after the fact.
    client: Option<Etcd>,
}

impl Observer {
    /// Build an observer: reads the kubeconfig (or infers one) and the etcd
    /// client certificates. Fails on configuration errors only; nothing is
    /// contacted yet.
    pub async fn new(topology: Topology, config: ObserverConfig) -> Result<Observer, Error> {
        let kube_config =
            crate::kube_config_in(config.kubeconfig.as_deref(), config.kube_context.as_deref())
                .await?;
        let kube_error = |e| Error::KubeConfig {
            path: config.kubeconfig.clone(),
            source: Box::new(e),
        };
        let kube_tls = if kube_config.proxy_url.is_none() {
            use kube::client::ConfigExt as _;
            Some(kube_config.rustls_client_config().map_err(kube_error)?)
        } else {
            None
        };
        let (kube, kube_conn) =
            crate::client_and_version(kube_config.clone(), kube_tls.clone()).map_err(kube_error)?;
        let tls = &config.etcd_tls.resolve(&topology);
        let ca = read_file(&tls.ca)?;
        let cert = read_file(&tls.cert)?;
        let key = read_file(&tls.key)?;
        let source = config.prometheus_source(&topology).map(|p| {
            let ca = match &p.ca_file {
                Some(f) => Some(
                    std::fs::read(f)
                        .map_err(|e| format!("Prometheus CA file {}: {e}", f.display()))?,
                ),
                None => None,
            };
            crate::prometheus::Prometheus::new(&p.url, ca.as_deref(), config.deadline)
        });
        let metrics = config.etcd_latency_window.map(|_| {
            crate::etcd_latency::MetricsReader::new(&ca, &cert, &key, config.member_timeout)
        });
        let etcd_tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key));
        let http = match &config.prometheus_url {
            Some(url) => Some(
                reqwest::Client::builder()
                    .timeout(config.deadline)
                    .build()
                    .map_err(|e| Error::BadUrl {
                        what: "prometheus",
                        url: crate::redact_url(url).into_owned(),
                        reason: crate::redact_urls_in(&e.to_string()).into_owned(),
                    })?,
            ),
            None => None,
        };
        Ok(Observer {
            topology,
            config,
            kube,
            kube_conn,
            kube_config,
            kube_tls,
            etcd_tls,
            http,
            metrics,
            kept: Default::default(),
            source,
        })
    }

    /// The Kubernetes client this observer uses.
    pub fn client(&self) -> &kube::Client {
        &self.kube
    }

    /// The topology observed.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Forget the etcd metrics kept from earlier observations: the next
    /// judges `etcd-latency` over a window of its own.
    pub fn forget_latency_reads(&self) {
        self.kept.forget();
    }

    /// The configuration.
    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    /// An etcd client for one endpoint, with the observer's TLS settings and
    /// its member timeout on connecting and on every call.
    pub(crate) async fn etcd_client(&self, url: &str) -> Result<Etcd, String> {
        let opts = ConnectOptions::new()
            .with_tls(self.etcd_tls.clone())
            .with_connect_timeout(self.config.member_timeout)
            .with_timeout(self.config.member_timeout);
        let shown = crate::redact_url(url).into_owned();
        within(
            Instant::now() + self.config.member_timeout,
            &format!("connect {shown}"),
            Etcd::connect([url], Some(opts)),
        )
        .await
    }

    /// Observe now. Never fails: what could not be observed before the
    /// deadline is recorded in `probeErrors`.
    pub async fn observe(&self) -> ClusterState {
        self.observe_timed().await.0
    }

    /// Observe now with reads of this shape (see [`Reads`]).
    pub async fn observe_reads(&self, reads: Reads<'_>) -> ClusterState {
        Box::pin(self.observe_shaped(reads)).await.0
    }

    /// Observe now with reads of this shape, and say how long each probe
    /// took.
    pub async fn observe_reads_timed(&self, reads: Reads<'_>) -> (ClusterState, Timings) {
        Box::pin(self.observe_shaped(reads)).await
    }

    /// Observe now, and say how long each probe took (for `--timings`).
    pub async fn observe_timed(&self) -> (ClusterState, Timings) {
        // Boxed: the observation's future is large for a caller's stack.
        Box::pin(self.observe_shaped(Reads::Cluster)).await
    }

    /// The probes, and alongside them (when configured) the etcd members'
    /// latency over its window: the observation then lasts the window.
    async fn observe_shaped(&self, reads: Reads<'_>) -> (ClusterState, Timings) {
        if let Some(source) = &self.source {
            return self.observe_with_prometheus(reads, source).await;
        }
        let (Some(window), Some(metrics)) = (self.config.etcd_latency_window, &self.metrics) else {
            return self.probes(reads).await;
        };
        let endpoints = self.config.etcd_endpoints(&self.topology);
        let latency = async {
            match metrics {
                Ok(m) => m.observe(&endpoints, window, &self.kept).await,
                Err(e) => crate::etcd_latency::unreadable(&endpoints, window, e),
            }
        };
        let ((mut state, t), mut latency) = tokio::join!(self.probes(reads), latency);
        crate::etcd_latency::name_members(&mut latency, state.etcd.as_ref());
        state.etcd_latency = Some(latency);
        (state, t)
    }

    /// The probes, and alongside them (when the policy asks) etcd's
    /// latency over its window and the masters' disks, from Prometheus:
    /// its history holds the window, nothing waits.
    async fn observe_with_prometheus(
        &self,
        reads: Reads<'_>,
        source: &Result<crate::prometheus::Prometheus, String>,
    ) -> (ClusterState, Timings) {
        let endpoints = self.config.etcd_endpoints(&self.topology);
        let masters: Vec<(String, String)> = self
            .topology
            .nodes
            .iter()
            .filter(|n| n.is_control_plane())
            .map(|n| (n.name.clone(), n.address.to_string()))
            .collect();
        let window = self.config.etcd_latency_window;
        let latency = async {
            let window = window?;
            Some(match source {
                Ok(p) => p.etcd_latency(&endpoints, window).await,
                Err(e) => crate::etcd_latency::unreadable(&endpoints, window, e),
            })
        };
        let disks = async {
            if !self.config.master_disks {
                return None;
            }
            Some(match source {
                Ok(p) => {
                    p.master_disks(&masters, crate::masters::ETCD_DATA_DIR)
                        .await
                }
                Err(e) => crate::prometheus::unreadable_disks(&masters, e),
            })
        };
        let ((mut state, t), latency, disks) = tokio::join!(self.probes(reads), latency, disks);
        if let Some(mut latency) = latency {
            if let Err(e) = source {
                latency.source = format!("prometheus ({e})");
            }
            crate::etcd_latency::name_members(&mut latency, state.etcd.as_ref());
            state.etcd_latency = Some(latency);
        }
        state.masters = disks;
        (state, t)
    }

    async fn probes(&self, reads: Reads<'_>) -> (ClusterState, Timings) {
        let t0 = Instant::now();
        let timings = std::sync::Mutex::new(Vec::new());
        let mark = |what: String| {
            if let Ok(mut t) = timings.lock() {
                t.push((what, t0.elapsed()));
            }
        };
        let started = jiff::Timestamp::now();
        let until = Instant::now() + self.config.deadline;
        let mut state = ClusterState::empty(started);

        let cached = reads.cached();
        let lp = if cached {
            ListParams::default().match_any()
        } else {
            ListParams::default()
        };
        let (node_api, pod_api, pdb_api, ds_api) = (
            Api::<Node>::all(self.kube.clone()),
            Api::<Pod>::all(self.kube.clone()),
            Api::<PodDisruptionBudget>::all(self.kube.clone()),
            Api::<DaemonSet>::all(self.kube.clone()),
        );
        let cm_api =
            Api::<ConfigMap>::namespaced(self.kube.clone(), &self.config.kill_switch.namespace);
        let lease_api = Api::<Lease>::namespaced(self.kube.clone(), &self.config.lock.namespace);
        let (kill_what, lock_what) = (
            format!("get configmap {}", self.config.kill_switch),
            format!("get lease {}", self.config.lock),
        );
        // The Kubernetes reads share one TLS connection. The first (the node
        // list) opens it, and the connector says which HTTP version it
        // speaks: over HTTP/2 the other reads go together (with `/readyz`
        // for the endpoint when the kubeconfig points at it) as soon as the
        // connection is up, over HTTP/1.1 one after another on the
        // kept-alive connection: one handshake either way. A connection kept
        // from an earlier observation (the sentinel) answers the node list
        // first, and the HTTP version it last saw decides. etcd, the other
        // apiservers, the load balancer and Prometheus are probed alongside.
        let endpoint = format!("https://{}", self.topology.control_plane_endpoint.socket());
        let kube_is_endpoint = same_url(&self.kube_config.cluster_url.to_string(), &endpoint);
        let kube_reads = async {
            let nodes = async {
                let r = within(until, "list nodes", node_api.list(&lp)).await;
                mark("list nodes".into());
                r
            };
            let ready = async {
                if !kube_is_endpoint {
                    return false;
                }
                let r = readyz(&self.kube, until).await;
                mark("readyz endpoint (kubeconfig server)".into());
                r
            };
            // (pods for the DaemonSets, Some(pods for the PDBs) when not the same).
            let pods = Box::pin(async {
                let Reads::Node { name, .. } = reads else {
                    let r = within(until, "list pods", pod_api.list(&lp))
                        .await
                        .map(|l| l.items);
                    mark("list pods".into());
                    return (r, None);
                };
                let on_node = lp.clone().fields(&format!("spec.nodeName={name}"));
                let (ds, own) = tokio::join!(self.daemon_set_pods(&ds_api, &lp, until), async {
                    within(
                        until,
                        &format!("list pods on {name}"),
                        pod_api.list(&on_node),
                    )
                    .await
                    .map(|l| l.items)
                });
                mark("list pods".into());
                (ds, Some(own))
            });
            let pdbs = async {
                let r = within(until, "list poddisruptionbudgets", pdb_api.list(&lp)).await;
                mark("list pdbs".into());
                r
            };
            let kill = async {
                let r = within(
                    until,
                    &kill_what,
                    get_opt(&cm_api, &self.config.kill_switch.name, cached),
                )
                .await;
                mark("get kill-switch".into());
                r
            };
            let lock = async {
                let r = within(
                    until,
                    &lock_what,
                    get_opt(&lease_api, &self.config.lock.name, cached),
                )
                .await;
                mark("get lock".into());
                r
            };
            let mut established = self.kube_conn.established.clone();
            established.borrow_and_update();
            let mut nodes = std::pin::pin!(nodes);
            let answered_first = tokio::select! {
                biased;
                r = &mut nodes => Some(r),
                _ = established.changed() => None,
            };
            let h2 = self.kube_conn.h2.load(std::sync::atomic::Ordering::Relaxed);
            let rest = async {
                if h2 {
                    tokio::join!(ready, pods, pdbs, kill, lock)
                } else {
                    (ready.await, pods.await, pdbs.await, kill.await, lock.await)
                }
            };
            let (nodes, (ready, pods, pdbs, kill, lock)) = match answered_first {
                Some(nodes) => (nodes, rest.await),
                // The node list goes first in the join: its poll puts the
                // new connection in the pool before the others look there.
                None if h2 => tokio::join!(nodes, rest),
                None => {
                    let nodes = nodes.await;
                    (nodes, rest.await)
                }
            };
            (ready, (nodes, pods, pdbs, kill, lock))
        };
        let ((kube_ready, (nodes, pods, pdbs, kill, lock)), etcd, apis, alerts, lb) = tokio::join!(
            kube_reads,
            async {
                let r = self.etcd(until, &mark).await;
                mark("etcd".into());
                r
            },
            async {
                let r = self.apiservers(until, &mark, kube_is_endpoint).await;
                mark("readyz".into());
                r
            },
            async {
                let r = self.alerts(until).await;
                if r.is_some() {
                    mark("alerts".into());
                }
                r
            },
            async {
                let r = crate::observe_load_balancer(
                    &self.topology,
                    self.config.lb_runtime_api.as_ref(),
                    until,
                )
                .await;
                if r.is_some() {
                    mark("load balancer".into());
                }
                r
            },
        );

        let mut nodes: Option<Vec<NodeState>> = match nodes {
            Ok(list) => Some(list.items.iter().map(node_state).collect()),
            Err(e) => {
                state.probe_errors.insert(Probe::Nodes, e);
                None
            }
        };
        let (ds_pods, own_pods) = pods;
        match (&mut nodes, &ds_pods) {
            (Some(ns), Ok(pods)) => {
                for n in ns.iter_mut() {
                    n.daemon_set_pods_not_running = Some(
                        self.config
                            .daemonsets
                            .iter()
                            .filter(|ds| !daemon_pod_running(pods, ds, &n.name))
                            .cloned()
                            .collect(),
                    );
                }
            }
            (_, Err(e)) => {
                state.probe_errors.insert(Probe::DaemonSets, e.clone());
            }
            (None, Ok(_)) => {}
        }
        // The pods the PodDisruptionBudgets are matched against: every pod,
        // or (one node's reads) that node's own.
        let (pdb_pods, only) = match (&own_pods, &reads) {
            (Some(own), Reads::Node { name, .. }) => (own, Some(*name)),
            _ => (&ds_pods, None),
        };
        match (&mut nodes, pdb_pods, pdbs.as_ref()) {
            (_, Err(e), _) | (_, Ok(_), Err(e)) => {
                state.probe_errors.insert(Probe::Pdbs, e.clone());
            }
            (Some(ns), Ok(pods), Ok(pdbs)) => {
                let blocked = pdb_blocked(&pdbs.items, pods);
                for n in ns.iter_mut().filter(|n| only.is_none_or(|o| o == n.name)) {
                    n.pdb_blocked_pods = Some(blocked.get(&n.name).cloned().unwrap_or_default());
                }
            }
            (None, Ok(_), Ok(_)) => {}
        }
        if let Some((node, path)) = &self.config.reboot_required {
            match nodes
                .as_mut()
                .and_then(|ns| ns.iter_mut().find(|n| &n.name == node))
            {
                Some(n) => n.reboot_required = Some(path.exists()),
                None => {
                    state.probe_errors.insert(
                        Probe::RebootRequired,
                        format!(
                            "node `{node}` was not observed, so {} is not attributed",
                            path.display()
                        ),
                    );
                }
            }
        }
        state.nodes = nodes;
        let (etcd, alarm_error) = etcd;
        match etcd {
            Ok(e) => {
                state.etcd = Some(e);
                if let Some(e) = alarm_error {
                    state.probe_errors.insert(Probe::EtcdAlarms, e);
                }
            }
            Err(e) => {
                state.probe_errors.insert(Probe::Etcd, e);
            }
        }
        let mut apis = apis;
        if kube_is_endpoint {
            apis.via_endpoint = Some(kube_ready);
        }
        state.apiservers = Some(apis);
        match kill {
            Ok(cm) => state.kill_switch = Some(cm.is_some()),
            Err(e) => {
                state.probe_errors.insert(Probe::KillSwitch, e);
            }
        }
        match lock.and_then(|l| lock_state(l.as_ref())) {
            Ok(l) => state.lock = Some(l),
            Err(e) => {
                state.probe_errors.insert(Probe::Lock, e);
            }
        }
        match alerts {
            Some(Ok(a)) => state.alerts = Some(a),
            Some(Err(e)) => {
                state.probe_errors.insert(Probe::Alerts, e);
            }
            None => {}
        }
        match lb {
            Some(Ok(l)) => state.load_balancer = Some(l),
            Some(Err(e)) => {
                state.probe_errors.insert(Probe::LoadBalancer, e);
            }
            None => {}
        }
        state.finish_observation(&self.topology);
        let mut t = timings.into_inner().unwrap_or_default();
        t.sort_by_key(|(_, d)| *d);
        (state, Timings(t))
    }

    /// The pods of the DaemonSets the configuration names, each listed by
    /// its own selector in its namespace (none named: no request).
    async fn daemon_set_pods(
        &self,
        ds_api: &Api<DaemonSet>,
        lp: &ListParams,
        until: Instant,
    ) -> ProbeResult<Vec<Pod>> {
        if self.config.daemonsets.is_empty() {
            return Ok(Vec::new());
        }
        let all = within(until, "list daemonsets", ds_api.list(lp)).await?;
        let mut lists = Vec::new();
        for ds in all.items.iter().filter(|d| {
            d.metadata
                .name
                .as_ref()
                .is_some_and(|n| self.config.daemonsets.contains(n))
        }) {
            let ns = ds.metadata.namespace.clone().unwrap_or_default();
            let name = ds.metadata.name.clone().unwrap_or_default();
            let sel = ds
                .spec
                .as_ref()
                .map(|s| selector_query(&s.selector))
                .unwrap_or_default();
            let api = Api::<Pod>::namespaced(self.kube.clone(), &ns);
            let lp = lp.clone().labels(&sel);
            lists.push(async move {
                within(
                    until,
                    &format!("list pods of daemonset {ns}/{name}"),
                    api.list(&lp),
                )
                .await
            });
        }
        let mut pods = Vec::new();
        for l in futures::future::join_all(lists).await {
            pods.extend(l?.items);
        }
        Ok(pods)
    }

    /// `/readyz` on each master, and through the endpoint unless the
    /// kubeconfig's server is the endpoint (then the Kubernetes reads'
    /// first request answers it).
    async fn apiservers(
        &self,
        until: Instant,
        mark: &impl Fn(String),
        endpoint_done: bool,
    ) -> ApiserverState {
        let port = self
            .config
            .apiserver_port
            .unwrap_or(self.topology.control_plane_endpoint.port);
        let masters: Vec<_> = self
            .topology
            .nodes
            .iter()
            .filter(|n| n.is_control_plane())
            .collect();
        let per = masters.iter().map(|n| {
            let url = format!("https://{}", SocketAddr::new(n.address, port));
            async move {
                let ready = self.readyz_at(&url, until).await;
                mark(format!("readyz {}", n.name));
                (n.name.clone(), ready)
            }
        });
        let endpoint = format!("https://{}", self.topology.control_plane_endpoint.socket());
        let (per, via) = tokio::join!(futures::future::join_all(per), async {
            if endpoint_done {
                return None;
            }
            let ready = self.readyz_at(&endpoint, until).await;
            mark("readyz endpoint".into());
            Some(ready)
        });
        ApiserverState {
            per_node: per.into_iter().collect(),
            via_endpoint: via,
        }
    }

    /// `GET /readyz` on the apiserver at `url` with the kubeconfig's CA and
    /// credentials; anything but 200 before the deadline is "not ready".
    async fn readyz_at(&self, url: &str, until: Instant) -> bool {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return false;
        };
        let mut cfg = self.kube_config.clone();
        cfg.cluster_url = uri;
        match crate::client_and_version(cfg, self.kube_tls.clone()) {
            Ok((c, _)) => readyz(&c, until).await,
            Err(_) => false,
        }
    }

    async fn alerts(&self, until: Instant) -> Option<ProbeResult<Vec<Alert>>> {
        let base = self.config.prometheus_url.as_ref()?;
        let http = self.http.as_ref()?;
        let url = format!("{}/api/v1/alerts", base.trim_end_matches('/'));
        // Named in errors without its credentials.
        let shown = crate::redact_url(&url).into_owned();
        let fetch = async {
            let resp = http.get(&url).send().await?.error_for_status()?;
            resp.json::<serde_json::Value>().await
        };
        Some(
            within(until, &format!("GET {shown}"), fetch)
                .await
                .and_then(|v| {
                    let list = v["data"]["alerts"].as_array().ok_or_else(|| {
                        format!("GET {shown}: no data.alerts array in the answer")
                    })?;
                    Ok(list
                        .iter()
                        .filter(|a| a["state"] == "firing")
                        .map(|a| Alert {
                            name: a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            severity: a["labels"]["severity"].as_str().unwrap_or("").to_string(),
                        })
                        .collect())
                }),
        )
    }

    /// Probe one member: status (with the alarms it knows of), a quorum
    /// read (its health), and the member list when `ask_members`.
    async fn etcd_endpoint(&self, url: String, until: Instant, ask_members: bool) -> EndpointView {
        let member_until = until.min(Instant::now() + self.config.member_timeout);
        let mut view = EndpointView {
            url: url.clone(),
            ..Default::default()
        };
        let opts = ConnectOptions::new()
            .with_tls(self.etcd_tls.clone())
            .with_connect_timeout(self.config.member_timeout)
            .with_timeout(self.config.member_timeout);
        let shown = crate::redact_url(&url).into_owned();
        let client = match within(
            member_until,
            &format!("connect {shown}"),
            Etcd::connect([url.as_str()], Some(opts)),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                view.error = Some(e);
                return view;
            }
        };
        // The calls share the member's one HTTP/2 connection and run
        // together. A linearizable read needs the leader and a quorum: it is
        // the health check (`etcdctl endpoint health` does the same).
        let (mut c0, mut c1, c2) = (client.clone(), client.clone(), client.clone());
        let what = [
            format!("status {shown}"),
            format!("quorum read {shown}"),
            format!("member list {shown}"),
        ];
        let (status, read, list) = tokio::join!(
            within(member_until, &what[0], c0.status()),
            within(member_until, &what[1], c1.get("health", None)),
            async {
                if ask_members {
                    Some(member_list(c2, &what[2], member_until).await)
                } else {
                    None
                }
            },
        );
        view.client = Some(client);
        match status {
            Ok(s) => {
                view.member_id = s.header().map(|h| h.member_id());
                view.leader = Some(s.leader());
                view.raft_index = Some(s.raft_index());
                view.alarms = Some(s.errors().iter().filter_map(|e| status_alarm(e)).collect());
            }
            Err(e) => {
                view.error = Some(e);
                return view;
            }
        }
        match read {
            Ok(_) => view.healthy = true,
            Err(e) => view.error = Some(e),
        }
        view.members = list.and_then(Result::ok);
        view
    }

    /// The etcd section, and what became of the alarms (None: read;
    /// Some: why not).
    async fn etcd(
        &self,
        until: Instant,
        mark: &impl Fn(String),
    ) -> (ProbeResult<EtcdState>, Option<String>) {
        let endpoints = self.config.etcd_endpoints(&self.topology);
        if endpoints.is_empty() {
            return (
                Err(
                    "no etcd endpoints: the topology has no control-plane node and none were given"
                        .into(),
                ),
                None,
            );
        }
        // Alarms come from each member's status (its `errors`, as in
        // `etcdctl endpoint status`): the alarm store as that member applied
        // it, with no extra call. An `Alarm` request would be a raft
        // proposal even to read, one per gate on a polling sentinel. Every
        // member that answered is counted; if none did, alarms are unknown.
        // The member list is asked of the first member only (the others'
        // would say the same, at two more calls per gate); if it did not
        // answer, of the first member that did, afterwards.
        let mut views =
            futures::future::join_all(endpoints.into_iter().enumerate().map(|(i, u)| async move {
                let v = self.etcd_endpoint(u, until, i == 0).await;
                mark(format!("etcd {}", crate::redact_url(&v.url)));
                v
            }))
            .await;
        if views.iter().all(|v| v.members.is_none())
            && let Some(v) = views.iter_mut().skip(1).find(|v| v.member_id.is_some())
            && let Some(c) = v.client.clone()
        {
            let what = format!("member list {}", crate::redact_url(&v.url));
            match member_list(c, &what, until).await {
                Ok(m) => v.members = Some(m),
                Err(e) => {
                    v.error.get_or_insert(e);
                }
            }
            mark("etcd member list (again)".into());
        }
        let mut alarms: Vec<(u64, String)> = Vec::new();
        let mut answered = false;
        for a in views.iter().filter_map(|v| v.alarms.as_ref()) {
            answered = true;
            for x in a {
                if !alarms.contains(x) {
                    alarms.push(x.clone());
                }
            }
        }
        let alarm_error = (!answered).then(|| {
            "etcd alarms: no member answered its status, so its alarms are not known".to_string()
        });
        (self.etcd_state(&views, &alarms), alarm_error)
    }

    fn etcd_state(
        &self,
        views: &[EndpointView],
        alarms: &[(u64, String)],
    ) -> ProbeResult<EtcdState> {
        let Some(list) = views.iter().find_map(|v| v.members.as_ref()) else {
            let why: Vec<String> = views
                .iter()
                .map(|v| {
                    v.error
                        .clone()
                        .unwrap_or_else(|| format!("{}: no member list", crate::redact_url(&v.url)))
                })
                .collect();
            return Err(format!("no etcd endpoint answered: {}", why.join("; ")));
        };
        // The leader as seen by a member that passed the quorum read.
        let leader = views.iter().filter(|v| v.healthy).find_map(|v| v.leader);
        let members = list
            .iter()
            .map(|(id, name, peers, clients, learner)| {
                let view = views.iter().find(|v| v.member_id == Some(*id)).or_else(|| {
                    views
                        .iter()
                        .find(|v| clients.iter().any(|c| same_url(c, &v.url)))
                });
                EtcdMember {
                    id: MemberId(*id),
                    name: name.clone(),
                    peer_urls: peers.clone(),
                    client_urls: clients.clone(),
                    is_learner: *learner,
                    // A member we did not probe is not known; one that did
                    // not answer in time is unhealthy.
                    healthy: view.map(|v| v.healthy),
                    leader: leader == Some(*id),
                    raft_index: view.and_then(|v| v.raft_index),
                    alarms: alarms
                        .iter()
                        .filter(|(m, _)| m == id || *m == 0)
                        .map(|(_, a)| a.clone())
                        .collect(),
                }
            })
            .collect();
        Ok(EtcdState { members })
    }
}

/// The member list through one member's client.
async fn member_list(mut client: Etcd, what: &str, until: Instant) -> ProbeResult<Vec<MemberRow>> {
    within(until, what, client.member_list()).await.map(|ml| {
        ml.members()
            .iter()
            .map(|m| {
                (
                    m.id(),
                    m.name().to_string(),
                    m.peer_urls().to_vec(),
                    m.client_urls().to_vec(),
                    m.is_learner(),
                )
            })
            .collect()
    })
}

/// When each probe finished, from the start of one observation, earliest
/// first.
#[derive(Debug, Clone, Default)]
pub struct Timings(pub Vec<(String, std::time::Duration)>);

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (what, at)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{what} {:.1} ms", at.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// `GET /readyz` through `client`: whether it answered 200 before the
/// deadline.
async fn readyz(client: &kube::Client, until: Instant) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(kube::client::Body::empty()) else {
        return false;
    };
    let answer = async {
        let resp = client.send(req).await?;
        let ok = resp.status() == http::StatusCode::OK;
        // Read the body so the connection is free for the next request.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        Ok::<_, kube::Error>(ok)
    };
    matches!(timeout_at(until, answer).await, Ok(Ok(true)))
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn node_state(n: &Node) -> NodeState {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let spec = n.spec.as_ref();
    NodeState {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready: ready.and_then(|c| match c.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        }),
        ready_since: ready
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| to_jiff(&t.0)),
        cordoned: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| match &t.value {
                        Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
                        _ => format!("{}:{}", t.key, t.effect),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        reboot_required: None,
        daemon_set_pods_not_running: None,
        pdb_blocked_pods: None,
    }
}

fn daemon_pod_running(pods: &[Pod], ds: &str, node: &str) -> bool {
    pods.iter().any(|p| {
        let owned = p
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|os| os.iter().any(|o| o.kind == "DaemonSet" && o.name == ds));
        owned
            && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
}

/// Whether a label selector matches labels (matchLabels and matchExpressions).
fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let ml = sel
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let me = sel.match_expressions.as_ref().is_none_or(|es| {
        es.iter().all(|e| {
            let vals = e.values.clone().unwrap_or_default();
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| vals.contains(g)),
                "NotIn" => got.is_none_or(|g| !vals.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
    });
    ml && me
}

/// Pods (per node, `namespace/name`) selected by a PDB that allows no
/// disruption now.
fn pdb_blocked(pdbs: &[PodDisruptionBudget], pods: &[Pod]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pdb in pdbs {
        let allowed = pdb
            .status
            .as_ref()
            .map(|s| s.disruptions_allowed)
            .unwrap_or(0);
        if allowed > 0 {
            continue;
        }
        // An empty selector selects every pod in the namespace (policy/v1).
        let sel = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        for p in pods {
            if p.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && selects(&sel, &labels) {
                if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    out.entry(node)
                        .or_default()
                        .push(format!("{ns}/{}", p.metadata.name.as_deref().unwrap_or("")));
                }
            }
        }
    }
    out
}

fn lock_state(lease: Option<&Lease>) -> ProbeResult<LockState> {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Ok(LockState {
            holder: None,
            renewed_at: None,
            ttl: None,
        });
    };
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    Ok(LockState {
        renewed_at: spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(|t| to_jiff(&t.0)),
        // Kept after a failed rollback: held whatever its renew time.
        ttl: spec
            .lease_duration_seconds
            .filter(|_| {
                !lease
                    .and_then(|l| l.metadata.annotations.as_ref())
                    .is_some_and(|a| a.contains_key(crate::lock::KEPT_ANNOTATION))
            })
            .map(|s| hacore::units::Dur::secs(i64::from(s))),
        holder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, node: &str, phase: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn pdb(ns: &str, allowed: i32, selector: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": "b"},
            "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap()
    }

    #[test]
    fn selectors_follow_match_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "pg"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["db", "cache"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]}
            ]
        }))
        .unwrap();
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selects(&sel, &l(&[("app", "pg"), ("tier", "db")])));
        assert!(!selects(&sel, &l(&[("app", "pg"), ("tier", "web")])));
        assert!(!selects(
            &sel,
            &l(&[("app", "pg"), ("tier", "db"), ("canary", "1")])
        ));
        assert!(!selects(
            &sel,
            &l(&[("app", "pg"), ("tier", "db"), ("zone", "b")])
        ));
        assert!(!selects(&sel, &l(&[("tier", "db")])));
        // An unknown operator never matches (fail closed: the PDB blocks).
        let odd: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap();
        assert!(!selects(&odd, &l(&[("a", "2")])));
    }

    #[test]
    fn only_running_pods_under_a_pdb_allowing_nothing_block() {
        let pods = vec![
            pod(
                "db",
                "pg-0",
                "w1",
                "Running",
                serde_json::json!({"app": "pg"}),
            ),
            pod(
                "db",
                "pg-1",
                "w2",
                "Pending",
                serde_json::json!({"app": "pg"}),
            ),
            pod(
                "web",
                "pg-x",
                "w1",
                "Running",
                serde_json::json!({"app": "pg"}),
            ),
        ];
        let blocked = pdb_blocked(
            &[pdb(
                "db",
                0,
                serde_json::json!({"matchLabels": {"app": "pg"}}),
            )],
            &pods,
        );
        assert_eq!(blocked.get("w1").unwrap(), &["db/pg-0".to_string()]);
        assert!(!blocked.contains_key("w2"));
        let none = pdb_blocked(
            &[pdb(
                "db",
                1,
                serde_json::json!({"matchLabels": {"app": "pg"}}),
            )],
            &pods,
        );
        assert!(none.is_empty());
        // policy/v1: an empty selector selects every pod in the namespace.
        let all = pdb_blocked(&[pdb("web", 0, serde_json::json!({}))], &pods);
        assert_eq!(all.get("w1").unwrap(), &["web/pg-x".to_string()]);
    }

    #[test]
    fn node_conditions_taints_and_cordon() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m1"},
            "spec": {"unschedulable": true, "taints": [
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "etcd", "effect": "NoExecute"}
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown",
                "lastTransitionTime": "2026-05-21T12:00:00Z"}]}
        }))
        .unwrap();
        let s = node_state(&n);
        assert_eq!(s.ready, None, "Unknown is not Ready and not NotReady");
        assert_eq!(s.ready_since.unwrap().to_string(), "2026-05-21T12:00:00Z");
        assert!(s.cordoned);
        assert_eq!(
            s.taints,
            [
                "node-role.kubernetes.io/control-plane:NoSchedule",
                "dedicated=etcd:NoExecute"
            ]
        );
    }

    #[test]
    fn lease_to_lock_state() {
        assert_eq!(lock_state(None).unwrap().holder, None);
        let l: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l"},
            "spec": {"holderIdentity": "gate-1", "leaseDurationSeconds": 30,
                     "renewTime": "2026-05-21T12:00:00.000000Z"}
        }))
        .unwrap();
        let s = lock_state(Some(&l)).unwrap();
        assert_eq!(s.holder.as_deref(), Some("gate-1"));
        let at: jiff::Timestamp = "2026-05-21T12:00:29Z".parse().unwrap();
        assert_eq!(s.live_holder(at), Some("gate-1"));
        let later: jiff::Timestamp = "2026-05-21T12:00:30Z".parse().unwrap();
        assert_eq!(s.live_holder(later), None);
    }
}

#[cfg(test)]
mod describe_tests {
    use super::describe;

    #[tokio::test]
    async fn a_refused_etcd_connection_reads_as_its_cause_not_a_debug_dump() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The listener is gone: connecting is refused.
        let url = format!("http://127.0.0.1:{port}");
        let e = match etcd_client::Client::connect([url.as_str()], None).await {
            Err(e) => e,
            Ok(mut c) => c.status().await.unwrap_err(),
        };
        let got = describe(&e);
        assert!(got.contains("Connection refused"), "{got}");
        assert!(!got.contains("Os {"), "{got}");
        assert!(!got.contains("tonic::"), "{got}");
    }
}

#[cfg(test)]
mod status_alarm_tests {
    use super::status_alarm;

    #[test]
    fn alarms_are_read_from_status_errors_and_never_dropped() {
        let cases: [(&str, Option<(u64, &str)>); 7] = [
            // As etcd 3.4 writes them (gogo text form, trailing space).
            (
                "memberID:10276657743932975437 alarm:NOSPACE ",
                Some((10276657743932975437, "NOSPACE")),
            ),
            // Spaces after the colons, other order: still read.
            ("alarm: CORRUPT  memberID: 7", Some((7, "CORRUPT"))),
            // Not alarms.
            ("etcdserver: no leader", None),
            ("memberID:7 alarm:NONE", None),
            ("nomemberID:7 falarm:NOSPACE", None),
            // An alarm whose member cannot be read counts for every member.
            ("memberID:? alarm:NOSPACE", Some((0, "NOSPACE"))),
            // One whose name is missing keeps the whole text.
            ("memberID:7 alarm:", Some((7, "memberID:7 alarm:"))),
        ];
        for (text, want) in cases {
            let want = want.map(|(m, a)| (m, a.to_string()));
            assert_eq!(status_alarm(text), want, "{text:?}");
        }
    }
}
