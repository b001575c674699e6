//! `hacli drill`'s flags, and the `haops::drill` options and reach
//! settings they give.

use std::path::PathBuf;
use std::time::Duration;

use haops::drill::Kind as DrillKind;

use crate::Output;
use crate::args::{LiveArgs, ProxmoxArgs, parse_duration};

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
    #[arg(long, alias = "ssh-known-hosts")]
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
    pub silence: crate::args::silence::SilenceArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

impl Args {
    /// How to reach the cluster: the shared flags, SSH and Proxmox.
    pub(super) fn reach(&self) -> haops::Reach {
        let mut reach = self.live.reach();
        reach.ssh = haops::reach::SshReach {
            identity: self.ssh_identity.clone(),
            known_hosts: self.known_hosts.clone(),
            accept_new_host_key: self.accept_new_host_key,
        };
        reach.proxmox = self.proxmox.reach();
        reach
    }

    /// The drill's options.
    pub(super) fn options(&self, policy: hacore::Policy, identity: &str) -> haops::drill::Options {
        let kind = match (self.planned, self.kill) {
            (true, _) => DrillKind::PlannedReboot,
            (false, Some(Kill::Apiserver)) => DrillKind::KillApiserver,
            (false, None) => DrillKind::PowerOff,
        };
        haops::drill::Options {
            journal: self.journal.clone(),
            lock_ttl: self.lock_ttl,
            idle_bound: self.idle_bound,
            rate: self.rate,
            duration: self.duration,
            baseline: self.baseline,
            down_for: self.down_for,
            after: self.after,
            recovery_timeout: self.recovery_timeout,
            request_timeout: self.request_timeout,
            path: self.path.clone(),
            keep_alive: self.keep_alive,
            skip_gate: self.skip_gate,
            policy: Some(policy),
            kill_ssh: haops::drill::KillSsh {
                user: self.ssh_user.clone(),
                port: self.ssh_port,
                sudo: self.ssh_sudo,
            },
            ..haops::drill::Options::new(&self.node, kind, identity)
        }
    }
}
