//! The flags `disrupt` and `roll` share (and `drill --planned` and
//! `replace-master` borrow): what to do, how it is gated and locked,
//! which backends carry it out; turned into one `haops::disrupt::Request`
//! and `Backend`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hacore::disrupt::{DisruptAction, DisruptOptions};
use hacore::units::Dur;
use hacore::{Policy, Topology};
use haops::disrupt::{Request, Simulated};
use haops::events::Event;
use indicatif::ProgressBar;

use crate::Output;
use crate::args::parse_duration;

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
    /// The in-memory InMemoryCluster test double, persisted in
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
    #[command(flatten)]
    pub ssh: crate::args::SshArgs,
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
    pub silence: crate::args::silence::SilenceArgs,
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
        Ok(DisruptOptions {
            idle_bound: Dur(self.idle_bound.try_into().context("--idle-bound")?),
            drain: self.drain,
            first: self.first,
            // (`haops` accepts a single master's outage when the policy states it)
            accept_outage: false,
        })
    }

    /// The request these flags describe, the run being `hacli WHAT`.
    pub fn request(&self, action: &DisruptAction, what: &str) -> anyhow::Result<Request> {
        let policy = self
            .policy
            .as_deref()
            .map(Policy::named_or_file)
            .transpose()?;
        let identity = self.identity.clone().unwrap_or_else(|| {
            format!(
                "hacli-{what}@{}#{}",
                crate::args::hostname(),
                std::process::id()
            )
        });
        Ok(Request {
            options: self.options()?,
            resume: self.resume,
            dry_run: self.dry_run,
            lock_ttl: self.lock_ttl,
            silence: self.silence.silence(),
            ..Request::new(action, policy, identity)
        })
    }

    /// The backends: the live cluster reached with these flags, or the
    /// simulated one in `--sim-state` (else `default_state`).
    pub fn backend(&self, default_state: impl FnOnce() -> PathBuf) -> haops::disrupt::Backend {
        match self.backend {
            Backend::Live => haops::disrupt::Backend::Live(self.reach()),
            Backend::Simulated => haops::disrupt::Backend::Simulated(Simulated {
                state: self.sim_state.clone().unwrap_or_else(default_state),
                fail: self.sim_fail.clone(),
            }),
        }
    }

    /// How to reach the live cluster: `--kubeconfig`, `--etcd-*`, ... and
    /// the SSH flags.
    pub fn reach(&self) -> haops::Reach {
        let mut reach = self.live.reach();
        reach.ssh = self.ssh.reach();
        reach
    }

    /// Load the topology.
    pub fn load_topology(&self) -> anyhow::Result<Topology> {
        self.live.topology()
    }

    /// Everything `hacli WHAT` (`disrupt`, `roll`) hands to `haops`: the
    /// topology, the action (`kind` and the command after `--`), the
    /// request, and the backends (the simulated state in `default_state`
    /// unless `--sim-state`).
    pub fn prepare(
        &self,
        kind: Kind,
        command: &[String],
        what: &str,
        default_state: impl FnOnce() -> PathBuf,
    ) -> anyhow::Result<Prepared> {
        let topology = self.load_topology()?;
        let action = self.action(kind, command)?;
        let request = self.request(&action, what)?;
        let backend = self.backend(default_state);
        Ok(Prepared {
            topology,
            action,
            request,
            backend,
        })
    }
}

/// What a disruption or a roll is handed (`Common::prepare`).
pub struct Prepared {
    /// The declared cluster.
    pub topology: Topology,
    /// What is done to each node.
    pub action: DisruptAction,
    /// How it is gated, locked, silenced and run.
    pub request: Request,
    /// The live or the simulated backends.
    pub backend: haops::disrupt::Backend,
}

/// Run `f` with a spinner drawing its events (`progress`), cleared after.
pub fn with_spinner<R>(f: impl FnOnce(&mut dyn FnMut(Event)) -> R) -> R {
    let bar = ProgressBar::new_spinner();
    let result = f(&mut progress(&bar));
    bar.finish_and_clear();
    result
}

/// The simulated state file next to a disruption's journal.
pub fn sim_beside(journal: &Path) -> PathBuf {
    Simulated::beside(journal, Vec::new()).state
}

/// Progress on stderr, one line per event that matters: the steps on the
/// bar (a terminal's), notes and warnings always.
pub fn progress(bar: &ProgressBar) -> impl FnMut(Event) + '_ {
    use hacore::exec::Event as Step;
    move |e: Event| match e {
        Event::Step(Step::Step { id, title, .. }) => bar.set_message(format!("{id}: {title}")),
        Event::Step(Step::Skipped { id, why }) => bar.println(format!("skip {id}: {why}")),
        Event::Step(Step::WouldApply { id }) => bar.println(format!("would apply {id}")),
        Event::Step(Step::Done { id }) => bar.println(format!("done {id}")),
        Event::Step(Step::CertificateKey) | Event::Phase { .. } => {}
        Event::Step(Step::Failed { id, error }) => bar.println(format!("FAILED {id}: {error}")),
        Event::Step(Step::RollingBack { id }) => bar.println(format!("rolling back {id}")),
        Event::Note(line) => bar.suspend(|| eprintln!("{line}")),
        Event::Warning(line) => bar.suspend(|| eprintln!("warning: {line}")),
    }
}
