//! etcd snapshots (`hacli snapshot`): taken from a healthy member (not the
//! leader while another member is healthy), written atomically with mode
//! 0600, their integrity checked (etcd's SHA-256 trailer, then `etcdutl
//! snapshot status`), kept under a retention that only ever deletes files
//! this module wrote, copied to another directory, and optionally restored
//! into a scratch data directory served by a throwaway etcd on loopback to
//! read a key back.
//!
//! Each snapshot `hacli-etcd-<UTC time>-<member>.db` has a sidecar
//! `<same>.db.json` ([`Record`], its `tool` field [`MARK`]): retention and
//! [`newest_verified`] only consider files with both the name and the
//! sidecar, so a file that is not ours is never deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use etcd_client::{Certificate, Client as Etcd, ConnectOptions, Identity, TlsOptions};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep, timeout_at};

use crate::EtcdTls;
use crate::observe::describe;

/// The `tool` field of every sidecar this module writes.
pub const MARK: &str = "hacli etcd snapshot";
/// The file-name prefix of every snapshot this module writes.
pub const PREFIX: &str = "hacli-etcd-";
const SUFFIX: &str = ".db";
const SIDECAR: &str = ".json";

/// Why a snapshot could not be taken, checked, restored or kept.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot file failed its integrity check: refused.
    #[error("{}: integrity check failed: {what}", .path.display())]
    Integrity {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// Bad settings or a file that cannot be read or written.
    #[error("{0}")]
    Usage(String),
    /// A member, a tool or the throwaway etcd did not answer as needed.
    #[error("{0}")]
    Unreachable(String),
}

impl SnapshotError {
    /// The project's exit code: 1 refused (integrity), 2 bad input, 3 could
    /// not reach or verify.
    pub fn exit_code(&self) -> u8 {
        match self {
            SnapshotError::Integrity { .. } => 1,
            SnapshotError::Usage(_) => 2,
            SnapshotError::Unreachable(_) => 3,
        }
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> SnapshotError {
    SnapshotError::Usage(format!("{}: {what}: {e}", path.display()))
}

/// What `etcdutl snapshot status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The backend's hash.
    pub hash: u32,
    /// The revision the snapshot holds.
    pub revision: i64,
    /// Keys in the backend (every revision of every key).
    pub keys: u64,
    /// Size of the backend, bytes.
    pub size: u64,
}

/// What a restore into a throwaway etcd read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCheck {
    /// The key read back.
    pub key: String,
    /// The restored member's revision.
    pub revision: i64,
}

/// One snapshot, as its sidecar holds it (and `hacli snapshot -o json` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Always [`MARK`].
    pub tool: String,
    /// The snapshot file.
    pub path: PathBuf,
    /// The member it was taken from (name, else its id in hex).
    pub member: String,
    /// That member's client URL.
    pub endpoint: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// The revision it holds.
    pub revision: i64,
    /// The backend's hash (`etcdutl snapshot status`).
    pub hash: u32,
    /// Keys in the backend.
    pub keys: u64,
    /// File size, bytes.
    pub size: u64,
    /// Whether the integrity check passed.
    pub verified: bool,
    /// What a restore read back, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreCheck>,
    /// Copies made elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<String>,
}

/// The etcd tools: `etcdutl` and, for `--verify-restore`, `etcd` of the
/// same version.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `etcdutl`.
    pub etcdutl: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
}

impl Tools {
    /// `etcdutl` as given (else found on PATH), and the `etcd` beside it
    /// (else on PATH): a restore is served by the same version that made it.
    pub fn find(etcdutl: Option<&Path>) -> Result<Tools, SnapshotError> {
        let on_path = |name: &str| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|f| f.is_file())
            })
        };
        let etcdutl = match etcdutl {
            Some(p) if p.is_file() => p.to_path_buf(),
            Some(p) => {
                return Err(SnapshotError::Usage(format!(
                    "etcdutl {}: no such file",
                    p.display()
                )));
            }
            None => on_path("etcdutl").ok_or_else(|| {
                SnapshotError::Usage(
                    "etcdutl is not on PATH (etcd 3.5+; give --etcdutl or HACLI_ETCDUTL)".into(),
                )
            })?,
        };
        let beside = etcdutl.with_file_name("etcd");
        let etcd = if beside.is_file() {
            beside
        } else {
            on_path("etcd").unwrap_or(beside)
        };
        Ok(Tools { etcdutl, etcd })
    }
}

