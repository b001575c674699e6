//! The flags `remove-master` and `replace-master` share, and what they
//! make of them (the reach settings, the run options).

use std::path::PathBuf;
use std::time::Duration;

use crate::Output;
use crate::args::{Backend, ProxmoxArgs, SshArgs, parse_duration};

/// Options shared by both commands.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The cluster as it is (`--topology`) and how to reach it.
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Live: how the hypervisor steps reach Proxmox.
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    /// Live: how the nodes are reached over SSH.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Live: how long the disruption lock lasts without renewal (covers the
    /// whole run).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Print the plan (text, or a document with -o json|yaml) and stop: nothing is touched.
    #[arg(long, conflicts_with = "resume")]
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
    /// Alertmanager silences for the alerts the run causes.
    #[command(flatten)]
    pub silence: crate::args::silence::SilenceArgs,
    /// The policy (built-in or file) whose `silence:` gives each node's matchers (the run is gated by `preflight`).
    #[arg(long, requires = "alertmanager_url")]
    pub silence_policy: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

impl Common {
    pub fn reach(&self) -> haops::Reach {
        haops::Reach {
            ssh: self.ssh.reach(),
            proxmox: self.proxmox.reach(),
            ..self.live.reach()
        }
    }

    pub fn run_options(&self, journal: PathBuf, backend: Backend) -> haops::master::RunOptions {
        haops::master::RunOptions {
            resume: self.resume,
            identity: self.identity.clone(),
            lock_ttl: self.lock_ttl,
            sim_state: self.sim_state.clone(),
            sim_fail: self.sim_fail.clone(),
            ..haops::master::RunOptions::new(journal, backend.into())
        }
    }
}
