//! Recovery from lost etcd quorum (issue 24), what kubeadm's masters are
//! asked: each master's etcd data directory read over SSH (its `db` copied
//! and read with `etcdutl snapshot status` where hacli runs: a master needs
//! no etcd tool), whether its etcd answers as a voter with a leader, and
//! the actions: etcd and the apiserver stopped and started by moving their
//! static pod manifests aside and back, a source restored with `etcdutl
//! snapshot restore` where hacli runs and sent over SSH into a fresh data
//! member directory (the old one kept beside it, never deleted), the etcd manifest
//! switched to one member (the old one kept), and the wait until the
//! one-member cluster serves.
//!
//! Every action is idempotent and says when it was already done; what it
//! moves is named exactly (kubeadm's `etcd.yaml`, `kube-apiserver.yaml`,
//! the data directory), and a place it would overwrite that holds
//! something else is refused, naming it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use etcd_client::{Certificate, Client as Etcd, ConnectOptions, Identity, TlsOptions};
use hacore::recover::{DataDir, MemberFacts, SnapshotFacts, Source};
use ssh::Cmd;
use tokio::time::{Instant, sleep, timeout};

use crate::control_plane::{CpError, KubeadmControlPlane};
use crate::snapshot::Tools;

/// kubeadm's static pod manifests.
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// Where a recovery keeps the manifests it stopped (outside the kubelet's
/// directory) and the etcd manifest it replaced.
pub const ASIDE: &str = "/etc/kubernetes/hacli-recover";
/// kubeadm's etcd data directory.
pub const DATA_DIR: &str = "/var/lib/etcd";
/// The manifests a recovery stops and starts.
pub const STOPPED: [&str; 2] = ["etcd.yaml", "kube-apiserver.yaml"];

const MAX_DB: usize = 8 << 30;

fn host_for_url(a: IpAddr) -> String {
    match a {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    }
}

fn tls(cp: &KubeadmControlPlane) -> Result<TlsOptions, CpError> {
    let t = cp.options().etcd_tls.resolve(cp.topology());
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| CpError::Config(format!("cannot read etcd TLS file {}: {e}", p.display())))
    };
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&t.ca)?))
        .identity(Identity::from_pem(read(&t.cert)?, read(&t.key)?)))
}

/// What one member's etcd says of itself: Some((its id, the leader it
/// knows, members listed)) when it answers within `wait`.
async fn etcd_status(
    tls: &TlsOptions,
    address: IpAddr,
    wait: Duration,
) -> Result<(u64, u64, usize, bool), String> {
    let url = format!("https://{}:2379", host_for_url(address));
    let opts = ConnectOptions::new()
        .with_tls(tls.clone())
        .with_connect_timeout(wait)
        .with_timeout(wait);
    let r = timeout(wait, async {
        let mut c = Etcd::connect([url.as_str()], Some(opts)).await?;
        let s = c.status().await?;
        let members = c
            .member_list()
            .await
            .map(|m| m.members().len())
            .unwrap_or(0);
        Ok::<_, etcd_client::Error>((s, members))
    })
    .await;
    match r {
        Ok(Ok((s, members))) => Ok((
            s.header().map(|h| h.member_id()).unwrap_or_default(),
            s.leader(),
            members,
            s.is_learner(),
        )),
        Ok(Err(e)) => Err(crate::observe::describe(&e)),
        Err(_) => Err("no answer before the deadline".into()),
    }
}

/// The `--data-dir` of an etcd manifest (kubeadm's default otherwise).
pub fn data_dir_of(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .strip_prefix("--data-dir=")
        })
        .map(|d| d.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| DATA_DIR.to_string())
}

