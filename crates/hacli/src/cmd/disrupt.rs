//! `hacli disrupt ACTION NODE`: one planned disruption (reboot, upgrade, or
//! a command) of one node, as a small plan run by the executor with a
//! journal, so it resumes: gate and lock, drain the node's backend, move
//! etcd leadership away, cordon and drain, act, wait until healthy, put the
//! backend back, uncordon, release the lock (hacore::disrupt).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hacore::disrupt::{self, DisruptAction, DisruptOptions, Gate, Report};
use hacore::exec::{self, Event};
use hacore::units::Dur;
use hacore::{Policy, Topology};
use indicatif::ProgressBar;

use crate::args::parse_duration;
use crate::{Exit, Output};

/// What to do to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Reboot it and wait until it is back.
    Reboot,
    /// `kubeadm upgrade apply --to` on the first master, `kubeadm upgrade node` elsewhere.
    Upgrade,
    /// Run the command given after `--`.
    Run,
}

/// Which backends carry the plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The in-memory SimulatedCluster test double, persisted in
    /// `--sim-state` (by default next to the journal): a rehearsal,
    /// nothing real is touched.
    Simulated,
    /// The live cluster: the Kubernetes API, etcd and the nodes over SSH
    /// (kubeadm's control-plane backend), the load balancer (its `manage`
    /// settings, else HAProxy's runtime API), the disruption Lease.
    Live,
}

/// Options shared by `disrupt` and `roll`.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// How to reach the live cluster (`--backend live`), and the topology.
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Live: how long the lock lasts without renewal (covers the whole
    /// disruption).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Live: the SSH private key for the nodes (else the topology's
    /// `ssh.identityFile`, ssh-agent, `~/.ssh/id_*`).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// Live: the SSH known_hosts file (else the topology's, `~/.ssh/known_hosts`).
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Live: record the SSH host key of a node or load balancer seen for the
    /// first time (said loudly) instead of refusing.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// A built-in policy name or a policy file; the action's built-in by
    /// default (`etcd-leader` never blocks: the plan moves leadership).
    #[arg(long, short = 'p')]
    pub policy: Option<String>,
    /// For upgrade: the version, e.g. v1.33.2.
    #[arg(long)]
    pub to: Option<String>,
    /// For upgrade: whether the (first) node runs `kubeadm upgrade apply`
    /// (default: the first master of the topology, or of the roll).
    #[arg(long)]
    pub first: Option<bool>,
    /// Evict the node's pods before the act (default: yes for reboot and
    /// upgrade, no for run).
    #[arg(long)]
    pub drain: Option<bool>,
    /// How long to wait for the drained backend's sessions to reach 0.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_bound: Duration,
    /// Continue a run whose journal already has entries.
    #[arg(long)]
    pub resume: bool,
    /// Observe and report what would be applied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Backends.
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// The simulated cluster's state file (read if it exists, written back).
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// Simulated backend: make operation OP fail on NODE (`OP/NODE`, e.g.
    /// `upgrade/m2`; repeatable).
    #[arg(long, value_name = "OP/NODE")]
    pub sim_fail: Vec<String>,
    /// Lock holder identity; by default `hacli-disrupt@HOST#PID`.
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Alertmanager silences for the alerts the disruption causes.
    #[command(flatten)]
    pub silence: super::silence::SilenceArgs,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// reboot, upgrade or run.
    #[arg(value_enum)]
    pub action: Kind,
    /// The node.
    pub node: String,
    /// For run: the command and its arguments, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
    /// The journal file (JSON lines, appended and synced before each action).
    #[arg(long)]
    pub journal: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

impl Common {
    /// The action these flags describe.
    pub fn action(&self, kind: Kind, command: &[String]) -> anyhow::Result<DisruptAction> {
        Ok(match kind {
            Kind::Reboot => DisruptAction::Reboot,
            Kind::Upgrade => DisruptAction::Upgrade {
                version: self
                    .to
                    .clone()
                    .context("upgrade needs --to vX.Y.Z, the version to upgrade to")?,
            },
            Kind::Run => DisruptAction::Run {
                command: command.to_vec(),
            },
        })
    }

    /// The disruption options these flags describe.
    pub fn options(&self) -> anyhow::Result<DisruptOptions> {
        let policy = match &self.policy {
            Some(p) => Some(Policy::named_or_file(p)?),
            None => None,
        };
        Ok(DisruptOptions {
            idle_bound: Dur(self.idle_bound.try_into().context("--idle-bound")?),
            drain: self.drain,
            first: self.first,
            accept_outage: policy.is_some_and(|p| disrupt::accepts_outage(&p)),
        })
    }

    /// The gate.
    pub fn gate(&self, action: &DisruptAction, what: &str) -> anyhow::Result<Gate> {
        let policy = match &self.policy {
            Some(p) => Policy::named_or_file(p)?,
            None => Policy::for_action(action.gate_action()),
        };
        Ok(Gate {
            policy,
            action: action.gate_action(),
            identity: self.identity.clone().unwrap_or_else(|| {
                format!(
                    "hacli-{what}@{}#{}",
                    crate::args::hostname(),
                    std::process::id()
                )
            }),
        })
    }

    /// Load the topology.
    pub fn load_topology(&self) -> anyhow::Result<Topology> {
        let (t, warnings) = Topology::load(&self.live.topology)?;
        crate::print_warnings(&warnings.warnings);
        Ok(t)
    }

    /// Where the rehearsal keeps the simulated cluster.
    pub fn rehearsal<'a>(&'a self, state: &'a Path) -> disrupt::Rehearsal<'a> {
        disrupt::Rehearsal {
            state,
            fail: &self.sim_fail,
            resume: self.resume,
        }
    }

    /// Options for the executor.
    pub fn exec_options(&self) -> exec::Options {
        exec::Options {
            dry_run: self.dry_run,
            confirm: Default::default(),
        }
    }
}

/// Progress on stderr, one line per event that matters.
pub fn progress(bar: &ProgressBar) -> impl FnMut(Event) + '_ {
    move |e: Event| match e {
        Event::Step { id, title, .. } => bar.set_message(format!("{id}: {title}")),
        Event::Skipped { id, why } => bar.println(format!("skip {id}: {why}")),
        Event::WouldApply { id } => bar.println(format!("would apply {id}")),
        Event::Done { id } => bar.println(format!("done {id}")),
        Event::CertificateKey => {}
        Event::Failed { id, error } => bar.println(format!("FAILED {id}: {error}")),
        Event::RollingBack { id } => bar.println(format!("rolling back {id}")),
    }
}

