//! How to reach the cluster (`--kubeconfig`, `--etcd-*`, ...): the flags
//! every live command flattens, turned into one `haops::Reach`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::topology::RuntimeApi;
use hacore::units::Dur;
use kubeadm::ObserverConfig;

/// Parse a duration such as `2s`, `500ms`, `30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("`{s}`: expected a duration such as 500ms, 2s, 30m"));
    }
    let d: Dur = s.parse()?;
    d.0.try_into()
        .map_err(|_| format!("`{s}`: a duration cannot be negative"))
}

/// How to reach the cluster. Its `Debug` is the observer configuration's,
/// which shows URLs without their credentials.
#[derive(clap::Args)]
pub struct LiveArgs {
    /// Topology file (YAML or JSON).
    #[arg(long, short = 't', env = "HACLI_TOPOLOGY")]
    pub topology: PathBuf,
    #[command(flatten)]
    pub kube: super::KubeArgs,
    /// Overall deadline for one observation; what has not answered by then is unknown.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// How long one etcd member may take (an unresponsive member is unhealthy).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub member_timeout: Duration,
    /// Kill-switch ConfigMap, namespace/name.
    #[arg(
        long,
        env = "HACLI_KILL_SWITCH",
        default_value = "kube-system/hacli-kill-switch"
    )]
    pub kill_switch: String,
    /// Disruption lock Lease, namespace/name.
    #[arg(
        long,
        env = "HACLI_LOCK",
        default_value = "kube-system/hacli-disruption-lock"
    )]
    pub lock_lease: String,
    /// DaemonSets whose pod must run on every node, comma-separated (the policy's `daemonsets` rule names them too).
    #[arg(long, value_delimiter = ',')]
    pub daemonsets: Vec<String>,
    /// Prometheus base URL for firing alerts; without it alerts are not observed.
    #[arg(long, env = "HACLI_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Prometheus base URL to read `etcd-latency` (etcd's histograms) and `master-disk` (node-exporter's file systems) from, instead of each member's /metrics and SSH; the topology's `prometheus.url` by default.
    #[arg(long, env = "HACLI_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// apiserver port on each master; the control-plane endpoint's by default.
    #[arg(long)]
    pub apiserver_port: Option<u16>,
    /// HAProxy runtime API of the load balancer, unix:/path or tcp:ADDR:PORT; the topology's `loadBalancer.runtimeApi` by default.
    #[arg(long, env = "HACLI_LB_RUNTIME_API", value_parser = parse_runtime_api)]
    pub lb_runtime_api: Option<RuntimeApi>,
    /// Directory of `hacli snapshot`'s etcd snapshots: where `snapshot` writes them, and where `gate`/`observe` read the newest verified one (for the `etcd-backup` rule).
    #[arg(long, env = "HACLI_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
}

impl std::fmt::Debug for LiveArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("LiveArgs");
        d.field("topology", &self.topology);
        match self.config(None) {
            Ok(c) => d.field("config", &c),
            Err(e) => d.field("config", &format_args!("invalid: {e}")),
        };
        d.finish()
    }
}

fn parse_runtime_api(s: &str) -> Result<RuntimeApi, String> {
    s.parse()
}

impl LiveArgs {
    /// These flags as the live operations' reach settings (clap has
    /// already applied the environment variables each flag names; the
    /// topology fills the rest, as `haops::reach` documents).
    pub fn reach(&self) -> haops::Reach {
        haops::Reach {
            deadline: self.deadline,
            member_timeout: self.member_timeout,
            kill_switch: self.kill_switch.clone(),
            lock_lease: self.lock_lease.clone(),
            daemonsets: self.daemonsets.clone(),
            prometheus_url: self.prometheus_url.clone(),
            prometheus: self.prometheus.clone(),
            apiserver_port: self.apiserver_port,
            lb_runtime_api: self.lb_runtime_api.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            ..self.kube.reach(haops::Reach::default())
        }
    }

    /// The observer configuration these flags describe.
    pub fn config(&self, policy: Option<&hacore::Policy>) -> anyhow::Result<ObserverConfig> {
        Ok(self.reach().observer_config(policy)?)
    }

    /// Load the topology, printing its warnings.
    pub fn topology(&self) -> anyhow::Result<hacore::Topology> {
        let (topo, warnings) = hacore::Topology::load(&self.topology)?;
        crate::print_warnings(&warnings.warnings);
        Ok(topo)
    }
}

/// A single-threaded runtime for one command (measured faster than a
/// two-worker one for a gate: the probes wait on I/O, not on each other).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// This host's name, for lock identities.
pub fn hostname() -> String {
    haops::journal::hostname()
}