/// The etcd manifest with `--initial-cluster` naming only `name` at
/// `peer` and `--initial-cluster-state=new`; None when it has neither flag
/// line to change (not a kubeadm etcd manifest).
pub fn one_member_manifest(text: &str, name: &str, peer: &str) -> Option<String> {
    let mut seen = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            let t = l.trim_start();
            if t.starts_with("- --initial-cluster=") {
                seen = true;
                format!("{indent}- --initial-cluster={name}={peer}")
            } else if t.starts_with("- --initial-cluster-state=") {
                format!("{indent}- --initial-cluster-state=new")
            } else {
                l.to_string()
            }
        })
        .collect();
    seen.then(|| out.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// `etcdutl snapshot status` of a backend file: its hash, revision, keys.
pub fn db_status(tools: &Tools, db: &Path) -> Result<(u32, i64, u64), String> {
    let out = std::process::Command::new(&tools.etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(db)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", tools.etcdutl.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "etcdutl snapshot status: {}",
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("etcdutl snapshot status printed no status: {e}"))?;
    match (
        v["hash"].as_u64(),
        v["revision"].as_i64(),
        v["totalKey"].as_u64(),
    ) {
        (Some(h), Some(r), Some(k)) => Ok((h as u32, r, k)),
        _ => Err(format!("etcdutl snapshot status: unexpected answer {v}")),
    }
}

/// Check a snapshot file: its SHA-256 trailer and `etcdutl snapshot
/// status`; a failure is data (the file and what failed).
pub fn snapshot_facts(tools: &Tools, path: &Path) -> SnapshotFacts {
    match crate::snapshot::check(tools, path) {
        Ok(s) => SnapshotFacts {
            path: path.display().to_string(),
            revision: s.revision,
            hash: s.hash,
            failed: None,
        },
        Err(e) => SnapshotFacts {
            path: path.display().to_string(),
            revision: 0,
            hash: 0,
            failed: Some(match e {
                crate::snapshot::SnapshotError::Integrity { what, .. } => what,
                other => other.to_string(),
            }),
        },
    }
}

impl KubeadmControlPlane {
    async fn data_dir(&self, node: &str) -> Result<String, CpError> {
        for dir in [MANIFESTS, ASIDE] {
            if let Some(t) = self.read_remote(node, &format!("{dir}/etcd.yaml")).await? {
                return Ok(data_dir_of(&t));
            }
        }
        Ok(DATA_DIR.to_string())
    }

    /// Copy `node`'s etcd backend (`DATA/member/snap/db`) into `into`;
    /// Ok(false) when the data directory holds no member (read, not
    /// assumed).
    async fn fetch_db(&self, node: &str, into: &Path) -> Result<bool, CpError> {
        let dir = self.data_dir(node).await?;
        let cmd = Cmd::shell(
            r#"if [ ! -e "$1/member" ]; then exit 4; fi; exec cat -- "$1/member/snap/db""#,
        )
        .arg(&dir)
        .max_output(MAX_DB);
        let out = self.run_raw(node, &cmd, Duration::from_secs(300)).await?;
        if out.status == ssh::ExitStatus::Code(4) {
            return Ok(false);
        }
        if !out.success() {
            return Err(CpError::Protocol {
                what: format!("{node}: reading {dir}/member/snap/db"),
                detail: out.stderr_str().trim().to_string(),
            });
        }
        std::fs::write(into, &out.stdout)
            .map_err(|e| CpError::Config(format!("{}: {e}", into.display())))?;
        Ok(true)
    }

    /// Observe every master of the topology for a recovery: whether its
    /// etcd answers as a voter that knows a leader (within
    /// `member_timeout`), whether it answers over SSH (within `ssh_wait`),
    /// and what its data directory holds (unknown when it cannot be read).
    pub fn recover_observe(
        &self,
        tools: &Tools,
        member_timeout: Duration,
        ssh_wait: Duration,
    ) -> Result<Vec<MemberFacts>, CpError> {
        let tls = tls(self)?;
        let scratch = tempfile::tempdir()
            .map_err(|e| CpError::Config(format!("a scratch directory: {e}")))?;
        let masters: Vec<(String, IpAddr)> = self
            .topology()
            .control_plane_nodes()
            .map(|n| (n.name.clone(), n.address))
            .collect();
        self.block_on(async {
            let mut out = Vec::new();
            for (name, address) in masters {
                let voter_answering = matches!(
                    etcd_status(&tls, address, member_timeout).await,
                    Ok((_, leader, _, false)) if leader != 0
                );
                let db = scratch.path().join(format!("{name}.db"));
                let read = match timeout(ssh_wait, self.session(&name)).await {
                    Err(_) => None,
                    Ok(Err(e)) => Some(Err(e)),
                    Ok(Ok(_)) => Some(self.fetch_db(&name, &db).await),
                };
                let (reachable, data) = match read {
                    None => (
                        false,
                        DataDir::Unknown {
                            why: format!("no answer over SSH within {ssh_wait:?}"),
                        },
                    ),
                    Some(r) => match r {
                        Err(CpError::Ssh(e)) => (false, DataDir::Unknown { why: e.to_string() }),
                        Err(e) => (true, DataDir::Unknown { why: e.to_string() }),
                        Ok(false) => (true, DataDir::Empty),
                        Ok(true) => match db_status(tools, &db) {
                            Ok((hash, revision, keys)) => (
                                true,
                                DataDir::Known {
                                    revision,
                                    hash,
                                    keys,
                                },
                            ),
                            Err(why) => (
                                true,
                                DataDir::Unknown {
                                    why: format!("its db could not be read: {why}"),
                                },
                            ),
                        },
                    },
                };
                out.push(MemberFacts {
                    name,
                    address,
                    voter_answering,
                    reachable,
                    data,
                });
            }
            Ok(out)
        })
    }

    /// Wait (at most `bound`) until `node` answers over SSH.
    pub fn recover_wait_ssh(&self, node: &str, bound: Duration) -> Result<(), CpError> {
        self.block_on(async {
            let until = Instant::now() + bound;
            loop {
                let probe = timeout(Duration::from_secs(10), self.exists_remote(node, "/")).await;
                match probe {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) if Instant::now() > until => return Err(e),
                    _ if Instant::now() > until => {
                        return Err(CpError::Timeout {
                            what: format!("{node} answering over SSH"),
                            deadline: bound,
                        });
                    }
                    _ => sleep(Duration::from_secs(1)).await,
                }
            }
        })
    }

    /// Whether etcd and the apiserver of `node` are stopped by a recovery:
    /// their manifests are aside and not in the kubelet's directory.
    pub fn recover_is_stopped(&self, node: &str) -> Result<bool, CpError> {
        self.block_on(async {
            for f in STOPPED {
                if self
                    .exists_remote(node, &format!("{MANIFESTS}/{f}"))
                    .await?
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Stop etcd and the apiserver on `node`: `etcd.yaml` and
    /// `kube-apiserver.yaml` moved from the kubelet's directory into
    /// [`ASIDE`] (a different file of that name already
    /// there from an earlier recovery is kept under a dated name), then
    /// wait until neither runs (`crictl ps`).
    pub fn recover_stop(&self, node: &str) -> Result<(), CpError> {
        let script = r#"set -e; mkdir -p -m 700 "$2"
for f in etcd.yaml kube-apiserver.yaml; do
  if [ -e "$1/$f" ]; then
    # One kept by an earlier recovery, since replaced (a rejoin): kept
    # under a dated name, never overwritten.
    if [ -e "$2/$f" ] && ! cmp -s "$1/$f" "$2/$f"; then mv -- "$2/$f" "$2/$f.replaced-$(date +%Y%m%dT%H%M%S)"; fi
    mv -f -- "$1/$f" "$2/$f"
  fi
done
sync"#;
        let cmd = Cmd::shell(script).arg(MANIFESTS).arg(ASIDE);
        let timeout_ = self.options().timeout;
        self.block_on(async {
            self.run(node, &cmd, timeout_).await?;
            let until = Instant::now() + Duration::from_secs(90);
            let ps = Cmd::shell(
                "crictl ps -q --state running --name '^(etcd|kube-apiserver)$' 2>/dev/null | head -n1",
            );
            loop {
                let out = self.run_raw(node, &ps, timeout_).await?;
                if out.success() && out.stdout_str().trim().is_empty() {
                    return Ok(());
                }
                if Instant::now() > until {
                    return Err(CpError::Timeout {
                        what: format!("{node}: etcd and the apiserver stopping"),
                        deadline: Duration::from_secs(90),
                    });
                }
                sleep(Duration::from_millis(300)).await;
            }
        })
    }

    /// Put the manifests a recovery moved aside back into the kubelet's
    /// directory (the kubelet starts the pods); Ok(false) when none was
    /// aside (already started).
    pub fn recover_start(&self, node: &str) -> Result<bool, CpError> {
        let script = r#"set -e; moved=1
for f in etcd.yaml kube-apiserver.yaml; do
  if [ -e "$2/$f" ]; then
    if [ -e "$1/$f" ]; then echo "refused: both $1/$f and $2/$f exist" >&2; exit 5; fi
    mv -f -- "$2/$f" "$1/$f"; moved=0
  fi
done
exit $moved"#;
        let cmd = Cmd::shell(script).arg(MANIFESTS).arg(ASIDE);
        self.block_on(async {
            let out = self.run_raw(node, &cmd, self.options().timeout).await?;
            match out.status {
                ssh::ExitStatus::Code(0) => Ok(true),
                ssh::ExitStatus::Code(1) => Ok(false),
                _ => Err(CpError::Refused(format!(
                    "{node}: {}",
                    out.stderr_str().trim()
                ))),
            }
        })
    }

    /// Whether the restore of `node` is done: the old member directory
    /// kept as `DATA/member.SUFFIX` and a member in place.
    pub fn recover_is_restored(&self, node: &str, kept_suffix: &str) -> Result<bool, CpError> {
        self.block_on(async {
            let dir = self.data_dir(node).await?;
            let kept = &format!("{dir}/member.{kept_suffix}");
            Ok(self.exists_remote(node, kept).await?
                && self.exists_remote(node, &format!("{dir}/member")).await?)
        })
    }

    /// Restore `source` as a one-member cluster of `node` (peer URL on
    /// `address`): the backend fetched (a member's own, over SSH) or
    /// checked (a snapshot: its integrity, refused naming the file and what
    /// failed), `etcdutl snapshot restore` where hacli runs, the result sent
    /// over SSH into a fresh directory, the old `DATA/member` renamed to
    /// `DATA/member.SUFFIX` (kept, never deleted), the fresh one renamed
    /// into place. etcd must be stopped on `node` (refused otherwise).
    ///
    /// The restored cluster's token is `SUFFIX` (the run's own), as etcd's
    /// disaster-recovery guide restores with a new `--initial-cluster-token`:
    /// with kubeadm's default token and the same name and peer URL, the
    /// restored member would have the lost cluster's cluster ID and member
    /// ID, and the lost members, powered on again before they are fenced,
    /// would replicate their log into it (their entries applied there, etcd
    /// panics on a member it does not know). With its own token it is a new
    /// cluster: they are refused (cluster ID mismatch).
    pub fn recover_restore(
        &self,
        tools: &Tools,
        node: &str,
        address: IpAddr,
        source: &Source,
        kept_suffix: &str,
    ) -> Result<(), CpError> {
        if !self.recover_is_stopped(node)? {
            return Err(CpError::Refused(format!(
                "{node}: etcd's manifest is still in {MANIFESTS}: stop it before restoring"
            )));
        }
        let scratch = tempfile::tempdir()
            .map_err(|e| CpError::Config(format!("a scratch directory: {e}")))?;
        let (db, skip_hash) = self.restore_source(tools, source, scratch.path())?;
        let peer = format!("https://{}:2380", host_for_url(address));
        let restored = scratch.path().join("restored");
        let mut c = std::process::Command::new(&tools.etcdutl);
        c.args(["snapshot", "restore"])
            .arg(&db)
            .arg("--data-dir")
            .arg(&restored)
            .args(["--name", node])
            .arg(format!("--initial-cluster={node}={peer}"))
            .arg(format!("--initial-cluster-token={kept_suffix}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"));
        if skip_hash {
            // A member's db has no snapshot trailer to check.
            c.arg("--skip-hash-check");
        }
        let out = c
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CpError::Config(format!("running {}: {e}", tools.etcdutl.display())))?;
        if !out.status.success() {
            return Err(CpError::Protocol {
                what: format!("etcdutl snapshot restore {}", db.display()),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let tar = std::process::Command::new("tar")
            .arg("-C")
            .arg(&restored)
            .args(["-cf", "-", "member"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CpError::Config(format!("running tar: {e}")))?;
        if !tar.status.success() {
            return Err(CpError::Config(format!(
                "tar of the restored data: {}",
                String::from_utf8_lossy(&tar.stderr).trim()
            )));
        }
        // Inside the data directory (often a mount of its own, and a lab
        // host's private path): renames on one filesystem, atomic.
        let script = r#"set -e; d="$1"; kept="$1/member.$2"; new="$1/member.hacli-recover-new"
rm -rf -- "$new"; mkdir -m 700 -- "$new"; tar -C "$new" -xf -
if [ -e "$d/member" ]; then
  if [ -e "$kept" ]; then echo "refused: both $d/member and $kept exist" >&2; exit 5; fi
  mv -- "$d/member" "$kept"
else
  mkdir -m 700 -- "$kept"; : > "$kept/.no-member"
fi
mv -- "$new/member" "$d/member"; rmdir -- "$new"; sync"#;
        self.block_on(async {
            let dir = self.data_dir(node).await?;
            let cmd = Cmd::shell(script)
                .arg(&dir)
                .arg(kept_suffix)
                .stdin(tar.stdout);
            self.run(node, &cmd, Duration::from_secs(300))
                .await
                .map(|_| ())
        })
    }

    /// The db a restore reads, and whether its hash check is skipped: a
    /// snapshot checked (its integrity and the revision the plan chose),
    /// or a member's own db fetched over SSH into `scratch` (no trailer to
    /// check).
    fn restore_source(
        &self,
        tools: &Tools,
        source: &Source,
        scratch: &Path,
    ) -> Result<(PathBuf, bool), CpError> {
        Ok(match source {
            Source::Snapshot { path, revision } => {
                let p = PathBuf::from(path);
                let s = crate::snapshot::check(tools, &p)
                    .map_err(|e| CpError::Refused(e.to_string()))?;
                if s.revision != *revision {
                    return Err(CpError::Refused(format!(
                        "{path}: holds revision {}, the plan chose it at revision {revision}: not the same file",
                        s.revision
                    )));
                }
                (p, false)
            }
            Source::Member {
                node: from,
                revision,
            } => {
                let db = scratch.join("member.db");
                if !self.block_on(self.fetch_db(from, &db))? {
                    return Err(CpError::Refused(format!(
                        "{from}: its data directory holds no etcd member any more"
                    )));
                }
                let (_, r, _) = db_status(tools, &db)
                    .map_err(|w| CpError::Refused(format!("{from}: its db: {w}")))?;
                if r < *revision {
                    return Err(CpError::Refused(format!(
                        "{from}: its db holds revision {r}, less than the {revision} the plan chose"
                    )));
                }
                (db, true)
            }
        })
    }

    /// Put the kept member directory back (rollback of the restore): the
    /// restored one removed (its source is still there), the kept one
    /// renamed back (none when there was none).
    pub fn recover_put_back_data(&self, node: &str, kept_suffix: &str) -> Result<(), CpError> {
        self.block_on(async {
            let dir = self.data_dir(node).await?;
            let cmd = Cmd::shell(
                r#"set -e; d="$1"; kept="$1/member.$2"
if [ -e "$kept" ]; then
  rm -rf -- "$d/member"
  if [ -e "$kept/.no-member" ]; then rm -rf -- "$kept"; else mv -- "$kept" "$d/member"; fi
fi"#,
            )
            .arg(&dir)
            .arg(kept_suffix);
            self.run(node, &cmd, self.options().timeout)
                .await
                .map(|_| ())
        })
    }

    fn etcd_manifest_place(&self, node: &str) -> Result<(String, String), CpError> {
        self.block_on(async {
            for dir in [ASIDE, MANIFESTS] {
                let p = format!("{dir}/etcd.yaml");
                if let Some(t) = self.read_remote(node, &p).await? {
                    return Ok((p, t));
                }
            }
            Err(CpError::Refused(format!(
                "{node}: no etcd manifest in {MANIFESTS} or {ASIDE}: not a stacked-etcd master"
            )))
        })
    }

    /// Whether `node`'s etcd manifest names only itself.
    pub fn recover_is_one_member(&self, node: &str, address: IpAddr) -> Result<bool, CpError> {
        let (_, text) = self.etcd_manifest_place(node)?;
        let peer = format!("https://{}:2380", host_for_url(address));
        Ok(one_member_manifest(&text, node, &peer).as_deref() == Some(text.as_str()))
    }

    /// Switch `node`'s etcd manifest (aside or in place) to one member,
    /// the original kept as `ASIDE/etcd.yaml.before-recover` (one kept
    /// there by an earlier recovery renamed with a date, not overwritten).
    pub fn recover_one_member(&self, node: &str, address: IpAddr) -> Result<(), CpError> {
        let (path, text) = self.etcd_manifest_place(node)?;
        let peer = format!("https://{}:2380", host_for_url(address));
        let new = one_member_manifest(&text, node, &peer).ok_or_else(|| CpError::Protocol {
            what: format!("{node}: {path}"),
            detail: "no --initial-cluster flag: not kubeadm's etcd manifest".into(),
        })?;
        if new == text {
            return Ok(());
        }
        let keep = format!("{ASIDE}/etcd.yaml.before-recover");
        self.block_on(async {
            // The manifest is not switched yet: the one kept must be this
            // one. A different one kept by an earlier recovery (of a
            // cluster since rejoined) is renamed with a date, never
            // overwritten, so that this recovery's rollback puts back
            // what it replaced.
            match self.read_remote(node, &keep).await? {
                Some(old) if old == text => {}
                Some(_) => {
                    let cmd =
                        Cmd::shell(r#"mv -- "$1" "$1.replaced-$(date +%Y%m%dT%H%M%S)""#).arg(&keep);
                    self.run(node, &cmd, self.options().timeout).await?;
                    self.write_remote(node, &keep, text.as_bytes()).await?;
                }
                None => self.write_remote(node, &keep, text.as_bytes()).await?,
            }
            self.write_remote(node, &path, new.as_bytes()).await
        })
    }

    /// Put the kept etcd manifest back (rollback of the switch).
    pub fn recover_put_back_manifest(&self, node: &str) -> Result<(), CpError> {
        let keep = format!("{ASIDE}/etcd.yaml.before-recover");
        let (path, _) = self.etcd_manifest_place(node)?;
        self.block_on(async {
            if let Some(t) = self.read_remote(node, &keep).await? {
                self.write_remote(node, &path, t.as_bytes()).await?;
            }
            Ok(())
        })
    }

    /// Wait (at most `bound`) until `node`'s etcd is a one-member cluster
    /// that leads itself and its apiserver answers `/readyz`.
    pub fn recover_wait_serving(&self, node: &str, bound: Duration) -> Result<(), CpError> {
        let tls = tls(self)?;
        let address = self.node_address(node)?;
        let port = self.apiserver_port();
        self.block_on(async {
            let until = Instant::now() + bound;
            let mut last;
            loop {
                match etcd_status(&tls, address, Duration::from_secs(2)).await {
                    Ok((id, leader, 1, false)) if id == leader && id != 0 => {
                        match self.probe_apiserver(node, address, port).await {
                            Ok(true) => return Ok(()),
                            Ok(false) => last = "the apiserver is not ready".into(),
                            Err(e) => last = format!("the apiserver: {e}"),
                        }
                    }
                    Ok((_, leader, n, _)) => {
                        last = format!("etcd answers with {n} member(s), leader {leader:x}")
                    }
                    Err(e) => last = format!("etcd: {e}"),
                }
                if Instant::now() > until {
                    return Err(CpError::Timeout {
                        what: format!("{node} serving as a one-member cluster ({last})"),
                        deadline: bound,
                    });
                }
                sleep(Duration::from_millis(250)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    - --initial-cluster=m2=https://198.18.0.12:2380,m1=https://198.18.0.11:2380\n    - --initial-cluster-state=existing\n    - --name=m1\n";

    #[test]
    fn the_etcd_manifest_is_switched_to_its_own_member_and_nothing_else_changes() {
        let new = one_member_manifest(MANIFEST, "m1", "https://198.18.0.11:2380").unwrap();
        assert!(
            new.contains("    - --initial-cluster=m1=https://198.18.0.11:2380\n"),
            "{new}"
        );
        assert!(new.contains("    - --initial-cluster-state=new\n"), "{new}");
        assert_eq!(new.lines().count(), MANIFEST.lines().count());
        assert_eq!(
            one_member_manifest(&new, "m1", "https://198.18.0.11:2380").as_deref(),
            Some(new.as_str()),
            "idempotent"
        );
        assert_eq!(one_member_manifest("spec: {}\n", "m1", "x"), None);
        assert_eq!(data_dir_of(MANIFEST), "/var/lib/etcd");
        assert_eq!(data_dir_of("- --data-dir=/data/etcd\n"), "/data/etcd");
    }
}
