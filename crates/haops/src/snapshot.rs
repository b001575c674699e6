//! etcd snapshots, once for every frontend (`hacli snapshot`,
//! `hapy.snapshot`): take one from a healthy follower into the snapshot
//! directory (atomically, mode 0600, its integrity checked), optionally
//! restore-verify it, copy it (directories, or over SSH with the host key
//! checked), then keep our snapshots under a retention; or check one file.
//! The work itself is `kubeadm::snapshot`'s; this is the sequence, with its
//! data returned and its progress reported as events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hacore::Topology;
use kubeadm::snapshot::{self, Record, RestoreCheck, SshDest, TakeOptions, Tools};
use serde::Serialize;

use crate::events::{Event, Events};
use crate::{Error, Reach};

/// What a snapshot run is asked besides how to reach etcd (the reach's
/// etcd settings; its `ssh` settings for `copy_over_ssh`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep at most this many of our snapshots (the newest always stays).
    pub keep: usize,
    /// Delete our snapshots older than this.
    pub max_age: Option<Duration>,
    /// Also copy the snapshot and its record into these directories.
    pub copy_to: Vec<PathBuf>,
    /// Also copy them over SSH to these destinations.
    pub copy_over_ssh: Vec<SshDest>,
    /// Restore it into a throwaway etcd on 127.0.0.1 and read a key back.
    pub verify_restore: bool,
    /// The key the restore check reads back (the first key when None).
    pub verify_key: Option<String>,
    /// `etcdutl` (3.5+; its sibling `etcd` serves the restore check); else
    /// `HACLI_ETCDUTL`, else on PATH.
    pub etcdutl: Option<PathBuf>,
    /// Deadline of the transfer, and again of a restore check or a copy.
    pub deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep: 7,
            max_age: None,
            copy_to: Vec::new(),
            copy_over_ssh: Vec::new(),
            verify_restore: false,
            verify_key: None,
            etcdutl: None,
            deadline: Duration::from_secs(300),
        }
    }
}

/// What one run did: the snapshot's record (as its sidecar holds it) and
/// what the retention removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Taken {
    /// The snapshot taken.
    #[serde(flatten)]
    pub record: Record,
    /// Our snapshots the retention deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<PathBuf>,
}

/// One file checked: its status and, when asked, what a restore read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    /// The file.
    pub path: PathBuf,
    /// The revision it holds.
    pub revision: i64,
    /// The backend's hash.
    pub hash: u32,
    /// Keys in the backend.
    pub keys: u64,
    /// Size of the backend, bytes.
    pub size: u64,
    /// Always true: a file failing the check is an error.
    pub verified: bool,
    /// What a restore read back, when one was asked for.
    pub restore: Option<RestoreCheck>,
}

/// The etcd tools: `etcdutl` given, else `HACLI_ETCDUTL`, else on PATH.
pub fn tools(etcdutl: Option<&Path>) -> Result<Tools, Error> {
    let env = std::env::var_os("HACLI_ETCDUTL").map(PathBuf::from);
    Ok(Tools::find(etcdutl.or(env.as_deref()))?)
}

/// Check the snapshot file `file` (and, with `opts.verify_restore`, restore
/// it and read a key back). A file failing its integrity check is
/// [`Error::Snapshot`] with exit code 1.
pub fn check(file: &Path, opts: &Options) -> Result<Checked, Error> {
    let tools = tools(opts.etcdutl.as_deref())?;
    let status = snapshot::check(&tools, file)?;
    let restore = if opts.verify_restore {
        let key = opts.verify_key.as_deref();
        let rt = crate::inventory::runtime()?;
        Some(rt.block_on(snapshot::verify_restore(&tools, file, key, opts.deadline))?)
    } else {
        None
    };
    Ok(Checked {
        path: file.to_path_buf(),
        revision: status.revision,
        hash: status.hash,
        keys: status.keys,
        size: status.size,
        verified: true,
        restore,
    })
}

/// Take a snapshot of `topology`'s etcd into the reach's snapshot
/// directory (a follower's; the leader's only when no other member is
/// healthy, said as a warning), restore-verify and copy it as asked, then
/// apply the retention. Blocking.
pub fn take(
    topology: &Topology,
    reach: &Reach,
    opts: &Options,
    events: Events<'_>,
) -> Result<Taken, Error> {
    let Some(dir) = reach.snapshot_dir.clone() else {
        return Err(Error::Setting {
            what: "snapshot directory (--snapshot-dir, snapshot_dir=, HACLI_SNAPSHOT_DIR)".into(),
            why: "not given".into(),
        });
    };
    let tools = tools(opts.etcdutl.as_deref())?;
    let config = reach.observer_config(None)?;
    let etcd = snapshot::Reach {
        endpoints: config.etcd_endpoints(topology),
        tls: config.etcd_tls.resolve(topology),
        member_timeout: config.member_timeout,
    };
    let take = TakeOptions {
        dir: dir.clone(),
        deadline: opts.deadline,
    };
    let rt = crate::inventory::runtime()?;
    let record = rt.block_on(async {
        let t = std::time::Instant::now();
        let chosen = snapshot::choose_member(&etcd).await?;
        if chosen.leader {
            events(Event::Warning(format!(
                "taken from the leader {}: no other member is healthy",
                chosen.name
            )));
        }
        let mut record = snapshot::take(&etcd, &chosen, &tools, &take).await?;
        events(Event::Phase {
            name: "take",
            took: t.elapsed(),
        });
        if opts.verify_restore {
            let t = std::time::Instant::now();
            let key = opts.verify_key.as_deref();
            snapshot::verify_restore_record(&tools, &mut record, key, opts.deadline).await?;
            events(Event::Phase {
                name: "verify-restore",
                took: t.elapsed(),
            });
        }
        copies(&mut record, reach, opts, &mut *events).await?;
        snapshot::write_record(&record)?;
        Ok::<_, Error>(record)
    })?;
    let removed = snapshot::retain(&dir, opts.keep, opts.max_age, jiff::Timestamp::now())?;
    for p in &removed {
        events(Event::Note(format!("removed (retention) {}", p.display())));
    }
    Ok(Taken { record, removed })
}

/// The copies `opts` asks for, each named in the record.
async fn copies(
    record: &mut Record,
    reach: &Reach,
    opts: &Options,
    events: Events<'_>,
) -> Result<(), Error> {
    for dest in &opts.copy_to {
        let p = snapshot::copy_to_dir(record, dest)?;
        events(Event::Note(format!("copied to {}", p.display())));
        record.copies.push(p.display().to_string());
    }
    for dest in &opts.copy_over_ssh {
        let (key, kh) = (
            reach.ssh.identity.as_deref(),
            reach.ssh.known_hosts.as_deref(),
        );
        let at = snapshot::copy_to_ssh_dest(dest, key, kh, record, opts.deadline).await?;
        events(Event::Note(format!("copied to {at}")));
        record.copies.push(at);
    }
    Ok(())
}
