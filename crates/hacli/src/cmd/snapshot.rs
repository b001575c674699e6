//! `hacli snapshot`: an etcd snapshot from a healthy follower, written
//! atomically (mode 0600), its integrity checked, kept under a retention,
//! optionally copied and restore-verified, in `--snapshot-dir` (where
//! `gate` and `observe` look for the newest). `--check FILE` checks one file.

use std::path::PathBuf;
use std::time::Duration;

use kubeadm::snapshot::{self, Reach, Record, SnapshotError, TakeOptions, Tools};

use crate::args::{LiveArgs, parse_duration, runtime};
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
    pub copy_over_ssh: Vec<snapshot::SshDest>,
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

/// What one run did (`-o json`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    #[serde(flatten)]
    record: Record,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<PathBuf>,
}

fn fail(e: SnapshotError) -> anyhow::Result<Exit> {
    eprintln!("error: {}", kubeadm::redact_urls_in(&e.to_string()));
    Ok(match e.exit_code() {
        1 => Exit::Deny,
        2 => Exit::Usage,
        _ => Exit::Unknown,
    })
}

/// `--check FILE`: verify a snapshot file (and, with `--verify-restore`,
/// restore it and read a key back).
fn check(
    a: &Args,
    tools: &Tools,
    rt: &tokio::runtime::Runtime,
    file: &std::path::Path,
) -> anyhow::Result<Exit> {
    let status = match snapshot::check(tools, file) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let restore = if a.verify_restore {
        let (key, bound) = (a.verify_key.as_deref(), a.transfer_deadline);
        match rt.block_on(snapshot::verify_restore(tools, file, key, bound)) {
            Ok(r) => Some(r),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    match a.output {
        o @ (Output::Json | Output::Yaml) => crate::print_doc(
            o,
            "SnapshotCheck",
            &serde_json::json!({
                "path": file, "revision": status.revision, "hash": status.hash,
                "keys": status.keys, "size": status.size, "verified": true, "restore": restore,
            }),
        )?,
        Output::Text => outln!(
            "{}: verified: revision {}, hash {:#010x}, {} keys{}",
            file.display(),
            status.revision,
            status.hash,
            status.keys,
            restore
                .map(|r| format!("; restore read {}", r.key))
                .unwrap_or_default()
        ),
    }
    Ok(Exit::Ok)
}

/// Run. Exit 0 done, 1 refused (integrity check failed), 2 bad input,
/// 3 no member or tool answered as needed.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let tools = match Tools::find(a.etcdutl.as_deref()) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let rt = runtime()?;
    if let Some(file) = &a.check {
        return check(&a, &tools, &rt, file);
    }
    let Some(dir) = a.live.snapshot_dir.clone() else {
        eprintln!("error: give the snapshot directory: --snapshot-dir DIR (or HACLI_SNAPSHOT_DIR)");
        return Ok(Exit::Usage);
    };
    let topology = a.live.topology()?;
    let config = a.live.config(None)?;
    let reach = Reach {
        endpoints: config.etcd_endpoints(&topology),
        tls: config.etcd_tls.resolve(&topology),
        member_timeout: config.member_timeout,
    };
    let opts = TakeOptions {
        dir: dir.clone(),
        deadline: a.transfer_deadline,
    };
    let done = rt.block_on(async {
        let chosen = snapshot::choose_member(&reach).await?;
        if chosen.leader {
            eprintln!(
                "note: taken from the leader {}: no other member is healthy",
                chosen.name
            );
        }
        let mut record = snapshot::take(&reach, &chosen, &tools, &opts).await?;
        if a.verify_restore {
            let key = a.verify_key.as_deref();
            snapshot::verify_restore_record(&tools, &mut record, key, a.transfer_deadline).await?;
        }
        for dest in &a.copy_to {
            let p = snapshot::copy_to_dir(&record, dest)?;
            record.copies.push(p.display().to_string());
        }
        for dest in &a.copy_over_ssh {
            let (key, kh) = (a.ssh_identity.as_deref(), a.known_hosts.as_deref());
            let at =
                snapshot::copy_to_ssh_dest(dest, key, kh, &record, a.transfer_deadline).await?;
            record.copies.push(at);
        }
        snapshot::write_record(&record)?;
        let removed = snapshot::retain(&dir, a.keep, a.max_age, jiff::Timestamp::now())?;
        Ok::<_, SnapshotError>((record, removed))
    });
    let (record, removed) = match done {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    print_report(a.output, record, removed)?;
    Ok(Exit::Ok)
}

/// What the run did, as `output` asks.
fn print_report(output: Output, record: Record, removed: Vec<PathBuf>) -> anyhow::Result<()> {
    match output {
        Output::Text => out!("{}", crate::render::snapshot(&record, &removed)),
        o => crate::print_doc(o, "Snapshot", &Report { record, removed })?,
    }
    Ok(())
}
