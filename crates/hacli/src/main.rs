//! `hacli`: is it safe to touch this master?
//!
//! Exit codes: 0 allowed / done, 1 refused as unsafe, 2 usage or
//! configuration error, 3 unknown (could not observe or decide), 4
//! waiting for `--confirm` (the command to continue is printed).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// `print!` to stdout that ends the process quietly when the reader has
/// gone away (`hacli policy list | head`), instead of panicking.
macro_rules! out {
    ($($t:tt)*) => { $crate::emit(format_args!($($t)*)) };
}

/// `println!`, the same way.
macro_rules! outln {
    () => { $crate::emit(format_args!("\n")) };
    ($($t:tt)*) => { $crate::emit(format_args!("{}\n", format_args!($($t)*))) };
}

mod args;
mod cmd;
mod offline;
mod placement;
mod plugin;
mod progress;
mod remediation_metrics;
mod render;
mod sentinel_metrics;

/// Quorum-safe gates for kubeadm HA control planes.
#[derive(Debug, Parser)]
#[command(name = "hacli", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Is ACTION on TARGET safe now? Evaluates a policy over a topology and an
    /// observed state file. Exit 0 allow, 1 deny, 3 unknown, 2 bad input.
    Check(cmd::check::Args),
    /// Summarise a cluster: etcd quorum, nodes, load balancer, what may go down.
    Status(cmd::status::Args),
    /// Topology files.
    #[command(subcommand)]
    Topology(cmd::topology::Command),
    /// Gate policies.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Observe the live cluster and decide: is ACTION on NODE safe now?
    /// `--lock` takes the disruption lock when allowed. Exit 0 allow, 1 deny,
    /// 2 bad input, 3 unknown (could not observe, e.g. API unreachable).
    Gate(cmd::gate::Args),
    /// Observe the live cluster once and write a state file for `check`/`status`.
    Observe(cmd::observe::Args),
    /// The kured sentinel gate: loop, gate reboots of this node, keep the
    /// gated sentinel file and the disruption lock.
    Sentinel(cmd::sentinel::Args),
    /// The disruption lock: who holds it; release it when done.
    #[command(subcommand)]
    Lock(cmd::lock::Command),
    /// Plan the migration from one topology to another (single master ->
    /// three masters behind a VIP). Exit 1 when it cannot be made safe.
    Plan(cmd::plan::Args),
    /// Simulate a plan under every set of up to k failures: risk windows.
    Simulate(cmd::simulate::Args),
    /// Execute a plan step by step with a journal; resumable.
    Apply(cmd::apply::Args),
    /// The apiserver load balancer: show the pool; add, remove, drain,
    /// ready or maint one server. Exit 0 done (or already so), 1 refused,
    /// 2 bad input, 3 no answer.
    #[command(subcommand)]
    Lb(cmd::lb::Command),
    /// The failover drill: constant reads through the VIP while NODE is
    /// disrupted (planned: `disrupt reboot`'s sequence; unplanned: VM
    /// powered off, or apiserver killed); reports
    /// failures, the longest gap, latency and the LB's DOWN/UP times.
    /// Exit 0 target met, 1 gate refused or target missed, 2 bad input,
    /// 3 the drill could not be carried out.
    Drill(Box<cmd::drill::Args>),
    /// The hypervisor (Proxmox) as it really is.
    #[command(subcommand)]
    Hypervisor(cmd::hypervisor::Command),
    /// Run as a Woodpecker CI plugin: settings from PLUGIN_* variables
    /// (the container image's default command; see plugin/docs.md).
    Plugin(cmd::plugin::Args),
    /// One planned disruption of a node (reboot, upgrade, or a command),
    /// resumable: gate and lock, drain its backend, move etcd leadership,
    /// cordon and drain, act, wait until healthy, restore, release. Exit 0
    /// done, 1 denied or failed (restored, naming the step), 2 bad input.
    Disrupt(cmd::disrupt::Args),
    /// Rolling reboot or upgrade: masters one at a time with a soak, stop
    /// at the first failure, then the workers. Exit 0 done, 1 stopped.
    Roll(cmd::roll::Args),
    /// Remove a master for good (drain, member remove by id, kubeadm reset,
    /// delete the Node, remove its server, delete its VM); refused when it
    /// would leave an even number of voters. Exit 0 done, 1 refused or stopped.
    RemoveMaster(cmd::master::RemoveArgs),
    /// Replace a master: the new one joins first, then the old one is
    /// removed. Exit 0 done, 1 refused or stopped.
    ReplaceMaster(cmd::master::ReplaceArgs),
    /// Decide whether a master that stays NotReady, or whose etcd member
    /// stays unhealthy, is to be replaced (never when quorum would be lost;
    /// one at a time; a retry budget). Exit 0, or 1 refused.
    Remediate(cmd::remediate::Args),
    /// An etcd snapshot from a healthy follower into --snapshot-dir: written
    /// atomically (0600), integrity-checked, kept under a retention, copied,
    /// optionally restored into a throwaway etcd. Exit 0 done, 1 refused
    /// (integrity check failed), 2 bad input, 3 no member or tool answered.
    Snapshot(Box<cmd::snapshot::Args>),
    /// etcd lost quorum: observe what survives (each master's data over
    /// SSH, the snapshots), print the source that loses least and what it
    /// loses; with --confirm restore a one-member cluster and rejoin the
    /// others (journalled, resumable). Exit 0 done or dry run, 1 refused
    /// (quorum holds) or not confirmed, 2 bad input, 3 failed.
    Recover(Box<cmd::recover::Args>),
    /// Write what the masters run (static-pod flags and mounts that
    /// `kubeadm upgrade` would revert) into kube-system/kubeadm-config
    /// through kubeadm, after a copy of it; shows the change, writes only
    /// with --confirm. Exit 0 done or shown, 1 refused, 2 bad input, 3 no answer.
    ReconcileConfig(Box<cmd::reconcile_config::Args>),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions(cmd::completions::Args),
    /// Print the manual page (roff), e.g. `hacli man | man -l -`.
    Man(cmd::completions::ManArgs),
    /// Parse the arguments after `--` as a hacli command line and say
    /// whether they are accepted; runs nothing (the documentation's test
    /// checks every command the docs show this way).
    #[command(hide = true)]
    ParseArgs(cmd::completions::ParseArgs),
}

