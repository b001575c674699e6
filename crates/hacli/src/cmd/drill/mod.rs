//! `hacli drill NODE`: the failover drill. Constant read traffic through
//! the control-plane endpoint (the VIP) while NODE is disrupted, the load
//! balancer watched; the measurements as text, JSON (`-o json`, schema
//! `hacli.drill/v1`) and an HTML page with a timeline chart (`--html`).
//! The drill is `haops::drill::drill`; this file only turns flags into its
//! options, shows its events on stderr and renders the report (`text`,
//! `html`).
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
use haops::drill::{Kind as DrillKind, Outcome};

use crate::args::{LiveArgs, ProxmoxArgs, parse_duration};
use crate::{Exit, Output};

mod html;
mod text;

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
    pub silence: crate::cmd::silence::SilenceArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

impl Args {
    /// How to reach the cluster: the shared flags, SSH and Proxmox.
    fn reach(&self) -> haops::Reach {
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
    fn options(&self, policy: hacore::Policy, identity: &str) -> haops::drill::Options {
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

/// A drill's event on stderr.
fn show(e: haops::Event) {
    match e {
        haops::Event::Note(line) => eprintln!("drill: {line}"),
        haops::Event::Warning(w) => eprintln!("WARNING: {w}"),
        haops::Event::Step(s) => {
            if let Some(line) = haops::events::step_line(&s) {
                eprintln!("drill: {line}");
            }
        }
        _ => {}
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
    let topology = a.live.topology()?;
    let policy = match &a.policy {
        Some(p) => hacore::Policy::named_or_file(p)?,
        None => hacore::Policy::for_action(hacore::Action::Reboot),
    };
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = crate::args::hostname();
        format!("hacli-drill@{host}#{}", std::process::id())
    });
    // Silenced until the lock would lapse: it covers the whole disruption.
    let silences = if a.planned {
        let node = std::slice::from_ref(&a.node);
        crate::cmd::silence::start(&a.silence, &policy, node, &identity, "drill", a.lock_ttl)?
    } else {
        None
    };
    let options = a.options(policy, &identity);
    let result = haops::drill::drill(&topology, &a.reach(), &options, &mut show);
    let outcome = match crate::cmd::silence::finish(silences, result.map_err(Into::into)) {
        Ok(o) => o,
        Err(e) => match e.downcast_ref::<haops::Error>() {
            Some(e) if e.exit_code() == 3 => {
                // A URL in an error is shown without its credentials.
                eprintln!("hacli drill: {}", kubeadm::redact_urls_in(&e.to_string()));
                return Ok(Exit::Unknown);
            }
            _ => return Err(e),
        },
    };
    let report = match outcome {
        Outcome::Ran(report) => report,
        Outcome::Refused { verdict, deny } => {
            eprint!("{}", crate::render::verdict(&verdict));
            eprintln!(
                "hacli drill: the gate does not allow taking {} down now; nothing was disrupted",
                a.node
            );
            return Ok(if deny { Exit::Deny } else { Exit::Unknown });
        }
        Outcome::NotHealthy { reason } => {
            eprintln!("hacli drill: {reason}");
            return Ok(Exit::Unknown);
        }
    };
    if let Some(path) = &a.html {
        std::fs::write(path, html::page(&report))
            .with_context(|| format!("writing --html {}", path.display()))?;
        eprintln!("drill: wrote {}", path.display());
    }
    match a.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => out!("{}", text::summary(&report)),
    }
    Ok(match haops::drill::exit_code(&report) {
        0 => Exit::Ok,
        1 => Exit::Deny,
        _ => Exit::Unknown,
    })
}
