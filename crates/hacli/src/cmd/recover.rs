//! `hacli recover`: etcd lost quorum. Observes what survives (each master's
//! data directory over SSH, the snapshots), prints the chosen source and
//! what it loses, and, with `--confirm`, restores a one-member cluster on
//! one master and rejoins the others (`haops::recover`). Refused while
//! quorum holds.

use std::path::PathBuf;
use std::time::Duration;

use hacore::recover::{DataDir, Decision};
use haops::recover::{Options, Outcome, Report};

use crate::args::{LiveArgs, parse_duration};
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// The journal file (JSON lines); the plan is saved beside it (`JOURNAL.plan.json`).
    #[arg(long)]
    pub journal: PathBuf,
    /// Continue the run the journal records (with its saved plan).
    #[arg(long)]
    pub resume: bool,
    /// Observe and decide only.
    #[arg(long)]
    pub dry_run: bool,
    /// Act on the chosen source (without it: print the decision and the
    /// command that acts, exit 4).
    #[arg(long, conflicts_with = "dry_run")]
    pub confirm: bool,
    /// A snapshot file to consider (repeatable; one failing its integrity check is refused); by default every snapshot of ours in --snapshot-dir.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Vec<PathBuf>,
    /// The master to restore on (by default the surviving member with the newest data, else the first master answering over SSH).
    #[arg(long)]
    pub on: Option<String>,
    /// etcdutl (3.5+), run where hacli runs; by default on PATH.
    #[arg(long, env = "HACLI_ETCDUTL")]
    pub etcdutl: Option<PathBuf>,
    /// How long the restored master may take to serve.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub serving_bound: Duration,
    /// How long a master powered on again may take until its sshd answers.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub boot_wait: Duration,
    /// How the masters are reached over SSH.
    #[command(flatten)]
    pub ssh: crate::args::SshArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

fn print(r: &Report) {
    for m in &r.plan.members {
        let data = match &m.data {
            DataDir::Known {
                revision,
                hash,
                keys,
            } => format!("revision {revision}, hash {hash:08x}, {keys} keys"),
            DataDir::Empty => "no etcd data".into(),
            DataDir::Unknown { why } => format!("unknown ({why})"),
        };
        let voter = if m.voter_answering {
            "a voter answering"
        } else {
            "no voter answering"
        };
        println!("{}: etcd {voter}; data: {data}", m.name);
    }
    for s in &r.plan.snapshots {
        match &s.failed {
            None => println!("snapshot {}: revision {}", s.path, s.revision),
            Some(w) => println!("snapshot {}: refused: integrity check failed: {w}", s.path),
        }
    }
    match &r.plan.decision {
        Decision::Refused { reason } => println!("refused: {reason}"),
        Decision::Recover {
            on, source, loss, ..
        } => {
            println!("source: {source}, restored on {on}");
            println!("loses: {loss}");
            for s in &r.plan.steps {
                let rb = match (&s.rollback, &s.no_rollback) {
                    (Some(op), _) => format!(
                        "rollback: {}",
                        serde_json::to_string(op).unwrap_or_default()
                    ),
                    (None, Some(why)) => format!("no rollback: {why}"),
                    _ => String::new(),
                };
                println!("  {}: {} ({rb})", s.id, s.title);
            }
        }
    }
    match &r.outcome {
        Outcome::Refused | Outcome::DryRun => {}
        Outcome::NeedsConfirm => println!("not acting: pass --confirm to recover from this source"),
        Outcome::Done => println!("recovered: every step done"),
        Outcome::Failed {
            step,
            error,
            rolled_back,
        } => {
            println!("failed at {step}: {error}");
            if !rolled_back.is_empty() {
                println!("rolled back: {}", rolled_back.join(", "));
            }
        }
    }
}

/// Run it.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let topology = a.live.topology()?;
    let mut reach = a.live.reach().with_env(|k| std::env::var(k).ok())?;
    reach.boot_wait = a.boot_wait;
    reach.ssh = a.ssh.reach();
    let opts = Options {
        snapshots: a.snapshot.clone(),
        on: a.on.clone(),
        journal: a.journal.clone(),
        resume: a.resume,
        dry_run: a.dry_run,
        confirm: a.confirm,
        etcdutl: a.etcdutl.clone(),
        serving_bound: a.serving_bound,
    };
    let mut events = |e: haops::Event| match e {
        haops::Event::Note(n) => eprintln!("{n}"),
        haops::Event::Warning(w) => eprintln!("warning: {w}"),
        _ => {}
    };
    let report = match haops::recover::run(&topology, &reach, &opts, &mut events) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", kubeadm::redact_urls_in(&e.to_string()));
            return Ok(match e.exit_code() {
                3 => Exit::Unknown,
                _ => Exit::Usage,
            });
        }
    };
    match a.output {
        Output::Text => print(&report),
        o => crate::print_doc(o, "RecoveryReport", &report)?,
    }
    Ok(match report.outcome.exit_code() {
        0 => Exit::Ok,
        1 => Exit::Deny,
        4 => crate::waiting_for(&["--confirm"]),
        _ => Exit::Unknown,
    })
}
