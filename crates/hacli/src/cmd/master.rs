//! `hacli remove-master NODE` and `hacli replace-master OLD NEW`: take a
//! master out for good, or replace it (the new master joins first), the way
//! Cluster API does (hacore::replace). Steps that would leave etcd without
//! quorum, or with an even number of voters for good, are refused with the
//! reason. `--dry-run` prints the plan and touches nothing.
//!
//! `--backend simulated` rehearses the plan; `--backend live` carries it out
//! on the real systems: Proxmox (the topology's `proxmox:` section, the
//! `--proxmox*` flags, PROXMOX_VE_API_TOKEN), the load balancer
//! (`loadBalancer.manage`, else its runtime API), kubeadm over SSH, the
//! Kubernetes API and etcd, gated and under the disruption Lease, with a
//! journal so a stopped run resumes (`--resume`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hacore::backend::{BackendError, LoadBalancer};
use hacore::disrupt::{self, DisruptOptions, Gate, Rehearsal, Report};
use hacore::exec::{self, Event};
use hacore::plan::Plan;
use hacore::units::Dur;
use hacore::{Action, Policy, Topology};
use indicatif::ProgressBar;

use super::disrupt::Backend;
use crate::args::parse_duration;
use crate::{Exit, Output};

/// Options shared by both commands.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The topology file of the cluster as it is (`--topology`), and how
    /// to reach it (`--backend live`).
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Live: how the hypervisor steps reach Proxmox (over the topology's
    /// `proxmox:` section; token in PROXMOX_VE_API_TOKEN).
    #[command(flatten)]
    pub proxmox: super::hypervisor::ProxmoxArgs,
    /// Live: the SSH private key for the nodes (else the topology's
    /// `ssh.identityFile`, ssh-agent, `~/.ssh/id_*`).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// Live: the SSH known_hosts file (else the topology's, `~/.ssh/known_hosts`).
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Live: record the SSH host key of a node (a new master, say) or load
    /// balancer seen for the first time (said loudly) instead of refusing.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Live: how long the disruption lock lasts without renewal (covers the
    /// whole run).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Print the plan (text, or JSON with -o json) and stop: nothing is touched.
    #[arg(long)]
    pub dry_run: bool,
    /// The journal file; needed unless --dry-run.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Continue a run whose journal already has entries.
    #[arg(long)]
    pub resume: bool,
    /// Backends; needed unless --dry-run.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// The simulated cluster's state file (default: next to the journal).
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// Simulated backend: make operation OP fail on NODE (`OP/NODE`).
    #[arg(long, value_name = "OP/NODE")]
    pub sim_fail: Vec<String>,
    /// How long to wait for the drained backend's sessions to reach 0.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_bound: Duration,
    /// Lock holder identity; by default `hacli-master@HOST:JOURNAL` (the
    /// journal's absolute path: a resumed run holds the lock again).
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// Alertmanager silences for the alerts the run causes (the matchers
    /// from --silence-policy's `silence:` section).
    #[command(flatten)]
    pub silence: super::silence::SilenceArgs,
    /// The policy (a built-in name or a file) whose `silence:` section
    /// gives each node's matchers (the run itself is gated by `preflight`).
    #[arg(long, requires = "alertmanager_url")]
    pub silence_policy: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// `remove-master` arguments.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The master to remove.
    pub node: String,
    #[command(flatten)]
    pub common: Common,
}

/// `replace-master` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplaceArgs {
    /// The master to replace.
    pub old: String,
    /// The new master (described in --target).
    pub new: String,
    /// Topology file of the cluster after the replacement: NEW with its
    /// address, hypervisor, VM id and size; OLD gone.
    #[arg(long)]
    pub target: PathBuf,
    /// VM id of the template the new master is cloned from.
    #[arg(long)]
    pub template: Option<u32>,
    /// Keep the masters apart with a Proxmox HA rule, NEW in OLD's place.
    #[command(flatten)]
    pub ha: super::placement::HaArgs,
    /// OLD is powered off or unreachable: nothing is asked of it (no
    /// drain, no reset); its etcd member goes first, by id, only when the
    /// observed cluster keeps quorum through the removal and NEW's join.
    #[command(flatten)]
    pub dead: super::remediate::DeadArgs,
    #[command(flatten)]
    pub common: Common,
}

fn load(path: &std::path::Path) -> anyhow::Result<Topology> {
    let (t, warnings) = Topology::load(path)?;
    crate::print_warnings(&warnings.warnings);
    Ok(t)
}