/// How to reach the members.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Client certificates.
    pub tls: EtcdTls,
    /// How long one member may take to answer a status.
    pub member_timeout: Duration,
}

/// The member a snapshot is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Client URL.
    pub url: String,
    /// Member name (its id in hex when it has none).
    pub name: String,
    /// Whether it leads (only when no other member is healthy).
    pub leader: bool,
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, SnapshotError> {
    let read = |p: &Path| {
        fs::read(p).map_err(|e| {
            SnapshotError::Usage(format!(
                "cannot read etcd TLS file {} (set --etcd-pki, or --etcd-cacert/--etcd-cert/--etcd-key): {e}",
                p.display()
            ))
        })
    };
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?)))
}

/// A healthy voter to take a snapshot from: not the leader while another
/// voter answers healthy. Every member is asked its status within the
/// member timeout.
pub async fn choose_member(reach: &Reach) -> Result<Chosen, SnapshotError> {
    let tls = tls_options(&reach.tls)?;
    let mut healthy = Vec::new();
    let mut failed = Vec::new();
    let mut names = std::collections::BTreeMap::new();
    for url in &reach.endpoints {
        let shown = crate::redact_url(url).into_owned();
        let until = Instant::now() + reach.member_timeout;
        let opts = ConnectOptions::new()
            .with_tls(tls.clone())
            .with_connect_timeout(reach.member_timeout)
            .with_timeout(reach.member_timeout);
        let answer = timeout_at(until, async {
            let mut c = Etcd::connect([url.as_str()], Some(opts)).await?;
            let s = c.status().await?;
            let members = c.member_list().await.ok();
            Ok::<_, etcd_client::Error>((s, members))
        })
        .await;
        match answer {
            Ok(Ok((s, members))) => {
                let id = s.header().map(|h| h.member_id()).unwrap_or_default();
                if let Some(ml) = members {
                    for m in ml.members() {
                        names.insert(m.id(), m.name().to_string());
                    }
                }
                if !s.errors().is_empty() {
                    failed.push(format!("{shown}: {}", s.errors().join("; ")));
                } else if s.is_learner() {
                    failed.push(format!("{shown}: a learner"));
                } else {
                    healthy.push((url.clone(), id, s.leader() == id));
                }
            }
            Ok(Err(e)) => failed.push(format!("{shown}: {}", crate::redact_urls_in(&describe(&e)))),
            Err(_) => failed.push(format!("{shown}: no answer before the deadline")),
        }
    }
    let pick = healthy
        .iter()
        .find(|(_, _, leader)| !leader)
        .or_else(|| healthy.first());
    match pick {
        Some((url, id, leader)) => Ok(Chosen {
            url: url.clone(),
            name: names
                .get(id)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("{id:x}")),
            leader: *leader,
        }),
        None => Err(SnapshotError::Unreachable(format!(
            "no healthy etcd member to take a snapshot from: {}",
            if failed.is_empty() {
                "no endpoint given".to_string()
            } else {
                failed.join(", ")
            }
        ))),
    }
}

fn file_name_for(taken_at: Timestamp, member: &str) -> String {
    let t = taken_at.strftime("%Y%m%dT%H%M%SZ");
    let member: String = member
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{t}-{member}{SUFFIX}")
}

/// Whether `name` is one of our snapshot file names.
pub fn is_our_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
    else {
        return false;
    };
    let (stamp, member) = rest.split_at(rest.len().min(16));
    stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp[..8].bytes().all(|b| b.is_ascii_digit())
        && stamp[9..15].bytes().all(|b| b.is_ascii_digit())
        && member.starts_with('-')
        && member.len() > 1
}

