//! `hacli drill NODE`: the failover drill. Constant read traffic through
//! the control-plane endpoint (the VIP) while NODE is disrupted, the load
//! balancer watched; the measurements as text, JSON (`-o json`, schema
//! `hacli.drill/v1`) and an HTML page with a timeline chart (`--html`).
//! The sequence is `kubeadm::drill::run`; this file only turns flags into
//! its configuration and a disruption, and renders the report.
//!
//! `--planned` disrupts the node with `hacli disrupt reboot NODE`'s plan
//! (gate and lock, drain the backend, move etcd leadership away, cordon
//! and drain, reboot, wait until healthy, backend ready, uncordon,
//! release), run on the live cluster with its journal while the traffic
//! goes; the report adds the plan's steps on the drill's time axis, where
//! etcd leadership went and the lock holder.
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

use crate::args::ProxmoxArgs;
use crate::args::{LiveArgs, parse_duration};
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
    /// Planned (required with --planned): the disruption's journal (JSON
    /// lines); an interrupted disruption resumes with `hacli disrupt reboot
    /// NODE --backend live --resume --journal FILE`.
    #[arg(long, value_name = "FILE", requires = "planned")]
    pub journal: Option<PathBuf>,
    /// Planned: how long the disruption lock lasts without renewal (covers
    /// the whole disruption).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Planned: the lock holder identity; by default `hacli-drill@HOST#PID`.
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// Planned: record the SSH host key of a node or the load balancer seen
    /// for the first time (said loudly) instead of refusing.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Planned: how long to wait for the drained backend's sessions to reach 0.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_bound: Duration,
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
    /// gate, nothing checks that the others can carry the cluster). Not
    /// with --planned: a planned disruption is always gated.
    #[arg(long, conflicts_with = "planned")]
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
    /// SSH private key for `--kill apiserver` and `--planned` (default: the
    /// topology's `ssh.identityFile`, OpenSSH's keys and the agent).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts for `--kill apiserver` and `--planned` (default: the
    /// topology's, ~/.ssh/known_hosts; host keys are checked).
    #[arg(long, visible_alias = "ssh-known-hosts")]
    pub known_hosts: Option<PathBuf>,
    /// Use sudo for the kill.
    #[arg(long)]
    pub ssh_sudo: bool,
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Planned: Alertmanager silences for the alerts the disruption causes.
    #[command(flatten)]
    pub silence: super::silence::SilenceArgs,
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
    if a.planned && a.journal.is_none() {
        bail!(
            "--planned needs --journal FILE: the planned disruption of {} is `hacli disrupt reboot {}`'s plan, run with a journal so an interrupted run can be resumed",
            a.node,
            a.node
        );
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
    let mode = match (a.planned, a.kill) {
        (true, _) => "planned-reboot",
        (false, Some(Kill::Apiserver)) => "unplanned-kill-apiserver",
        (false, None) => "unplanned-poweroff",
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

    // The gate: is it safe to take this master down now? (A planned
    // disruption moves etcd leadership itself: `etcd-leader` does not
    // block it, as in `hacli disrupt`.)
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
        let blocking: Vec<&hacore::verdict::Finding> = verdict
            .blocking()
            .filter(|f| !(a.planned && moved_by_the_plan(f)))
            .collect();
        if !blocking.is_empty() {
            eprint!("{}", crate::render::verdict(&verdict));
            eprintln!(
                "hacli drill: the gate does not allow taking {} down now; nothing was disrupted",
                a.node
            );
            let deny = blocking
                .iter()
                .any(|f| f.severity == hacore::verdict::Severity::Deny);
            return Ok(if deny { Exit::Deny } else { Exit::Unknown });
        }
        if a.planned && !verdict.allowed() {
            eprintln!(
                "drill: the gate's etcd-leader rule denies: {} leads etcd; the planned disruption moves leadership away first",
                a.node
            );
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
    let mut planned_out = None;
    let result = match a.kill {
        _ if a.planned => {
            let common = crate::args::disrupt::Common {
                live,
                lock_ttl: a.lock_ttl,
                ssh_identity: a.ssh_identity.clone(),
                ssh_known_hosts: a.known_hosts.clone(),
                accept_new_host_key: a.accept_new_host_key,
                policy: a.policy.clone(),
                to: None,
                first: None,
                drain: None,
                idle_bound: a.idle_bound,
                resume: false,
                dry_run: false,
                backend: crate::args::disrupt::Backend::Live,
                sim_state: None,
                sim_fail: Vec::new(),
                identity: a.identity.clone(),
                output: Output::Text,
                silence: a.silence.clone(),
            };
            let action = hacore::disrupt::DisruptAction::Reboot;
            let plan = hacore::disrupt::plan(&topology, &action, &a.node, &common.options()?)?;
            let gate = common.gate(&action, "drill")?;
            let journal = a.journal.clone().context("--journal")?;
            let config = common.live.config(Some(&gate.policy))?;
            eprintln!(
                "drill: the planned disruption runs under the lock as {}, journal {}",
                gate.identity,
                journal.display()
            );
            let out = std::sync::Arc::new(std::sync::Mutex::new(PlannedRun::default()));
            planned_out = Some((out.clone(), gate.identity.clone(), journal.clone()));
            let silences = super::silence::start(
                &common.silence,
                &gate.policy,
                std::slice::from_ref(&a.node),
                &gate.identity,
                "drill",
                a.lock_ttl,
            )?;
            let planned = Planned {
                job: Some(PlannedJob {
                    common,
                    topology: topology.clone(),
                    plan,
                    gate,
                    journal,
                }),
                node: a.node.clone(),
                config,
                out,
            };
            let r = rt.block_on(kubeadm::drill::run(kube, cfg, planned, progress));
            if let Some(s) = silences {
                s.finish();
            }
            r
        }
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
    let mut report = match result {
        Ok(r) => r,
        Err(e @ kubeadm::Error::NotHealthy { .. }) => {
            eprintln!("hacli drill: {e}");
            return Ok(Exit::Unknown);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((out, holder, journal)) = planned_out {
        let run = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
        report.planned = Some(run.into_report(report.started_at, holder, &journal));
    }
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
    if r.planned.as_ref().is_some_and(|p| p.result == "denied") {
        return Exit::Deny;
    }
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
            "load balancer: {} out of rotation (DOWN, DRAIN or MAINT) at {}, UP again at {} (pool {}, polled every {:.0} ms)",
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
    if let Some(p) = &r.planned {
        let _ = writeln!(
            s,
            "planned disruption: {} (lock holder {}, journal {})",
            p.summary, p.lock_holder, p.journal
        );
        let l = &p.leadership;
        let who = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let _ = if l.moved {
            writeln!(
                s,
                "etcd leadership: moved from {} to {} at {} (leader after the move: {}; after the disruption: {})",
                who(&l.before),
                who(&l.expected_to),
                at(l.moved_at_ms),
                who(&l.after_move),
                who(&l.after)
            )
        } else {
            writeln!(
                s,
                "etcd leadership: not moved (leader {} before, {} after)",
                who(&l.before),
                who(&l.after)
            )
        };
        if let Some(e) = &l.error {
            let _ = writeln!(s, "etcd leadership: {e}");
        }
        for st in &p.steps {
            let _ = writeln!(
                s,
                "  {:<32} started {:>9} done {:>9}{}{}{}",
                st.id,
                at(st.started_ms),
                at(st.done_ms),
                if st.skipped { " (already so)" } else { "" },
                st.error
                    .as_ref()
                    .map(|e| format!(" FAILED: {e}"))
                    .unwrap_or_default(),
                if st.rolled_back { " (rolled back)" } else { "" }
            );
        }
    }
    if let Some(e) = &r.disruption.error {
        let _ = writeln!(s, "error: {e}");
    }
    s
}

/// Whether a gate finding is one the planned disruption's plan takes care
/// of itself: `etcd-leader`'s deny (the plan moves leadership first).
fn moved_by_the_plan(f: &hacore::verdict::Finding) -> bool {
    f.rule == hacore::rules::etcd_leader::ID && f.severity == hacore::verdict::Severity::Deny
}

/// What the planned disruption needs to run (moved to its thread).
struct PlannedJob {
    common: crate::args::disrupt::Common,
    topology: hacore::Topology,
    plan: hacore::plan::Plan,
    gate: hacore::disrupt::Gate,
    journal: PathBuf,
}

/// What the planned disruption did, gathered while it ran.
#[derive(Default)]
struct PlannedRun {
    report: Option<Result<hacore::disrupt::Report, String>>,
    leadership: kubeadm::drill::PlannedLeadership,
    records: Vec<hacore::exec::Record>,
}

impl PlannedRun {
    /// The report's section, times on the drill's axis.
    fn into_report(
        self,
        started_at: jiff::Timestamp,
        holder: String,
        journal: &std::path::Path,
    ) -> kubeadm::drill::PlannedReport {
        use hacore::disrupt::Report;
        use hacore::exec::{Outcome, Record};
        let rel = |t: &jiff::Timestamp| t.duration_since(started_at).as_secs_f64() * 1000.0;
        let mut steps: Vec<kubeadm::drill::PlannedStep> = Vec::new();
        let mut leadership = self.leadership;
        for r in &self.records {
            match r {
                Record::Started { step: id, at } => {
                    let st = step_of(&mut steps, id);
                    st.started_ms = Some(rel(at));
                }
                Record::Done {
                    step: id,
                    at,
                    skipped,
                } => {
                    let st = step_of(&mut steps, id);
                    st.done_ms = Some(rel(at));
                    st.skipped = *skipped;
                    if id.ends_with("/move-leader") && !skipped {
                        leadership.moved = true;
                        leadership.moved_at_ms = Some(rel(at));
                    }
                }
                Record::Failed {
                    step: id, error, ..
                } => {
                    let st = step_of(&mut steps, id);
                    st.error = Some(error.clone());
                }
                Record::RolledBack { step: id, .. } => {
                    let st = step_of(&mut steps, id);
                    st.rolled_back = true;
                }
                _ => {}
            }
        }
        let (result, summary, lock_released, json) = match &self.report {
            Some(Ok(r)) => {
                let result = match r {
                    Report::Denied { .. } => "denied",
                    Report::Ran {
                        outcome: Outcome::Completed,
                        ..
                    } => "done",
                    Report::Ran { .. } => "failed",
                };
                let released = match r {
                    Report::Ran { lock_released, .. } => Some(*lock_released),
                    Report::Denied { .. } => None,
                };
                (result, r.summary(), released, serde_json::to_value(r).ok())
            }
            Some(Err(e)) => ("failed", e.clone(), None, None),
            None => (
                "failed",
                "the disruption did not run".to_string(),
                None,
                None,
            ),
        };
        kubeadm::drill::PlannedReport {
            result: result.into(),
            summary,
            report: json,
            journal: journal.display().to_string(),
            lock_holder: holder,
            lock_released,
            leadership,
            steps,
        }
    }
}

/// The entry of step `id`, added at the end the first time.
fn step_of<'a>(
    steps: &'a mut Vec<kubeadm::drill::PlannedStep>,
    id: &str,
) -> &'a mut kubeadm::drill::PlannedStep {
    let i = match steps.iter().position(|s| s.id == id) {
        Some(i) => i,
        None => {
            steps.push(kubeadm::drill::PlannedStep {
                id: id.into(),
                ..Default::default()
            });
            steps.len() - 1
        }
    };
    &mut steps[i]
}

/// `hacli disrupt reboot NODE`'s plan, run on the live cluster on a thread
/// of its own while the drill's traffic goes; the etcd leader observed
/// before, right after the move-leader step, and after.
struct Planned {
    job: Option<PlannedJob>,
    node: String,
    config: kubeadm::ObserverConfig,
    out: std::sync::Arc<std::sync::Mutex<PlannedRun>>,
}

/// The etcd leader (member name) now.
async fn etcd_leader(
    obs: &kubeadm::Observer,
) -> Result<(Option<String>, hacore::ClusterState), String> {
    let state = Box::pin(obs.observe()).await;
    if let Some(e) = state.probe_errors.get(&hacore::state::Probe::Etcd) {
        return Err(format!("etcd not observed: {e}"));
    }
    let leader = state
        .etcd
        .as_ref()
        .and_then(|e| e.members.iter().find(|m| m.leader))
        .map(hacore::rules::member_label);
    Ok((leader, state))
}

impl Disruption for Planned {
    fn describe(&self) -> String {
        format!(
            "planned reboot of {} (`hacli disrupt reboot {}`: drain the backend, move etcd leadership away, cordon, drain, reboot, wait until healthy, backend ready, uncordon)",
            self.node, self.node
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let Some(job) = self.job.take() else {
            return Err("the planned disruption already ran".into());
        };
        let mut errors = Vec::new();
        let obs = match kubeadm::Observer::new(job.topology.clone(), self.config.clone()).await {
            Ok(o) => Some(o),
            Err(e) => {
                errors.push(format!("observing the etcd leader: {e}"));
                None
            }
        };
        if let Some(obs) = &obs {
            match etcd_leader(obs).await {
                Ok((leader, state)) => {
                    let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                    out.leadership.before = leader;
                    if let Ok(hacore::disrupt::Leadership::Move { to, .. }) =
                        hacore::disrupt::leader_transfer(
                            &job.topology,
                            &state,
                            &self.node,
                            jiff::Timestamp::now(),
                        )
                    {
                        out.leadership.expected_to = Some(to);
                    }
                }
                Err(e) => errors.push(format!("before: {e}")),
            }
        }
        let journal = job.journal.clone();
        let node = self.node.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        // A thread of its own: the live backends run their own runtimes.
        std::thread::Builder::new()
            .name("planned-disruption".into())
            .spawn(move || {
                let r = job
                    .common
                    .run_plan(&job.plan, &node, &job.gate, &job.journal)
                    .map_err(|e| format!("{e:#}"));
                let _ = tx.send(r);
            })
            .map_err(|e| format!("starting the disruption's thread: {e}"))?;
        // Follow the journal: each step on stderr; the leader right after
        // the move-leader step.
        let mut shown = 0;
        let mut after_move_seen = false;
        let result = loop {
            let done = tokio::select! {
                r = &mut rx => Some(r.unwrap_or_else(|_| Err("the disruption's thread died".into()))),
                () = tokio::time::sleep(Duration::from_millis(250)) => None,
            };
            let records = std::fs::read_to_string(&journal)
                .ok()
                .and_then(|t| hacore::exec::parse_journal(&journal.display().to_string(), &t).ok())
                .unwrap_or_default();
            for r in records.iter().skip(shown) {
                if let Ok(line) = serde_json::to_string(r) {
                    eprintln!("drill: journal: {line}");
                }
            }
            shown = shown.max(records.len());
            let moved = records.iter().any(|r| {
                matches!(r, hacore::exec::Record::Done { step, skipped: false, .. } if step.ends_with("/move-leader"))
            });
            if moved && !after_move_seen {
                after_move_seen = true;
                if let Some(obs) = &obs {
                    match etcd_leader(obs).await {
                        Ok((leader, _)) => {
                            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                            out.leadership.after_move = leader;
                        }
                        Err(e) => errors.push(format!("after the move: {e}")),
                    }
                }
            }
            if let Some(r) = done {
                let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                out.records = records;
                break r;
            }
        };
        if let Some(obs) = &obs {
            match etcd_leader(obs).await {
                Ok((leader, _)) => {
                    self.out
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .leadership
                        .after = leader;
                }
                Err(e) => errors.push(format!("after: {e}")),
            }
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if !errors.is_empty() {
            out.leadership.error = Some(errors.join("; "));
        }
        out.report = Some(result.clone());
        match result {
            Ok(r) if r.ok() => Ok(()),
            Ok(r) => Err(r.summary()),
            Err(e) => Err(e),
        }
    }
    async fn restore(&mut self) -> Result<(), String> {
        // The plan restores what it changed itself (backend ready,
        // uncordon) when a step fails.
        Ok(())
    }
    fn holds(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::exec::{Outcome, Record};

    fn at(s: f64) -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs_f64(s)
    }

    #[test]
    fn the_planned_section_puts_the_journal_on_the_drills_time_axis() {
        let records = vec![
            Record::Begin {
                plan: "p".into(),
                at: at(10.0),
            },
            Record::Started {
                step: "reboot/m1/backend-drain".into(),
                at: at(10.5),
            },
            Record::Done {
                step: "reboot/m1/backend-drain".into(),
                at: at(10.6),
                skipped: false,
            },
            Record::Started {
                step: "reboot/m1/move-leader".into(),
                at: at(11.0),
            },
            Record::Done {
                step: "reboot/m1/move-leader".into(),
                at: at(11.25),
                skipped: false,
            },
            Record::Started {
                step: "reboot/m1/reboot".into(),
                at: at(12.0),
            },
            Record::Failed {
                step: "reboot/m1/reboot".into(),
                at: at(40.0),
                error: "no boot".into(),
            },
            Record::RolledBack {
                step: "reboot/m1/backend-drain".into(),
                at: at(41.0),
            },
        ];
        let run = PlannedRun {
            report: Some(Ok(hacore::disrupt::Report::Ran {
                node: "m1".into(),
                outcome: Outcome::RolledBack {
                    phase: "reboot/m1".into(),
                    step: "reboot/m1/reboot".into(),
                    error: "no boot".into(),
                },
                lock_released: true,
                release_error: None,
            })),
            leadership: kubeadm::drill::PlannedLeadership {
                before: Some("m1".into()),
                after_move: Some("m2".into()),
                ..Default::default()
            },
            records,
        };
        let p = run.into_report(at(10.0), "drill-m1".into(), std::path::Path::new("j"));
        assert_eq!(p.result, "failed");
        assert_eq!(p.lock_released, Some(true));
        assert_eq!(p.lock_holder, "drill-m1");
        assert!(
            p.summary.contains("FAILED at step reboot/m1/reboot"),
            "{}",
            p.summary
        );
        assert!(p.leadership.moved);
        assert_eq!(p.leadership.moved_at_ms, Some(1250.0));
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "reboot/m1/backend-drain",
                "reboot/m1/move-leader",
                "reboot/m1/reboot"
            ]
        );
        assert_eq!(p.steps[0].started_ms, Some(500.0));
        assert!(p.steps[0].rolled_back);
        assert_eq!(p.steps[2].error.as_deref(), Some("no boot"));
        assert_eq!(p.steps[2].done_ms, None);
        assert_eq!(p.report.as_ref().unwrap()["result"], "ran");

        // Denied: exit 1, whatever the disruption's error says.
        let denied = PlannedRun {
            report: Some(Ok(hacore::disrupt::Report::Denied {
                node: "m1".into(),
                reasons: vec!["lock (deny): the disruption lock is held by x".into()],
            })),
            ..Default::default()
        }
        .into_report(at(0.0), "d".into(), std::path::Path::new("j"));
        assert_eq!(denied.result, "denied");
        assert!(!denied.leadership.moved);
    }
}