fn sim_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".sim.json");
    PathBuf::from(p)
}

/// Run. Exit 0 done (or dry run), 1 denied or failed (restored), 2 bad input.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let c = &a.common;
    let topology = c.load_topology()?;
    let action = c.action(a.action, &a.command)?;
    let gate = c.gate(&action, "disrupt")?;
    let sim_file = c.sim_state.clone().unwrap_or_else(|| sim_path(&a.journal));
    let plan = if c.backend == Backend::Live {
        Some(disrupt::plan(&topology, &action, &a.node, &c.options()?)?)
    } else {
        None
    };
    // Silenced until the lock would lapse: it covers the whole disruption.
    let silences = if c.dry_run {
        None
    } else {
        super::silence::start(
            &c.silence,
            &gate.policy,
            std::slice::from_ref(&a.node),
            &gate.identity,
            "disrupt",
            c.lock_ttl,
        )?
    };
    let bar = ProgressBar::new_spinner();
    if let Some(plan) = plan {
        let result = run_live(c, &topology, &plan, &a.node, &gate, &a.journal, &bar);
        bar.finish_and_clear();
        let report = super::silence::finish(silences, result)?;
        print_report(&report, c.output)?;
        return Ok(if report.ok() { Exit::Ok } else { Exit::Deny });
    }
    let result = disrupt::rehearse(
        &topology,
        &action,
        &a.node,
        &c.options()?,
        &gate,
        &a.journal,
        &c.rehearsal(&sim_file),
        &c.exec_options(),
        &mut progress(&bar),
    );
    bar.finish_and_clear();
    let report = super::silence::finish(silences, result.map_err(anyhow::Error::from))?;
    print_report(&report, c.output)?;
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

fn print_report(r: &Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => crate::print_json(r)?,
        Output::Text => outln!("{}", r.summary()),
    }
    Ok(())
}

/// Open a disruption's journal, refusing one that already records a run
/// unless `--resume` (or `--dry-run`).
pub fn open_journal(c: &Common, journal: &Path) -> anyhow::Result<exec::FileJournal> {
    let journal_file = exec::FileJournal::open(journal)?;
    if !hacore::exec::Journal::records(&journal_file).is_empty() && !c.resume && !c.dry_run {
        anyhow::bail!(
            "{} already records a run: pass --resume to continue it, or use a new journal",
            journal.display()
        );
    }
    Ok(journal_file)
}

/// The live backends of planned disruptions, for any node of the topology
/// (one set serves a whole roll): the observer and the disruption Lease,
/// kubeadm's control plane (the Kubernetes API, etcd, the nodes over SSH),
/// the load balancer (its `manage` settings, else HAProxy's runtime API).
pub fn live_backends(
    c: &Common,
    topology: &Topology,
    gate: &Gate,
) -> anyhow::Result<kubeadm::live::DisruptBackends> {
    let config = c.live.config(Some(&gate.policy))?;
    let lb = pfsense::lb::for_disruption(
        topology,
        &pfsense::lb::LbOptions {
            runtime_api: c.live.lb_runtime_api.clone(),
            accept_new_host_key: c.accept_new_host_key,
            ..Default::default()
        },
    )?;
    let cp = kubeadm::control_plane::ControlPlaneOptions {
        accept_new_host_key: c.accept_new_host_key,
        known_hosts: c.ssh_known_hosts.clone(),
        identity_file: c.ssh_identity.clone(),
        ..Default::default()
    };
    Ok(kubeadm::live::DisruptBackends::connect(
        topology, config, cp, c.lock_ttl, lb,
    )?)
}

/// Run `plan` on the live cluster: gate and lock (the Lease), the
/// executor with the journal, release.
pub fn run_live(
    c: &Common,
    topology: &Topology,
    plan: &hacore::plan::Plan,
    node: &str,
    gate: &Gate,
    journal: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Report> {
    let mut journal_file = open_journal(c, journal)?;
    let mut live = live_backends(c, topology, gate)?;
    Ok(live.with(|b, lock| {
        disrupt::run(
            plan,
            node,
            gate,
            b,
            lock,
            &mut journal_file,
            &c.exec_options(),
            &mut progress(bar),
        )
    })?)
}