fn sidecar_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(SIDECAR);
    PathBuf::from(s)
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "syncing the directory", e))
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory (mode 0600), fsynced, renamed over, the directory fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, "creating", e))?;
    let r = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp, "writing", e));
    }
    fs::rename(&tmp, path).map_err(|e| io(path, "renaming into place", e))?;
    sync_dir(dir)
}

/// What `take` does besides taking the snapshot.
#[derive(Debug, Clone)]
pub struct TakeOptions {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// The whole transfer's deadline.
    pub deadline: Duration,
}

/// Take a snapshot from `chosen` into `opts.dir`: streamed into a temporary
/// file (mode 0600) in the same directory, fsynced, its integrity checked,
/// then renamed into place with its sidecar. A snapshot that fails the
/// check is removed (it was ours) and refused.
pub async fn take(
    reach: &Reach,
    chosen: &Chosen,
    tools: &Tools,
    opts: &TakeOptions,
) -> Result<Record, SnapshotError> {
    let dir = &opts.dir;
    if !dir.is_dir() {
        return Err(SnapshotError::Usage(format!(
            "snapshot directory {}: not a directory",
            dir.display()
        )));
    }
    let until = Instant::now() + opts.deadline;
    let shown = crate::redact_url(&chosen.url).into_owned();
    // Names go to the second: a snapshot already taken in this second
    // waits for the next one rather than replacing it.
    let (taken_at, path) = loop {
        let t = Timestamp::now();
        let p = dir.join(file_name_for(t, &chosen.name));
        if !p.exists() {
            break (t, p);
        }
        let into = u64::try_from(t.subsec_nanosecond()).unwrap_or(0);
        sleep(Duration::from_nanos(1_000_000_000 - into.min(999_999_999))).await;
    };
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, "creating", e))?;
    let tls = tls_options(&reach.tls)?;
    let streamed = async {
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(reach.member_timeout);
        let mut c = Etcd::connect([chosen.url.as_str()], Some(opts))
            .await
            .map_err(|e| format!("connect {shown}: {}", describe(&e)))?;
        let mut stream = c
            .snapshot()
            .await
            .map_err(|e| format!("snapshot from {shown}: {}", describe(&e)))?;
        while let Some(msg) = stream
            .message()
            .await
            .map_err(|e| format!("snapshot from {shown}: {}", describe(&e)))?
        {
            f.write_all(msg.blob())
                .map_err(|e| format!("{}: writing: {e}", tmp.display()))?;
        }
        f.sync_all()
            .map_err(|e| format!("{}: fsync: {e}", tmp.display()))?;
        Ok::<(), String>(())
    };
    let outcome = match timeout_at(until, streamed).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SnapshotError::Unreachable(
            crate::redact_urls_in(&e).into_owned(),
        )),
        Err(_) => Err(SnapshotError::Unreachable(format!(
            "snapshot from {shown}: not done within {} s",
            opts.deadline.as_secs()
        ))),
    };
    let status = outcome.and_then(|()| check(tools, &tmp));
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(match e {
                SnapshotError::Integrity { what, .. } => SnapshotError::Integrity {
                    path: path.clone(),
                    what,
                },
                e => e,
            });
        }
    };
    fs::rename(&tmp, &path).map_err(|e| io(&path, "renaming into place", e))?;
    sync_dir(dir)?;
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or_default();
    let record = Record {
        tool: MARK.into(),
        path: path.clone(),
        member: chosen.name.clone(),
        endpoint: shown,
        taken_at,
        revision: status.revision,
        hash: status.hash,
        keys: status.keys,
        size,
        verified: true,
        restore: None,
        copies: Vec::new(),
    };
    write_record(&record)?;
    Ok(record)
}