fn execute(c: &Common, plan: &Plan, node: &str, silenced: &[String]) -> anyhow::Result<Exit> {
    if c.dry_run {
        match c.output {
            Output::Json => crate::print_json(plan)?,
            Output::Text => out!("{}", plan.to_text()),
        }
        return Ok(Exit::Ok);
    }
    let journal = c
        .journal
        .clone()
        .context("--journal FILE is needed to run the plan (or --dry-run to print it)")?;
    let Some(backend) = c.backend else {
        anyhow::bail!(
            "--backend live (or simulated, a rehearsal) is needed to run the plan (or --dry-run to print it)"
        );
    };
    let gate = gate(c, &journal);
    let silences = match &c.silence_policy {
        Some(p) => {
            let from = Policy::named_or_file(p)?;
            // Checked against the run's own `alerts` rule too.
            let silence = from.silence.clone();
            let policy = Policy {
                silence,
                ..gate.policy.clone()
            };
            if let Some(s) = &policy.silence {
                let refused = s.check(policy.rules.alerts.as_ref());
                if let Some(d) = refused.first() {
                    anyhow::bail!("--silence-policy {p}: {}: {}", d.path, d.message);
                }
            }
            super::silence::start(
                &c.silence,
                &policy,
                silenced,
                &gate.identity,
                "master",
                c.lock_ttl,
            )?
        }
        None if c.silence.alertmanager_url.is_some() => anyhow::bail!(
            "--alertmanager-url needs --silence-policy POLICY: its `silence:` section gives each node's matchers"
        ),
        None => None,
    };
    if backend == Backend::Live {
        let bar = ProgressBar::new_spinner();
        let result = run_live(c, plan, node, &gate, &journal, &bar);
        bar.finish_and_clear();
        return finish(c, super::silence::finish(silences, result)?);
    }
    let state = c.sim_state.clone().unwrap_or_else(|| {
        let mut p = journal.as_os_str().to_owned();
        p.push(".sim.json");
        PathBuf::from(p)
    });
    let files = Rehearsal {
        state: &state,
        fail: &c.sim_fail,
        resume: c.resume,
    };
    let bar = ProgressBar::new_spinner();
    let result = disrupt::rehearse_plan(
        plan,
        node,
        &gate,
        &journal,
        &files,
        &exec::Options::default(),
        &mut progress(&bar),
    );
    bar.finish_and_clear();
    finish(
        c,
        super::silence::finish(silences, result.map_err(anyhow::Error::from))?,
    )
}

fn finish(c: &Common, report: Report) -> anyhow::Result<Exit> {
    match c.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => outln!("{}", report.summary()),
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

/// The gate before the run: the cluster is healthy now (preflight), the
/// lock held by this identity. By default the identity names this host and
/// the journal: a run resumed after a crash (same journal) takes the lock
/// its first run still holds, instead of waiting out its TTL; another run
/// (another journal) is denied.
fn gate(c: &Common, journal: &Path) -> Gate {
    Gate {
        policy: Policy::builtin("preflight").expect("built-in"),
        action: Action::Drain,
        identity: c.identity.clone().unwrap_or_else(|| {
            let journal = std::path::absolute(journal).unwrap_or_else(|_| journal.to_path_buf());
            format!(
                "hacli-master@{}:{}",
                crate::args::hostname(),
                journal.display()
            )
        }),
    }
}

/// Progress on stderr, one line per event that matters (on a terminal
/// above the spinner, else as plain lines for a log).
fn progress(bar: &ProgressBar) -> impl FnMut(Event) + '_ {
    let say = move |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    move |e: Event| match e {
        Event::Step { id, title, .. } => {
            if bar.is_hidden() {
                eprintln!("{id}: {title}");
            } else {
                bar.set_message(format!("{id}: {title}"));
            }
        }
        Event::Skipped { id, why } => say(format!("skip {id}: {why}")),
        Event::WouldApply { id } => say(format!("would apply {id}")),
        Event::Done { id } => say(format!("done {id}")),
        Event::CertificateKey => say("uploaded a fresh certificate key".into()),
        Event::Failed { id, error } => say(format!("FAILED {id}: {error}")),
        Event::RollingBack { id } => say(format!("rolling back {id}")),
    }
}

/// A load balancer the plan cannot reach (no `manage`, no runtime API):
/// a plan without load-balancer steps never calls it.
struct NoLoadBalancer;

impl LoadBalancer for NoLoadBalancer {
    fn is_done(&mut self, op: &hacore::backend::LbOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!(
            "{op:?}: the topology's loadBalancer has neither `manage` nor `runtimeApi`"
        )))
    }
    fn apply(&mut self, op: &hacore::backend::LbOp) -> Result<(), BackendError> {
        self.is_done(op).map(|_| ())
    }
}