/// Output format shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// Stable JSON for scripts (`apiVersion: hacli/v1`, `kind`).
    Json,
    /// The same document as YAML.
    Yaml,
}

impl Output {
    /// A document (JSON or YAML) rather than text.
    pub fn is_document(self) -> bool {
        self != Output::Text
    }
}

/// Output format of a command that prints a table (`status`, `observe
/// --status`): `wide` adds columns, as kubectl's `-o wide` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TableOutput {
    /// For people.
    #[default]
    Text,
    /// The table with more columns (addresses, VM ids, taints, etcd
    /// members' nodes).
    Wide,
    /// Stable JSON for scripts (`apiVersion: hacli/v1`, `kind`).
    Json,
    /// The same document as YAML.
    Yaml,
}

impl TableOutput {
    /// The document format, when a document is asked for.
    pub fn document(self) -> Option<Output> {
        match self {
            TableOutput::Json => Some(Output::Json),
            TableOutput::Yaml => Some(Output::Yaml),
            TableOutput::Text | TableOutput::Wide => None,
        }
    }
}

/// The `apiVersion` of every document hacli writes.
pub const API_VERSION: &str = "hacli/v1";

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Allowed, or done.
    Ok = 0,
    /// Refused as unsafe.
    Deny = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Could not observe or decide.
    Unknown = 3,
    /// Stopped, waiting for a person's `--confirm`.
    Confirm = 4,
}

impl From<hacore::Decision> for Exit {
    fn from(d: hacore::Decision) -> Self {
        match d {
            hacore::Decision::Allow => Exit::Ok,
            hacore::Decision::Deny => Exit::Deny,
            hacore::Decision::Unknown => Exit::Unknown,
        }
    }
}