/// Write (or rewrite) a snapshot's sidecar, atomically.
pub fn write_record(record: &Record) -> Result<(), SnapshotError> {
    let text = serde_json::to_vec_pretty(record)
        .map_err(|e| SnapshotError::Usage(format!("encoding the record: {e}")))?;
    write_atomic(&sidecar_of(&record.path), &text)
}

/// Check a snapshot file's integrity: etcd's SHA-256 trailer (a snapshot
/// from the API is the backend followed by the SHA-256 of it), then
/// `etcdutl snapshot status -w json`. Errors name the file and what failed.
pub fn check(tools: &Tools, path: &Path) -> Result<Status, SnapshotError> {
    let bad = |what: String| SnapshotError::Integrity {
        path: path.to_path_buf(),
        what,
    };
    let mut f = File::open(path).map_err(|e| io(path, "opening", e))?;
    let len = f.metadata().map_err(|e| io(path, "reading", e))?.len();
    if len < 32 || len % 512 != 32 {
        return Err(bad(format!(
            "{len} bytes is not a backend of whole 512-byte pages followed by its SHA-256 (truncated?)"
        )));
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = len - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = buf.len().min(left as usize);
        f.read_exact(&mut buf[..n])
            .map_err(|e| io(path, "reading", e))?;
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer)
        .map_err(|e| io(path, "reading", e))?;
    if ctx.finish().as_ref() != trailer {
        return Err(bad(
            "the SHA-256 at its end does not match its contents (corrupted)".into(),
        ));
    }
    let out = std::process::Command::new(&tools.etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            SnapshotError::Unreachable(format!("running {}: {e}", tools.etcdutl.display()))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(bad(format!("etcdutl snapshot status: {}", last.trim())));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        hash: u32,
        revision: i64,
        total_key: u64,
        total_size: u64,
    }
    let raw: Raw = serde_json::from_slice(&out.stdout).map_err(|e| {
        bad(format!(
            "etcdutl snapshot status printed no status ({e}): {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    })?;
    Ok(Status {
        hash: raw.hash,
        revision: raw.revision,
        keys: raw.total_key,
        size: raw.total_size,
    })
}

fn free_port() -> Result<u16, SnapshotError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SnapshotError::Unreachable(format!("no free port on 127.0.0.1: {e}")))
}

/// One read of `key` (the first key when None) from the throwaway etcd.
async fn read_key(
    client_url: &str,
    key: Option<&str>,
) -> Result<etcd_client::GetResponse, etcd_client::Error> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    let mut c = Etcd::connect([client_url], Some(opts)).await?;
    match key {
        Some(k) => c.get(k, None).await,
        None => {
            c.get(
                "\0",
                Some(etcd_client::GetOptions::new().with_from_key().with_limit(1)),
            )
            .await
        }
    }
}

/// What the read found: the key and the revision, or why not.
fn restore_check(r: &etcd_client::GetResponse, key: Option<&str>) -> Result<RestoreCheck, String> {
    let revision = r.header().map(|h| h.revision()).unwrap_or_default();
    match r.kvs().first() {
        Some(kv) => Ok(RestoreCheck {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            revision,
        }),
        None => Err(match key {
            Some(k) => format!("key `{k}` is not in the restored data"),
            None => "the restored data holds no key".into(),
        }),
    }
}

/// Restore `path` into a scratch data directory (removed afterwards), serve
/// it with a throwaway `etcd` on 127.0.0.1 (random free ports, killed
/// afterwards) and read `key` back (any first key when None), all within
/// `deadline`. The key must exist in the snapshot.
pub async fn verify_restore(
    tools: &Tools,
    path: &Path,
    key: Option<&str>,
    deadline: Duration,
) -> Result<RestoreCheck, SnapshotError> {
    let until = Instant::now() + deadline;
    let scratch = tempfile::Builder::new()
        .prefix("hacli-restore-")
        .tempdir()
        .map_err(|e| io(&std::env::temp_dir(), "creating a scratch directory", e))?;
    let data = scratch.path().join("data");
    let (peer, client) = (free_port()?, free_port()?);
    let peer_url = format!("http://127.0.0.1:{peer}");
    let client_url = format!("http://127.0.0.1:{client}");
    let cluster = format!("restore={peer_url}");
    let fail = |what: String| SnapshotError::Unreachable(format!("{}: {what}", path.display()));
    let out = tokio::process::Command::new(&tools.etcdutl)
        .args(["snapshot", "restore"])
        .arg(path)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "restore", "--initial-cluster", &cluster])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = timeout_at(until, out)
        .await
        .map_err(|_| fail("etcdutl snapshot restore did not finish in time".into()))?
        .map_err(|e| fail(format!("running {}: {e}", tools.etcdutl.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(SnapshotError::Integrity {
            path: path.to_path_buf(),
            what: format!("etcdutl snapshot restore: {}", last.trim()),
        });
    }
    let log = scratch.path().join("etcd.log");
    let log_file = File::create(&log).map_err(|e| io(&log, "creating", e))?;
    let mut etcd = tokio::process::Command::new(&tools.etcd)
        .args(["--name", "restore", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &cluster])
        .args(["--listen-metrics-urls", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("starting {}: {e}", tools.etcd.display())))?;
    let read = async {
        loop {
            if let Ok(Some(status)) = etcd.try_wait() {
                return Err(format!("the throwaway etcd exited ({status})"));
            }
            match read_key(&client_url, key).await {
                Ok(r) => return restore_check(&r, key),
                Err(e) if Instant::now() >= until => {
                    return Err(format!(
                        "the throwaway etcd did not answer: {}",
                        describe(&e)
                    ));
                }
                Err(_) => {}
            }
            sleep(Duration::from_millis(100)).await;
        }
    };
    let result = timeout_at(until, read).await;
    let _ = etcd.kill().await;
    match result {
        Ok(Ok(check)) => Ok(check),
        Ok(Err(e)) => {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(3).collect();
            Err(fail(format!(
                "restore not verified: {e}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(" (etcd log: {})", tail.join(" | "))
                }
            )))
        }
        Err(_) => Err(fail(format!(
            "restore not verified within {} s",
            deadline.as_secs()
        ))),
    }
}

