//! `hacli drill NODE`: the failover drill. Constant read traffic through
//! the control-plane endpoint (the VIP) while NODE is disrupted, the load
//! balancer watched; the measurements as text, JSON (`-o json`, schema
//! `hacli.drill/v1`) and an HTML page with a timeline chart (`--html`).
//! The sequence is `kubeadm::drill::run`; this file only turns flags into
//! its configuration and a disruption, and renders the report.
//!
//! Exit codes: 0 the drill ran and met its target (unplanned: the longest
//! gap within `fall × interval + interval`; planned: no failed request),
//! 1 refused by the gate, or the target was missed, 2 bad input, 3 the
//! drill could not be carried out (not healthy before, the disruption or
//! the restore failed, no recovery).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kubeadm::drill::{Disruption, DrillConfig, DrillReport, LbWatch};
use kubeadm::traffic::{Connections, TrafficConfig};

use super::hypervisor::ProxmoxArgs;
use super::live::{LiveArgs, parse_duration};
use crate::{Exit, Output};

/// What an unplanned drill kills instead of powering the VM off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kill {
    /// The kube-apiserver process on the node, over SSH (kubelet restarts it).
    Apiserver,
}

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("kind").args(["planned", "unplanned"])))]
pub struct Args {
    /// The master to disrupt.
    pub node: String,
    /// A planned disruption (drain the backend, move etcd leadership,
    /// reboot, wait, ready): `hacli disrupt reboot NODE`'s sequence.
    #[arg(long)]
    pub planned: bool,
    /// An unplanned disruption (the default): power the node's VM off
    /// through Proxmox (hard stop) and on again after `--down-for`; or,
    /// with `--kill apiserver`, kill its apiserver over SSH.
    #[arg(long)]
    pub unplanned: bool,
    /// Kill a process instead of powering the VM off (unplanned only).
    #[arg(long, value_enum, conflicts_with = "planned")]
    pub kill: Option<Kill>,
    /// Read requests per second through the endpoint.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Total traffic time (longer if the node takes longer to come back).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Traffic before the disruption.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub baseline: Duration,
    /// How long a powered-off VM stays off.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub down_for: Duration,
    /// Traffic after the node's backend is UP again, at least.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub after: Duration,
    /// How long to wait for the node's backend to come UP again.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// Each request's deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The path read (an authenticated read served from etcd).
    #[arg(long, default_value = "/api/v1/namespaces/kube-system")]
    pub path: String,
    /// One connection kept alive for all requests (a controller's view)
    /// instead of a fresh TCP+TLS connection per request (a CLI's view, the
    /// default: through a TCP-mode load balancer each connection is routed
    /// on its own).
    #[arg(long)]
    pub keep_alive: bool,
    /// Write an HTML page with the timeline chart and the summary here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Do NOT ask the gate first (the drill disrupts a master: without the
    /// gate, nothing checks that the others can carry the cluster).
    #[arg(long)]
    pub skip_gate: bool,
    /// Gate policy (a built-in name or a file); `reboot`'s by default.
    #[arg(long, short = 'p')]
    pub policy: Option<String>,
    /// SSH user for `--kill apiserver`.
    #[arg(long, default_value = "root")]
    pub ssh_user: String,
    /// SSH port for `--kill apiserver`.
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    /// SSH private key for `--kill apiserver` (default: OpenSSH's keys and the agent).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts for `--kill apiserver` (default ~/.ssh/known_hosts; host keys are checked).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Use sudo for the kill.
    #[arg(long)]
    pub ssh_sudo: bool,
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Power the VM off through Proxmox (a hard stop, as a crash), on again
/// at restore.
struct PowerOff {
    client: proxmox::Client,
    hypervisor: String,
    vmid: u32,
    stopped: bool,
}

const TASK_DEADLINE: Duration = Duration::from_secs(120);

impl Disruption for PowerOff {
    fn describe(&self) -> String {
        format!(
            "power off VM {} on {} (Proxmox hard stop)",
            self.vmid, self.hypervisor
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let until = tokio::time::Instant::now() + TASK_DEADLINE;
        let upid = self
            .client
            .stop(&self.hypervisor, self.vmid)
            .await
            .map_err(|e| e.to_string())?;
        self.stopped = true;
        self.client
            .wait_task(&upid, until)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
    async fn restore(&mut self) -> Result<(), String> {
        if !self.stopped {
            return Ok(());
        }
        let until = tokio::time::Instant::now() + TASK_DEADLINE;
        let upid = self
            .client
            .start(&self.hypervisor, self.vmid)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .wait_task(&upid, until)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Kill the apiserver process over SSH; kubelet restarts it.
struct KillApiserver {
    ssh: ssh::Config,
}

impl Disruption for KillApiserver {
    fn describe(&self) -> String {
        format!(
            "kill -9 kube-apiserver on {} over SSH (kubelet restarts it)",
            self.ssh.target.describe()
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let s = ssh::Session::connect(&self.ssh)
            .await
            .map_err(|e| e.to_string())?;
        let cmd = ssh::Cmd::new("pkill").args(["-KILL", "-x", "kube-apiserver"]);
        let out = s
            .run(&cmd, Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string());
        s.close().await;
        let out = out?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: `pkill -KILL -x kube-apiserver` found no process to kill (exit {:?}); is the apiserver running there? {}",
                self.ssh.target.describe(),
                out.status,
                out.stderr_str().trim()
            ))
        }
    }
    async fn restore(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn holds(&self) -> bool {
        false
    }
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    if a.planned {
        eprintln!(
            "hacli drill --planned: not available in this build: it runs `hacli disrupt reboot {}`'s sequence, which has not landed yet; use --unplanned",
            a.node
        );
        return Ok(Exit::Usage);
    }
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 1000.0) {
        bail!("--rate {}: give 0 < requests per second <= 1000", a.rate);
    }
    let topology = a.live.topology()?;
    let Some(node) = topology.nodes.iter().find(|n| n.name == a.node) else {
        bail!(
            "{}: no node `{}` in the topology (nodes: {})",
            a.live.topology.display(),
            a.node,
            topology
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if !node.is_control_plane() {
        bail!(
            "{}: a drill disrupts a master; `{}` is a worker",
            a.live.topology.display(),
            a.node
        );
    }
    let mode = match a.kill {
        Some(Kill::Apiserver) => "unplanned-kill-apiserver",
        None => "unplanned-poweroff",
    };
    let lb_api = a
        .live
        .lb_runtime_api
        .clone()
        .or_else(|| topology.load_balancer.runtime_api.clone());
    let lb = match (
        topology.has_load_balancer(),
        lb_api,
        &topology.load_balancer.pool,
    ) {
        (true, Some(api), Some(pool)) => Some(LbWatch {
            api,
            pool: pool.clone(),
            server: a.node.clone(),
            fall: topology.load_balancer.health_check.fall,
            interval: topology
                .load_balancer
                .health_check
                .interval
                .0
                .try_into()
                .unwrap_or(Duration::from_secs(2)),
        }),
        (true, _, _) => {
            eprintln!(
                "warning: the load balancer is not watched: set loadBalancer.runtimeApi and loadBalancer.pool in the topology (or --lb-runtime-api); DOWN/UP times and the gap bound will be missing"
            );
            None
        }
        (false, _, _) => None,
    };

    // The gate: is it safe to take this master down now?
    let live = if a.skip_gate {
        eprintln!(
            "WARNING: --skip-gate: disrupting {} without asking the gate (nothing checks that the other masters can carry the cluster)",
            a.node
        );
        a.live
    } else {
        let gate = super::gate::Args {
            action: "reboot".into(),
            target: a.node.clone(),
            live: a.live,
            policy: a.policy.clone(),
            lock: false,
            move_leader: false,
            lock_ttl: Duration::from_secs(1800),
            identity: None,
            timings: false,
            output: Output::Text,
        };
        let verdict = super::gate::decide(&gate)?;
        if !verdict.allowed() {
            eprint!("{}", crate::render::verdict(&verdict));
            eprintln!(
                "hacli drill: the gate does not allow taking {} down now; nothing was disrupted",
                a.node
            );
            return Ok(verdict.decision.into());
        }
        gate.live
    };

    let cfg = DrillConfig {
        node: a.node.clone(),
        mode: mode.into(),
        endpoint: format!("https://{}", topology.control_plane_endpoint.socket()),
        traffic: TrafficConfig {
            rate: a.rate,
            path: a.path.clone(),
            timeout: a.request_timeout,
            connections: if a.keep_alive {
                Connections::KeepAlive
            } else {
                Connections::Fresh
            },
        },
        duration: a.duration,
        baseline: a.baseline,
        down_for: a.down_for,
        after: a.after,
        recovery_timeout: a.recovery_timeout,
        lb,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let kube = rt.block_on(kubeadm::kube_config(live.kubeconfig.as_deref()))?;
    let progress = |line: &str| eprintln!("drill: {line}");
    let result = match a.kill {
        Some(Kill::Apiserver) => {
            let mut ssh = ssh::Config::new(&node.name, node.address.to_string(), &a.ssh_user)
                .port(a.ssh_port)
                .sudo(a.ssh_sudo);
            if let Some(k) = &a.ssh_identity {
                ssh = ssh.key(k);
            }
            if let Some(k) = &a.known_hosts {
                ssh = ssh.known_hosts(k);
            }
            rt.block_on(kubeadm::drill::run(
                kube,
                cfg,
                KillApiserver { ssh },
                progress,
            ))
        }
        None => {
            let (Some(hv), Some(vmid)) = (&node.hypervisor, node.vmid) else {
                bail!(
                    "{}: node `{}` needs `hypervisor` (the Proxmox node) and `vmid` to be powered off; or use --kill apiserver",
                    live.topology.display(),
                    a.node
                );
            };
            let client = a.proxmox.client_for(Some(&topology))?;
            rt.block_on(kubeadm::drill::run(
                kube,
                cfg,
                PowerOff {
                    client,
                    hypervisor: hv.clone(),
                    vmid,
                    stopped: false,
                },
                progress,
            ))
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e @ kubeadm::Error::NotHealthy { .. }) => {
            eprintln!("hacli drill: {e}");
            return Ok(Exit::Unknown);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = &a.html {
        std::fs::write(path, super::drill_html::page(&report))
            .with_context(|| format!("writing --html {}", path.display()))?;
        eprintln!("drill: wrote {}", path.display());
    }
    match a.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => out!("{}", summary(&report)),
    }
    Ok(exit_of(&report))
}

/// 3 when the drill could not be carried out; else 1 when it missed its
/// target; else 0.
pub fn exit_of(r: &DrillReport) -> Exit {
    if r.disruption.error.is_some() {
        return Exit::Unknown;
    }
    let planned = r.mode.starts_with("planned");
    let met = if planned {
        r.total.failed == 0
    } else {
        r.bound.as_ref().is_none_or(|b| b.gap_within)
    };
    if met { Exit::Ok } else { Exit::Deny }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn at(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} s", v / 1000.0))
        .unwrap_or_else(|| "not seen".into())
}

/// The text summary.
pub fn summary(r: &DrillReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "drill {} on {}: {} ({} req/s of GET {} through {}, {} connections)",
        r.mode,
        r.node,
        r.disruption.action,
        r.rate,
        r.path,
        r.endpoint,
        match r.connections {
            Connections::Fresh => "fresh",
            Connections::KeepAlive => "kept-alive",
        }
    );
    let _ = writeln!(
        s,
        "requests: {} sent, {} failed{}",
        r.total.sent,
        r.total.failed,
        if r.total.errors.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                r.total
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        s,
        "longest stretch with no successful answer: {:.1} ms (from {:.2} s to {:.2} s)",
        r.longest_gap.ms,
        r.longest_gap.from_ms / 1000.0,
        r.longest_gap.to_ms / 1000.0
    );
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>7} {:>10} {:>10}",
        "window", "sent", "failed", "p50", "p99"
    );
    for (name, w) in [
        ("before", &r.before),
        ("during", &r.during),
        ("after", &r.after),
    ] {
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>7} {:>10} {:>10}",
            name,
            w.sent,
            w.failed,
            opt_ms(w.p50_ms),
            opt_ms(w.p99_ms)
        );
    }
    let _ = writeln!(
        s,
        "disruption: began {:.2} s, over {:.2} s",
        r.disruption.start_ms / 1000.0,
        r.disruption.end_ms / 1000.0
    );
    if let Some(lb) = &r.lb {
        let _ = writeln!(
            s,
            "load balancer: {} DOWN at {}, UP again at {} (pool {}, polled every {:.0} ms)",
            lb.server,
            at(lb.down_ms),
            at(lb.up_ms),
            lb.pool,
            lb.poll_ms
        );
    }
    if let Some(b) = &r.bound {
        let _ = writeln!(
            s,
            "bound (fall × interval + interval = {}): {:.0} ms; longest gap {:.1} ms: {}",
            b.formula,
            b.bound_ms,
            b.gap_ms,
            if b.gap_within { "within" } else { "EXCEEDED" }
        );
        let _ = writeln!(
            s,
            "LB detection (disruption to DOWN): {}; failures seen for {}",
            opt_ms(b.detection_ms),
            opt_ms(b.failure_span_ms)
        );
    }
    if let Some(e) = &r.disruption.error {
        let _ = writeln!(s, "error: {e}");
    }
    s
}