/// Run `plan` on the live systems: gate (the cluster as it is), the
/// disruption Lease, the executor with the journal, release.
fn run_live(
    c: &Common,
    plan: &Plan,
    node: &str,
    gate: &Gate,
    journal: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Report> {
    let config = c.live.config(Some(&gate.policy))?;
    let mut journal_file = exec::FileJournal::open(journal)?;
    if !exec::Journal::records(&journal_file).is_empty() && !c.resume {
        anyhow::bail!(
            "{} already records a run: pass --resume to continue it, or use a new journal",
            journal.display()
        );
    }
    // Before anything: the VMs the plan creates or deletes, against the
    // Proxmox cluster as it is now (only VMs hacli created are deleted).
    let owner = super::apply::owner(plan, journal, exec::Journal::records(&journal_file));
    let refusals = super::apply::proxmox_refusals(plan, &c.proxmox, &owner)?;
    if !refusals.is_empty() {
        return Ok(Report::Denied {
            node: node.into(),
            reasons: refusals
                .into_iter()
                .map(|r| format!("the Proxmox cluster as it is now: {r}"))
                .collect(),
        });
    }
    // The Lease lives in the cluster as it is.
    let lock_observer = kubeadm::live::LiveObserver::new(&plan.from, config.clone())
        .context("the cluster (kubeconfig, etcd certificates)")?;
    let mut lock = lock_observer.lock(c.lock_ttl)?;
    // Each gate observes the nodes that exist when it runs (the new master
    // once it has joined, the old one until it is gone).
    let mut observer =
        kubeadm::LiveObserver::new(config.clone()).context("starting the observer's runtime")?;
    let cp_opts = kubeadm::control_plane::ControlPlaneOptions {
        kubeconfig: config.kubeconfig.clone(),
        etcd_endpoints: config.etcd_endpoints.clone(),
        etcd_tls: config.etcd_tls.clone(),
        apiserver_port: config.apiserver_port,
        accept_new_host_key: c.accept_new_host_key,
        known_hosts: c.ssh_known_hosts.clone(),
        identity_file: c.ssh_identity.clone(),
        ..Default::default()
    };
    let mut cp = kubeadm::control_plane::KubeadmControlPlane::from_topology(&plan.to, &cp_opts)
        .context("the control plane (kubeconfig, etcd certificates, ssh:)")?;
    let runtime_api = c
        .live
        .lb_runtime_api
        .clone()
        .or_else(|| plan.to.load_balancer.runtime_api.clone());
    let mut lb: Box<dyn LoadBalancer> = if plan.to.load_balancer.manage.is_some() {
        let opts = pfsense::lb::LbOptions {
            runtime_api: runtime_api.clone(),
            accept_new_host_key: c.accept_new_host_key,
            ..Default::default()
        };
        let lb = pfsense::lb::LbBackend::from_topology(&plan.to, &opts)
            .context("the topology's loadBalancer")?;
        eprintln!("load balancer: {}", lb.describe());
        Box::new(lb)
    } else if let Some(api) = runtime_api {
        Box::new(pfsense::lb::runtime::RuntimeLb::new(
            api,
            plan.to.load_balancer.health_check.clone(),
            Duration::from_secs(60),
        )?)
    } else {
        Box::new(NoLoadBalancer)
    };
    let mut hv = super::apply::live_hypervisor(plan, &c.proxmox, owner)?;
    let mut b = hacore::backend::Backends {
        hypervisor: &mut *hv,
        load_balancer: lb.as_mut(),
        control_plane: &mut cp,
        observer: &mut observer,
        clock: &kubeadm::live::Wall,
    };
    Ok(disrupt::run(
        plan,
        node,
        gate,
        &mut b,
        &mut lock,
        &mut journal_file,
        &exec::Options::default(),
        &mut progress(bar),
    )?)
}

fn options(c: &Common) -> anyhow::Result<DisruptOptions> {
    Ok(DisruptOptions {
        idle_bound: Dur(c.idle_bound.try_into().context("--idle-bound")?),
        ..Default::default()
    })
}

/// Run `remove-master`. Exit 0 done (or planned with --dry-run), 1 refused
/// or stopped, 2 bad input.
pub fn run_remove(a: RemoveArgs) -> anyhow::Result<Exit> {
    let topology = load(&a.common.live.topology)?;
    match hacore::replace::remove_master(&topology, &a.node, &options(&a.common)?) {
        Ok(plan) => execute(&a.common, &plan, &a.node, std::slice::from_ref(&a.node)),
        Err(r) => {
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            Ok(Exit::Deny)
        }
    }
}

/// Run `replace-master`. Exit 0 done (or planned with --dry-run), 1
/// refused or stopped, 2 bad input.
pub fn run_replace(a: ReplaceArgs) -> anyhow::Result<Exit> {
    let current = load(&a.common.live.topology)?;
    let target = load(&a.target)?;
    let plan_opts = hacore::plan::Options {
        template: a.template,
    };
    let planned = if a.dead.dead {
        let state = a.dead.state(&a.common.live, &current)?;
        hacore::replace::replace_dead_master(&current, &target, &a.old, &a.new, &state, &plan_opts)
    } else {
        hacore::replace::replace_master(
            &current,
            &target,
            &a.old,
            &a.new,
            &plan_opts,
            &options(&a.common)?,
        )
    };
    match planned {
        Ok(plan) => execute(
            &a.common,
            &a.ha.apply(plan),
            &a.old,
            &[a.old.clone(), a.new.clone()],
        ),
        Err(r) => {
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            Ok(Exit::Deny)
        }
    }
}