/// [`verify_restore`] a snapshot just taken and keep the outcome in its
/// record: a restore that etcdutl refuses marks it unverified (so it never
/// counts as a backup), and the error is returned.
pub async fn verify_restore_record(
    tools: &Tools,
    record: &mut Record,
    key: Option<&str>,
    deadline: Duration,
) -> Result<(), SnapshotError> {
    match verify_restore(tools, &record.path, key, deadline).await {
        Ok(r) => {
            record.restore = Some(r);
            write_record(record)
        }
        Err(e) => {
            if matches!(e, SnapshotError::Integrity { .. }) {
                record.verified = false;
                write_record(record)?;
            }
            Err(e)
        }
    }
}

/// Our snapshots in `dir`, newest first: files with our name and a sidecar
/// marked [`MARK`] that names them. Anything else is left alone.
pub fn ours(dir: &Path) -> Result<Vec<Record>, SnapshotError> {
    let entries = fs::read_dir(dir).map_err(|e| io(dir, "listing", e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, "listing", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_our_name(name) || !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        let Ok(text) = fs::read(sidecar_of(&path)) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<Record>(&text) else {
            continue;
        };
        if record.tool != MARK || record.path.file_name() != path.file_name() {
            continue;
        }
        found.push(Record { path, ..record });
    }
    found.sort_by_key(|r| std::cmp::Reverse(r.taken_at));
    Ok(found)
}

/// Delete our snapshots beyond the newest `keep`, and those older than
/// `max_age`; the newest one always stays. Returns what was deleted.
pub fn retain(
    dir: &Path,
    keep: usize,
    max_age: Option<Duration>,
    now: Timestamp,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut removed = Vec::new();
    for (i, r) in ours(dir)?.into_iter().enumerate() {
        let age = now.duration_since(r.taken_at);
        let too_old = max_age.is_some_and(|m| age.as_secs_f64() > m.as_secs_f64());
        if i == 0 || (i < keep.max(1) && !too_old) {
            continue;
        }
        fs::remove_file(&r.path).map_err(|e| io(&r.path, "removing", e))?;
        let side = sidecar_of(&r.path);
        fs::remove_file(&side).map_err(|e| io(&side, "removing", e))?;
        removed.push(r.path);
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Copy a snapshot and its sidecar into `dest` (a directory), atomically,
/// mode 0600. The copy's sidecar names the copy.
pub fn copy_to_dir(record: &Record, dest: &Path) -> Result<PathBuf, SnapshotError> {
    if !dest.is_dir() {
        return Err(SnapshotError::Usage(format!(
            "copy destination {}: not a directory",
            dest.display()
        )));
    }
    let name = record.path.file_name().unwrap_or_default();
    let target = dest.join(name);
    let bytes = fs::read(&record.path).map_err(|e| io(&record.path, "reading", e))?;
    write_atomic(&target, &bytes)?;
    let copy = Record {
        path: target.clone(),
        copies: Vec::new(),
        ..record.clone()
    };
    write_record(&copy)?;
    Ok(target)
}

/// The script that receives one file on stdin into `$1/$2`: a temporary
/// file in the same directory (umask 077: mode 0600), synced, renamed over,
/// then its SHA-256 printed for the caller to compare.
const RECEIVE: &str = r#"set -eu
umask 077
t="$1/.$2.partial-$$"
trap 'rm -f "$t"' EXIT
cat > "$t"
sync "$t" 2>/dev/null || sync
mv -f "$t" "$1/$2"
trap - EXIT
sha256sum "$1/$2" | cut -d' ' -f1"#;

/// Copy a snapshot and its record into `dir` on the host `session` reaches
/// (its host key checked by the session), each written atomically with
/// mode 0600 and its SHA-256 compared with the local file's. Returns
/// the host and the path of the copy.
pub async fn copy_over_ssh(
    session: &ssh::Session,
    record: &Record,
    dir: &str,
    deadline: Duration,
) -> Result<String, SnapshotError> {
    let name = record
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| SnapshotError::Usage(format!("{}: no file name", record.path.display())))?
        .to_string();
    let host = session.target().describe();
    let remote = format!("{}/{name}", dir.trim_end_matches('/'));
    let copy = Record {
        path: PathBuf::from(&remote),
        copies: Vec::new(),
        ..record.clone()
    };
    let sidecar = serde_json::to_vec_pretty(&copy)
        .map_err(|e| SnapshotError::Usage(format!("encoding the record: {e}")))?;
    let bytes = fs::read(&record.path).map_err(|e| io(&record.path, "reading", e))?;
    for (file, body) in [(name.clone(), bytes), (format!("{name}{SIDECAR}"), sidecar)] {
        let want = ring::digest::digest(&ring::digest::SHA256, &body);
        let want: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let cmd = ssh::Cmd::shell(RECEIVE).arg(dir).arg(&file).stdin(body);
        let out = session
            .run_checked(&cmd, deadline)
            .await
            .map_err(|e| SnapshotError::Unreachable(format!("copying {file} to {host}: {e}")))?;
        let got = out.stdout_str().trim().to_string();
        if got != want {
            return Err(SnapshotError::Unreachable(format!(
                "copying {file} to {host}:{dir}: the copy's SHA-256 is {got:?}, not {want}"
            )));
        }
    }
    Ok(format!("{host} {remote}"))
}

/// Where `--copy-over-ssh` copies: `USER@HOST[:PORT]:/DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDest {
    /// Login user.
    pub user: String,
    /// Host name or address.
    pub host: String,
    /// Port (22 by default).
    pub port: u16,
    /// Absolute directory there.
    pub dir: String,
}

impl std::str::FromStr for SshDest {
    type Err = String;
    fn from_str(s: &str) -> Result<SshDest, String> {
        let bad = || format!("`{s}`: expected USER@HOST[:PORT]:/DIR");
        let (user, rest) = s.split_once('@').ok_or_else(bad)?;
        let at = rest.find(":/").ok_or_else(bad)?;
        let (hostport, dir) = (&rest[..at], &rest[at + 1..]);
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (hostport, 22),
        };
        ssh::validate_user(user).map_err(|e| format!("`{s}`: {e}"))?;
        ssh::validate_host(host).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(SshDest {
            user: user.into(),
            host: host.into(),
            port,
            dir: dir.into(),
        })
    }
}

