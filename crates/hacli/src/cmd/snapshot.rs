//! `hacli snapshot`: an etcd snapshot from a healthy follower, written
//! atomically (mode 0600), its integrity checked, kept under a retention,
//! optionally copied and restore-verified, in `--snapshot-dir` (where
//! `gate` and `observe` look for the newest). `--check FILE` checks one file.
//! The operation is `haops::snapshot`; this parses and renders.

use std::path::PathBuf;
use std::time::Duration;

use haops::snapshot::Options;

use crate::args::{LiveArgs, parse_duration};
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Check this snapshot file instead of taking one (with --verify-restore, restore it too).
    #[arg(long, value_name = "FILE", conflicts_with = "copy_to")]
    pub check: Option<PathBuf>,
    /// Keep at most this many of our snapshots (the newest always stays).
    #[arg(long, default_value_t = 7)]
    pub keep: usize,
    /// Delete our snapshots older than this (e.g. 7d, 36h).
    #[arg(long, value_parser = parse_age)]
    pub max_age: Option<Duration>,
    /// Also copy the snapshot and its record into this directory (repeatable).
    #[arg(long, value_name = "DIR")]
    pub copy_to: Vec<PathBuf>,
    /// Also copy them over SSH to `USER@HOST[:PORT]:/DIR` (host key checked; repeatable).
    #[arg(long, value_name = "USER@HOST:/DIR")]
    pub copy_over_ssh: Vec<kubeadm::snapshot::SshDest>,
    /// SSH private key for --copy-over-ssh; OpenSSH's defaults and the agent otherwise.
    #[arg(long, alias = "ssh-key")]
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts for --copy-over-ssh (~/.ssh/known_hosts by default).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Restore it into a scratch directory, serve it with a throwaway etcd on 127.0.0.1 and read a key back.
    #[arg(long)]
    pub verify_restore: bool,
    /// The key --verify-restore reads back; the first key by default.
    #[arg(long, requires = "verify_restore")]
    pub verify_key: Option<String>,
    /// etcdutl (3.5+); its sibling `etcd` serves --verify-restore. By default on PATH.
    #[arg(long, env = "HACLI_ETCDUTL")]
    pub etcdutl: Option<PathBuf>,
    /// Deadline for the transfer, and again for a restore check (`--deadline` is the observation's).
    #[arg(long, alias = "timeout", default_value = "5m", value_parser = parse_duration)]
    pub transfer_deadline: Duration,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// `7d` as well as what `parse_duration` reads.
fn parse_age(s: &str) -> Result<Duration, String> {
    match s.strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(Duration::from_secs(days * 86400)),
        _ => parse_duration(s),
    }
}

fn fail(e: haops::Error) -> anyhow::Result<Exit> {
    eprintln!("error: {}", kubeadm::redact_urls_in(&e.to_string()));
    Ok(match e.exit_code() {
        1 => Exit::Deny,
        2 => Exit::Usage,
        _ => Exit::Unknown,
    })
}

/// A warning or a phase for a person, on stderr.
fn event(e: haops::Event) {
    if let haops::Event::Warning(line) = e {
        eprintln!("note: {line}");
    }
}

/// `--check FILE`: verify a snapshot file (and, with `--verify-restore`,
/// restore it and read a key back).
fn check(a: &Args, opts: &Options, file: &std::path::Path) -> anyhow::Result<Exit> {
    let c = match haops::snapshot::check(file, opts) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match a.output {
        o @ (Output::Json | Output::Yaml) => crate::print_doc(o, "SnapshotCheck", &c)?,
        Output::Text => outln!(
            "{}: verified: revision {}, hash {:#010x}, {} keys{}",
            file.display(),
            c.revision,
            c.hash,
            c.keys,
            c.restore
                .map(|r| format!("; restore read {}", r.key))
                .unwrap_or_default()
        ),
    }
    Ok(Exit::Ok)
}

/// Run. Exit 0 done, 1 refused (integrity check failed), 2 bad input,
/// 3 no member or tool answered as needed.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let opts = Options {
        keep: a.keep,
        max_age: a.max_age,
        copy_to: a.copy_to.clone(),
        copy_over_ssh: a.copy_over_ssh.clone(),
        verify_restore: a.verify_restore,
        verify_key: a.verify_key.clone(),
        etcdutl: a.etcdutl.clone(),
        deadline: a.transfer_deadline,
    };
    // The tools first: a host without etcdutl says so before anything else.
    if let Err(e) = haops::snapshot::tools(opts.etcdutl.as_deref()) {
        return fail(e);
    }
    if let Some(file) = &a.check {
        return check(&a, &opts, file);
    }
    if a.live.snapshot_dir.is_none() {
        eprintln!("error: give the snapshot directory: --snapshot-dir DIR (or HACLI_SNAPSHOT_DIR)");
        return Ok(Exit::Usage);
    }
    let topology = a.live.topology()?;
    let mut reach = a.live.reach();
    reach.ssh.identity = a.ssh_identity.clone();
    reach.ssh.known_hosts = a.known_hosts.clone();
    let taken = match haops::snapshot::take(&topology, &reach, &opts, &mut event) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    match a.output {
        Output::Text => out!("{}", crate::render::snapshot(&taken.record, &taken.removed)),
        o => crate::print_doc(o, "Snapshot", &taken)?,
    }
    Ok(Exit::Ok)
}
