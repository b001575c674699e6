//! The remediation flags `hacli remediate` and `hacli sentinel --remediate`
//! share: the policy, the memory, and what a dead master is replaced with
//! (the flags `replace-master` has for the same run).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::args::{ProxmoxArgs, SshArgs, parse_duration};

/// The remediation policy and where its memory lives.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// A master is replaced once unhealthy (Node NotReady, etcd member
    /// unhealthy) for longer than this.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub unhealthy_for: Duration,
    /// At most this many attempts within --retry-period.
    #[arg(long, default_value_t = 2)]
    pub max_retries: u32,
    /// The window the retry budget counts in.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// How long after a remediation ends the next may start.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub min_healthy_period: Duration,
}

impl PolicyArgs {
    /// The policy.
    pub fn policy(&self) -> anyhow::Result<hacore::remediation::Policy> {
        let dur = |d: Duration, flag: &str| -> anyhow::Result<hacore::units::Dur> {
            Ok(hacore::units::Dur(
                d.try_into().with_context(|| flag.to_string())?,
            ))
        };
        Ok(hacore::remediation::Policy {
            unhealthy_for: dur(self.unhealthy_for, "--unhealthy-for")?,
            max_retries: self.max_retries,
            retry_period: dur(self.retry_period, "--retry-period")?,
            min_healthy_period: dur(self.min_healthy_period, "--min-healthy-period")?,
        })
    }
}

/// What a dead master is replaced with, and how the replacement reaches
/// Proxmox and the nodes.
#[derive(Debug, clap::Args)]
pub struct WithArgs {
    /// The spare master, one node as in a topology's `nodes:` (name, role:
    /// control-plane, address, hypervisor, vmid, size): it takes the dead
    /// master's place.
    #[arg(long, value_name = "FILE")]
    pub spare: Option<PathBuf>,
    /// VM id of the template the spare is cloned from.
    #[arg(long)]
    pub template: Option<u32>,
    /// The journal's base name: each attempt journals to `FILE.OLD.N`, and
    /// the topology after a replacement is written to `FILE.OLD.N.yaml`.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// How long to wait for a drained backend's sessions to reach 0.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_bound: Duration,
    /// Keep the masters apart with a Proxmox HA rule, the spare in the
    /// dead master's place.
    #[command(flatten)]
    pub ha: crate::args::placement::HaArgs,
    /// How the replacement reaches Proxmox.
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    /// How the replacement reaches the nodes over SSH.
    #[command(flatten)]
    pub ssh: SshArgs,
}

impl WithArgs {
    /// The replacement's settings (`flag`: the flag that asked to act,
    /// named when --spare or --journal is missing).
    pub fn act(
        &self,
        flag: &str,
        identity: Option<String>,
        lock_ttl: Duration,
    ) -> anyhow::Result<haops::remediate::Act> {
        let (Some(spare), Some(journal)) = (&self.spare, &self.journal) else {
            anyhow::bail!("{flag} needs --spare FILE and --journal FILE");
        };
        let text = std::fs::read_to_string(spare)
            .with_context(|| format!("--spare {}", spare.display()))?;
        let node: hacore::topology::Node =
            hacore::source::parse(&spare.display().to_string(), &text).context(
                "--spare: one node as in a topology's nodes: (name, role, address, hypervisor, vmid, ...)",
            )?;
        Ok(haops::remediate::Act {
            spare: node,
            template: self.template,
            idle_bound: self.idle_bound,
            ha_rule: self.ha.rule.clone(),
            run: haops::master::RunOptions {
                identity,
                lock_ttl,
                ..haops::master::RunOptions::new(journal, haops::apply::Backend::Live)
            },
        })
    }

    /// The reach settings: `live`'s, with Proxmox and SSH.
    pub fn reach(&self, live: &crate::args::LiveArgs) -> haops::Reach {
        haops::Reach {
            ssh: self.ssh.reach(),
            proxmox: self.proxmox.reach(),
            ..live.reach()
        }
    }
}

/// The flags of a remediation that acts.
#[derive(Debug, clap::Args)]
pub struct ActArgs {
    /// Carry a `replace` decision out: under the disruption lock, the
    /// cluster observed again right before it starts (a master that answers
    /// again is cancelled), `replace-master --dead` for it and --spare,
    /// journalled. Without it nothing is touched: the decision and the
    /// command are printed.
    #[arg(long, requires_all = ["spare", "journal"], conflicts_with = "state")]
    pub confirm: bool,
    /// Lock holder identity; by default `hacli-remediate@HOST:JOURNAL`.
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// How long the disruption lock lasts without renewal (covers the
    /// whole replacement).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// The spare, the journal, how Proxmox and the nodes are reached.
    #[command(flatten)]
    pub with: WithArgs,
}

impl ActArgs {
    /// The replacement's settings, with --confirm (else `None`).
    pub fn act(&self) -> anyhow::Result<Option<haops::remediate::Act>> {
        if !self.confirm {
            return Ok(None);
        }
        self.with
            .act("--confirm", self.identity.clone(), self.lock_ttl)
            .map(Some)
    }

    /// The reach settings: `live`'s, with Proxmox and SSH.
    pub fn reach(&self, live: &crate::args::LiveArgs) -> haops::Reach {
        self.with.reach(live)
    }
}