/// Connect to `dest` (strict host-key checking against `known_hosts`, else
/// `~/.ssh/known_hosts`; `key`, else OpenSSH's default keys and the agent)
/// and [`copy_over_ssh`] there.
pub async fn copy_to_ssh_dest(
    dest: &SshDest,
    key: Option<&Path>,
    known_hosts: Option<&Path>,
    record: &Record,
    deadline: Duration,
) -> Result<String, SnapshotError> {
    let mut cfg = ssh::Config::new(dest.host.clone(), dest.host.clone(), dest.user.clone())
        .port(dest.port)
        .connect_timeout(deadline.min(Duration::from_secs(10)));
    if let Some(k) = key {
        cfg = cfg.key(k);
    }
    if let Some(k) = known_hosts {
        cfg = cfg.known_hosts(k);
    }
    let session = ssh::Session::connect(&cfg)
        .await
        .map_err(|e| SnapshotError::Unreachable(format!("copying to {}: {e}", dest.host)))?;
    let copied = copy_over_ssh(&session, record, &dest.dir, deadline).await;
    session.close().await;
    copied
}

/// The newest verified snapshot in `dir`, as the observed state holds it;
/// a directory that cannot be read gives its error (unknown), never "none".
pub fn newest_verified(dir: &Path) -> hacore::state::EtcdBackup {
    let place = dir.display().to_string();
    match ours(dir) {
        Ok(records) => hacore::state::EtcdBackup {
            place,
            error: None,
            newest: records
                .into_iter()
                .find(|r| r.verified)
                .map(|r| hacore::state::SnapshotSeen {
                    path: r.path.display().to_string(),
                    taken_at: r.taken_at,
                    revision: u64::try_from(r.revision).unwrap_or_default(),
                    verified: true,
                }),
        },
        Err(e) => hacore::state::EtcdBackup {
            place,
            error: Some(e.to_string()),
            newest: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_destination_is_user_host_port_and_an_absolute_dir() {
        let d: SshDest = "backup@nas.lan:2222:/srv/etcd".parse().unwrap();
        assert_eq!(
            (d.user.as_str(), d.host.as_str(), d.port),
            ("backup", "nas.lan", 2222)
        );
        assert_eq!(d.dir, "/srv/etcd");
        let d: SshDest = "root@10.0.0.5:/var/backups".parse().unwrap();
        assert_eq!((d.port, d.dir.as_str()), (22, "/var/backups"));
        for bad in [
            "nas:/srv",
            "root@nas:srv",
            "root@nas:x:/srv",
            "-oProxyCommand=x@nas:/d",
        ] {
            let e = bad.parse::<SshDest>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn only_our_file_names_are_ours() {
        let t: Timestamp = "2026-12-07T01:02:03Z".parse().unwrap();
        let name = file_name_for(t, "m1");
        assert_eq!(name, "hacli-etcd-20261207T010203Z-m1.db");
        assert!(is_our_name(&name));
        for foreign in [
            "hacli-etcd-latest.db",
            "snapshot.db",
            "hacli-etcd-20261207T010203Z-m1.db.json",
            "hacli-etcd-20261207T010203Z-.db",
            "hacli-etcd-2026120xT010203Z-m1.db",
        ] {
            assert!(!is_our_name(foreign), "{foreign}");
        }
    }
}