fn main() -> ExitCode {
    // A Woodpecker plugin step runs the image's entrypoint with no
    // arguments: with any PLUGIN_* variable set, that is plugin mode.
    let plugin_env = std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("PLUGIN_"));
    let cli = if std::env::args_os().len() == 1 && plugin_env {
        Cli::parse_from(["hacli", "plugin"])
    } else {
        let cli = Cli::parse();
        args::renamed::warn(std::env::args());
        cli
    };
    match dispatch(cli) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            let mut err = std::io::stderr().lock();
            // A URL in an error is shown without its credentials.
            let _ = writeln!(err, "error: {}", kubeadm::redact_urls_in(&e.to_string()));
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                let _ = writeln!(err, "  caused by: {}", kubeadm::redact_urls_in(&cause));
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Run the command `cli` names (the plugin runs the command line its
/// settings stand for through it too).
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Check(a) => cmd::check::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Topology(c) => cmd::topology::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Gate(a) => cmd::gate::run(a),
        Command::Observe(a) => cmd::observe::run(a),
        Command::Sentinel(a) => cmd::sentinel::run(a),
        Command::Lock(c) => cmd::lock::run(c),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Apply(a) => cmd::apply::run(a),
        Command::Lb(c) => cmd::lb::run(c),
        Command::Drill(a) => cmd::drill::run(*a),
        Command::Hypervisor(c) => cmd::hypervisor::run(c),
        Command::Plugin(a) => cmd::plugin::run(a),
        Command::Disrupt(a) => cmd::disrupt::run(a),
        Command::Roll(a) => cmd::roll::run(a),
        Command::RemoveMaster(a) => cmd::master::run_remove(a),
        Command::ReplaceMaster(a) => cmd::master::run_replace(a),
        Command::Remediate(a) => cmd::remediate::run(a),
        Command::Snapshot(a) => cmd::snapshot::run(*a),
        Command::Recover(a) => cmd::recover::run(*a),
        Command::ReconcileConfig(a) => cmd::reconcile_config::run(*a),
        Command::Completions(a) => cmd::completions::run(a),
        Command::Man(a) => cmd::completions::man(a),
        Command::ParseArgs(a) => cmd::completions::parse_args(a),
    }
}

/// The exit code of a command's error: a `haops::Error`'s or a
/// refusal's own (3 for a cluster that cannot be reached or observed, 2
/// for a setting or bad input, 1 refused as unsafe), else 2.
fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| {
            let own = c
                .downcast_ref::<haops::Error>()
                .map(haops::Error::exit_code);
            own.or_else(|| {
                c.downcast_ref::<hacore::plan::Refusal>()
                    .map(|r| r.exit_code())
            })
        })
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(Exit::Usage as u8)
}

/// Print diagnostics (warnings) on stderr.
pub fn print_warnings(diags: &[hacore::source::Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

/// Write to stdout; exit 0 at once if stdout is a closed pipe.
pub fn emit(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        quit_on_closed_pipe(&e);
        let _ = writeln!(std::io::stderr(), "error: writing to stdout: {e}");
        std::process::exit(Exit::Usage as i32);
    }
}

fn quit_on_closed_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

/// Exit 4: the run stopped, waiting for a person. Prints on stderr the
/// whole command that continues it: this one (without `--dry-run`) and
/// `more` (`--confirm`, ...).
pub fn waiting_for(more: &[&str]) -> Exit {
    let args: Vec<String> = std::env::args().collect();
    eprintln!("to continue: {}", continue_command(&args, more));
    Exit::Confirm
}

/// `args` without `--dry-run`, then `more`, quoted for a POSIX shell (a
/// trailing `-- COMMAND` stays last).
fn continue_command(args: &[String], more: &[&str]) -> String {
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (head, tail) = args.split_at(split);
    let words = head
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--dry-run")
        .chain(more.iter().copied())
        .chain(tail.iter().map(String::as_str));
    words.map(shell_quote).collect::<Vec<_>>().join(" ")
}

/// One word for a POSIX shell: as is when it is safe, else single-quoted.
fn shell_quote(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `value` as a hacli document of kind `kind`, printed on stdout as
/// JSON or YAML (`output`; text is the command's own).
pub fn print_doc<T: serde::Serialize>(output: Output, kind: &str, value: &T) -> anyhow::Result<()> {
    let text = match output {
        Output::Yaml => render::document_yaml(kind, value)?,
        _ => render::document_json(kind, value)? + "\n",
    };
    emit(format_args!("{text}"));
    Ok(())
}
