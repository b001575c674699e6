//! Recovery from lost etcd quorum (issue 24), the pure part: from what
//! survives (each master's data directory, the snapshots) choose the source
//! that loses least, say exactly what would be lost, and build the steps,
//! each with its rollback.
//!
//! A recovery is asked only when quorum is lost: at most `quorum - 1`
//! voters answer. While quorum holds, taking members down is a
//! disruption, not a recovery: [`decide`] refuses with the count.
//!
//! The loss is counted in etcd revisions: every write the cluster
//! committed moved the revision by one, so a source at revision `r` loses
//! the revisions `r+1 ..= newest`, where `newest` is the highest revision
//! any readable member or verified snapshot holds. A member whose data
//! could not be read is unknown: whatever it holds beyond `newest` is
//! unknown, never zero, and the decision says so by name.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backend::{CpOp, LbOp};
use crate::quorum::quorum;

/// What a master's etcd data directory holds, as read over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum DataDir {
    /// Its backend was read (`etcdutl snapshot status` of its `db`).
    Known {
        /// The revision it holds.
        revision: i64,
        /// The backend's hash.
        hash: u32,
        /// Keys in the backend (every revision of every key).
        keys: u64,
    },
    /// It holds no etcd data: the directory is there and has no `member`
    /// (read, not assumed).
    Empty,
    /// It could not be read (host down, no answer, a damaged file): what it
    /// holds is unknown, never "empty".
    Unknown {
        /// Why.
        why: String,
    },
}

/// One master, as observed for a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberFacts {
    /// The node.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
    /// Whether its etcd answered as a healthy voter.
    pub voter_answering: bool,
    /// Whether it answered over SSH.
    pub reachable: bool,
    /// Its data directory.
    pub data: DataDir,
}

/// One snapshot file, as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFacts {
    /// The file.
    pub path: String,
    /// The revision it holds (0 when the check failed).
    pub revision: i64,
    /// Its hash.
    pub hash: u32,
    /// Why its integrity check failed; None: it passed.
    pub failed: Option<String>,
}

/// Where the recovered member's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Source {
    /// A surviving member's own data directory.
    Member {
        /// The master.
        node: String,
        /// Its revision.
        revision: i64,
    },
    /// A verified snapshot file.
    Snapshot {
        /// The file.
        path: String,
        /// Its revision.
        revision: i64,
    },
}

impl Source {
    /// The revision the source holds.
    pub fn revision(&self) -> i64 {
        match self {
            Source::Member { revision, .. } | Source::Snapshot { revision, .. } => *revision,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Member { node, revision } => {
                write!(f, "the data directory of {node} (revision {revision})")
            }
            Source::Snapshot { path, revision } => {
                write!(f, "the snapshot {path} (revision {revision})")
            }
        }
    }
}

/// What a recovery from a source loses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Loss {
    /// The newest revision anything readable holds.
    pub newest: i64,
    /// Revisions known lost: `source+1 ..= newest` (0 when none).
    pub revisions: i64,
    /// The masters whose data is unknown: what they hold beyond `newest`
    /// is unknown.
    pub unknown: Vec<String>,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revisions == 0 {
            write!(
                f,
                "no revision known to be lost (newest readable: {})",
                self.newest
            )?;
        } else {
            write!(
                f,
                "{} revision(s) lost: {}..={} (newest readable: {})",
                self.revisions,
                self.newest - self.revisions + 1,
                self.newest,
                self.newest
            )?;
        }
        if !self.unknown.is_empty() {
            write!(
                f,
                "; unknown beyond revision {}: the data of {} could not be read",
                self.newest,
                self.unknown.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The decision on a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    /// Not a recovery: quorum holds, or nothing can be recovered from.
    Refused {
        /// Why, for a person.
        reason: String,
    },
    /// Recover from `source` on the master `on`.
    Recover {
        /// The master that becomes the one-member cluster.
        on: String,
        /// Its address.
        address: IpAddr,
        /// The source.
        source: Source,
        /// What it loses.
        loss: Loss,
        /// The other masters, rejoined afterwards.
        others: Vec<String>,
        /// Snapshots refused (their integrity check failed): file and what.
        refused_snapshots: Vec<String>,
    },
}

/// The quorum verdict of what answers: Some(reason) when quorum holds.
pub fn quorum_holds(members: &[MemberFacts]) -> Option<String> {
    let voters = members.len();
    let answering = members.iter().filter(|m| m.voter_answering).count();
    let q = quorum(voters);
    (voters > 0 && answering >= q).then(|| {
        format!(
            "quorum holds: {answering} of {voters} voters answer (quorum {q}); taking members down is a disruption, not a recovery (use `hacli disrupt`)"
        )
    })
}

/// Choose the source that loses least among the readable members and the
/// verified snapshots (a member's own data before a snapshot of the same
/// revision), on the master `on` when given (else the source member, else
/// the first master answering over SSH).
pub fn decide(members: &[MemberFacts], snapshots: &[SnapshotFacts], on: Option<&str>) -> Decision {
    if let Some(reason) = quorum_holds(members) {
        return Decision::Refused { reason };
    }
    let refused_snapshots: Vec<String> = snapshots
        .iter()
        .filter_map(|s| s.failed.as_ref().map(|w| format!("{}: {w}", s.path)))
        .collect();
    let best_member = members
        .iter()
        .filter_map(|m| match m.data {
            DataDir::Known { revision, .. } if on.is_none_or(|o| o == m.name) => {
                Some((revision, m))
            }
            _ => None,
        })
        .max_by_key(|(r, _)| *r);
    let best_snapshot = snapshots
        .iter()
        .filter(|s| s.failed.is_none())
        .max_by_key(|s| s.revision);
    let source = match (best_member, best_snapshot) {
        (Some((r, _)), Some(s)) if s.revision > r => Source::Snapshot {
            path: s.path.clone(),
            revision: s.revision,
        },
        (Some((r, m)), _) => Source::Member {
            node: m.name.clone(),
            revision: r,
        },
        (None, Some(s)) => Source::Snapshot {
            path: s.path.clone(),
            revision: s.revision,
        },
        (None, None) => {
            return Decision::Refused {
                reason: format!(
                    "nothing to recover from: no master's data directory could be read{} and no verified snapshot{}",
                    on.map(|o| format!(" on {o}")).unwrap_or_default(),
                    if refused_snapshots.is_empty() {
                        String::new()
                    } else {
                        format!(" (refused: {})", refused_snapshots.join("; "))
                    }
                ),
            };
        }
    };
    let target = match (&source, on) {
        (_, Some(o)) => members.iter().find(|m| m.name == o),
        (Source::Member { node, .. }, None) => members.iter().find(|m| &m.name == node),
        (Source::Snapshot { .. }, None) => members.iter().find(|m| m.reachable),
    };
    let Some(target) = target.filter(|t| t.reachable) else {
        return Decision::Refused {
            reason: format!(
                "no master to restore on: {}",
                on.map(|o| format!("{o} is not a master answering over SSH"))
                    .unwrap_or_else(|| "no master answers over SSH".into())
            ),
        };
    };
    let newest = members
        .iter()
        .filter_map(|m| match m.data {
            DataDir::Known { revision, .. } => Some(revision),
            _ => None,
        })
        .chain(
            snapshots
                .iter()
                .filter(|s| s.failed.is_none())
                .map(|s| s.revision),
        )
        .max()
        .unwrap_or(0)
        .max(source.revision());
    let unknown = members
        .iter()
        .filter(|m| matches!(m.data, DataDir::Unknown { .. }))
        .map(|m| m.name.clone())
        .collect();
    Decision::Recover {
        on: target.name.clone(),
        address: target.address,
        loss: Loss {
            newest,
            revisions: newest - source.revision(),
            unknown,
        },
        source,
        others: members
            .iter()
            .filter(|m| m.name != target.name)
            .map(|m| m.name.clone())
            .collect(),
        refused_snapshots,
    }
}

/// What a recovery step does (the live layer carries it out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum RecoverOp {
    /// Stop etcd and the apiserver on `node`: their static pod manifests
    /// moved aside (kept), the processes gone.
    StopControlPlane {
        /// The master.
        node: String,
    },
    /// Put the manifests moved aside back (the kubelet starts the pods).
    StartControlPlane {
        /// The master.
        node: String,
    },
    /// Restore `source` into a fresh data directory on `node` as a
    /// one-member cluster, the old directory kept aside.
    Restore {
        /// The master.
        node: String,
        /// Its address (its peer URL).
        address: IpAddr,
        /// The source.
        source: Source,
        /// The old member directory is kept as `DATA/member.SUFFIX`.
        #[serde(rename = "keptSuffix", alias = "kept_suffix")]
        kept_suffix: String,
    },
    /// Put the data directory kept aside back (rollback of `Restore`).
    PutBackData {
        /// The master.
        node: String,
        /// As in `Restore`.
        #[serde(rename = "keptSuffix", alias = "kept_suffix")]
        kept_suffix: String,
    },
    /// Wait until `node` answers over SSH (a master powered on again).
    WaitReachable {
        /// The master.
        node: String,
    },
    /// The etcd static pod manifest of `node` names only itself
    /// (`--initial-cluster`, `--initial-cluster-state=new`), the old one
    /// kept.
    OneMemberManifest {
        /// The master.
        node: String,
        /// Its address.
        address: IpAddr,
    },
    /// Put the kept etcd manifest back (rollback of `OneMemberManifest`).
    PutBackManifest {
        /// The master.
        node: String,
    },
    /// Wait until `node`'s etcd is a one-member cluster answering and its
    /// apiserver answers `/readyz`.
    WaitServing {
        /// The master.
        node: String,
    },
    /// A load-balancer operation.
    LoadBalancer(LbOp),
    /// A control-plane operation (the migration's join path).
    ControlPlane(CpOp),
}

/// One step of a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverStep {
    /// Journal id.
    pub id: String,
    /// For a person.
    pub title: String,
    /// What it does.
    pub op: RecoverOp,
    /// What undoes it; None with `no_rollback` saying why.
    pub rollback: Option<RecoverOp>,
    /// Why there is no rollback, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_rollback: Option<String>,
}

/// The recovery's steps for a [`Decision::Recover`]: the pool reduced to
/// the target, stop the reachable others and the target, restore,
/// one-member manifest, start, every other master awaited and fenced, then each
/// reset, joined as a learner, promoted, tainted and put back in the pool,
/// one at a time.
/// `others` gives each other master's address and whether it answered
/// over SSH; `pool` the load balancer's pool (None: no load balancer to
/// touch); `port` the apiserver port; `run` names this run (the kept data
/// directory's suffix).
pub fn steps(
    run: &str,
    on: &str,
    address: IpAddr,
    source: &Source,
    others: &[(String, IpAddr, bool)],
    pool: Option<&str>,
    port: u16,
) -> Vec<RecoverStep> {
    let mut out = Vec::new();
    // The others out of the pool first, while nothing serves: two of the
    // old members powered on again form the old cluster's quorum, and
    // their apiservers, ready again, would serve it through the
    // control-plane endpoint (writes acknowledged there are lost at their
    // fence). Only the restored master is ever in the pool until the
    // others rejoin.
    if let Some(pool) = pool {
        for (o, addr, _) in others {
            out.push(step(
                format!("recover/pool-remove/{o}"),
                format!("take {o} out of pool {pool}: only {on} will serve"),
                RecoverOp::LoadBalancer(LbOp::RemoveServer {
                    pool: pool.into(),
                    server: o.clone(),
                }),
                Some(RecoverOp::LoadBalancer(LbOp::AddServer {
                    pool: pool.into(),
                    server: o.clone(),
                    address: std::net::SocketAddr::new(*addr, port),
                })),
            ));
        }
    }
    for (o, _, reachable) in others {
        if *reachable {
            out.push(step(
                format!("recover/fence/{o}"),
                format!("stop etcd and the apiserver on {o} (their manifests kept aside)"),
                RecoverOp::StopControlPlane { node: o.clone() },
                Some(RecoverOp::StartControlPlane { node: o.clone() }),
            ));
        }
    }
    out.extend(restore_steps(run, on, address, source));
    // Every other master fenced before any joins: two of the old members
    // powered on again would form the old cluster's quorum, and a join
    // must reach only the new cluster's etcd.
    for (o, _, _) in others {
        out.push(RecoverStep {
            id: format!("recover/reachable/{o}"),
            title: format!("wait until {o} answers over SSH (powered on again)"),
            op: RecoverOp::WaitReachable { node: o.clone() },
            rollback: None,
            no_rollback: Some("a check".into()),
        });
        out.push(step(
            format!("recover/fence-rejoin/{o}"),
            format!("stop etcd and the apiserver on {o} before any master rejoins (its old cluster never serves)"),
            RecoverOp::StopControlPlane { node: o.clone() },
            Some(RecoverOp::StartControlPlane { node: o.clone() }),
        ));
    }
    for (o, addr, _) in others {
        out.extend(rejoin_steps(o, *addr, pool, port));
    }
    out
}

/// A step with its rollback.
fn step(id: String, title: String, op: RecoverOp, rollback: Option<RecoverOp>) -> RecoverStep {
    RecoverStep {
        id,
        title,
        op,
        rollback,
        no_rollback: None,
    }
}

/// The steps that bring `on` back from `source` alone: stop, restore into a
/// fresh data directory (the old one kept with `run`'s suffix), a
/// one-member manifest, start, wait until it serves.
fn restore_steps(run: &str, on: &str, address: IpAddr, source: &Source) -> Vec<RecoverStep> {
    let mut out = Vec::new();
    out.push(step(
        format!("recover/stop/{on}"),
        format!("stop etcd and the apiserver on {on} (their manifests kept aside)"),
        RecoverOp::StopControlPlane { node: on.into() },
        Some(RecoverOp::StartControlPlane { node: on.into() }),
    ));
    out.push(step(
        format!("recover/restore/{on}"),
        format!("restore {source} into a fresh data directory on {on}, the old one kept aside"),
        RecoverOp::Restore {
            node: on.into(),
            address,
            source: source.clone(),
            kept_suffix: format!("hacli-recover-{run}"),
        },
        Some(RecoverOp::PutBackData {
            node: on.into(),
            kept_suffix: format!("hacli-recover-{run}"),
        }),
    ));
    out.push(step(
        format!("recover/manifest/{on}"),
        format!("etcd's static pod manifest on {on} names only {on} (the old one kept)"),
        RecoverOp::OneMemberManifest {
            node: on.into(),
            address,
        },
        Some(RecoverOp::PutBackManifest { node: on.into() }),
    ));
    out.push(step(
        format!("recover/start/{on}"),
        format!("start etcd and the apiserver on {on}"),
        RecoverOp::StartControlPlane { node: on.into() },
        Some(RecoverOp::StopControlPlane { node: on.into() }),
    ));
    out.push(RecoverStep {
        id: format!("recover/serving/{on}"),
        title: format!("wait until {on}'s etcd is one voter answering and its apiserver is ready"),
        op: RecoverOp::WaitServing { node: on.into() },
        rollback: None,
        no_rollback: Some("a check".into()),
    });
    out
}

/// The steps that bring the other master `o` (at `addr`) back, once every
/// other master is fenced: reset, join as a learner, promoted, tainted,
/// and put back in `pool` (the apiserver on `port`) when there is one.
fn rejoin_steps(o: &str, addr: IpAddr, pool: Option<&str>, port: u16) -> Vec<RecoverStep> {
    let mut out = Vec::new();
    let cp = |op| RecoverOp::ControlPlane(op);
    out.push(RecoverStep {
        id: format!("recover/reset/{o}"),
        title: format!("reset {o} (`kubeadm reset -f`: its old etcd data and member gone)"),
        op: cp(CpOp::ResetNode { node: o.into() }),
        rollback: None,
        no_rollback: Some(format!(
            "{o}'s old data belongs to the lost cluster: it is never started again"
        )),
    });
    out.push(step(
        format!("recover/join/{o}"),
        format!("join {o} as a control-plane node (an etcd learner first)"),
        cp(CpOp::JoinControlPlane {
            node: o.into(),
            address: addr,
        }),
        Some(cp(CpOp::ResetNode { node: o.into() })),
    ));
    out.push(RecoverStep {
        id: format!("recover/promoted/{o}"),
        title: format!("{o}'s etcd member is a voter"),
        op: cp(CpOp::MemberPromoted { node: o.into() }),
        rollback: None,
        no_rollback: Some("a check".into()),
    });
    out.push(RecoverStep {
        id: format!("recover/taint/{o}"),
        title: format!("{o} carries the control-plane taint"),
        op: cp(CpOp::EnsureControlPlaneTaint { node: o.into() }),
        rollback: None,
        no_rollback: Some("the node's own state".into()),
    });
    if let Some(pool) = pool {
        out.push(step(
            format!("recover/pool-add/{o}"),
            format!("put {o} back in pool {pool}"),
            RecoverOp::LoadBalancer(LbOp::AddServer {
                pool: pool.into(),
                server: o.into(),
                address: std::net::SocketAddr::new(addr, port),
            }),
            Some(RecoverOp::LoadBalancer(LbOp::RemoveServer {
                pool: pool.into(),
                server: o.into(),
            })),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, answering: bool, data: DataDir) -> MemberFacts {
        MemberFacts {
            name: name.into(),
            address: "198.18.0.11".parse().unwrap(),
            voter_answering: answering,
            reachable: !matches!(data, DataDir::Unknown { .. }),
            data,
        }
    }
    fn known(revision: i64) -> DataDir {
        DataDir::Known {
            revision,
            hash: 1,
            keys: 1,
        }
    }
    fn unknown() -> DataDir {
        DataDir::Unknown {
            why: "no answer over SSH".into(),
        }
    }
    fn snap(path: &str, revision: i64, failed: Option<&str>) -> SnapshotFacts {
        SnapshotFacts {
            path: path.into(),
            revision,
            hash: 2,
            failed: failed.map(Into::into),
        }
    }

    #[test]
    fn a_recovery_asked_while_two_of_three_voters_answer_is_refused_with_the_count() {
        let d = decide(
            &[
                m("m1", true, known(9)),
                m("m2", true, known(9)),
                m("m3", false, unknown()),
            ],
            &[],
            None,
        );
        let Decision::Refused { reason } = d else {
            panic!("{d:?}")
        };
        assert!(reason.contains("2 of 3 voters answer"), "{reason}");
    }

    #[test]
    fn the_survivor_wins_over_an_older_snapshot_and_the_unreadable_are_named_unknown() {
        let d = decide(
            &[
                m("m1", true, known(120)),
                m("m2", false, unknown()),
                m("m3", false, unknown()),
            ],
            &[snap("/s/a.db", 100, None)],
            None,
        );
        let Decision::Recover {
            on,
            source,
            loss,
            others,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(on, "m1");
        assert_eq!(
            source,
            Source::Member {
                node: "m1".into(),
                revision: 120
            }
        );
        assert_eq!(loss.revisions, 0);
        assert_eq!(loss.unknown, ["m2", "m3"]);
        assert!(
            loss.to_string().contains("unknown beyond revision 120"),
            "{loss}"
        );
        assert_eq!(others, ["m2", "m3"]);
    }

    #[test]
    fn with_every_data_directory_empty_the_newest_verified_snapshot_is_chosen_and_a_corrupt_newer_one_refused()
     {
        let d = decide(
            &[
                m("m1", false, DataDir::Empty),
                m("m2", false, DataDir::Empty),
                m("m3", false, DataDir::Empty),
            ],
            &[
                snap("/s/old.db", 50, None),
                snap("/s/new.db", 80, None),
                snap(
                    "/s/bad.db",
                    0,
                    Some("the SHA-256 at its end does not match"),
                ),
            ],
            None,
        );
        let Decision::Recover {
            on,
            source,
            loss,
            refused_snapshots,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(on, "m1");
        assert_eq!(source.revision(), 80);
        assert!(matches!(source, Source::Snapshot { ref path, .. } if path == "/s/new.db"));
        assert_eq!(loss.revisions, 0);
        assert!(loss.unknown.is_empty(), "empty is read, not unknown");
        assert_eq!(refused_snapshots.len(), 1);
        assert!(refused_snapshots[0].starts_with("/s/bad.db: the SHA-256"));
    }

    #[test]
    fn a_stale_survivor_loses_the_revisions_a_newer_snapshot_holds_so_the_snapshot_is_chosen() {
        let d = decide(
            &[m("m1", false, known(70)), m("m2", false, known(60))],
            &[snap("/s/a.db", 90, None)],
            None,
        );
        let Decision::Recover { source, loss, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(source.revision(), 90);
        assert_eq!(loss.revisions, 0);
        // Asked to recover on m2 from its own data: 30 revisions lost, said.
        let d = decide(
            &[m("m1", false, known(70)), m("m2", false, known(60))],
            &[],
            Some("m2"),
        );
        let Decision::Recover { source, loss, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(source.revision(), 60);
        assert_eq!(loss.revisions, 10);
        assert!(loss.to_string().contains("61..=70"), "{loss}");
    }

    #[test]
    fn nothing_readable_and_no_verified_snapshot_is_refused_naming_the_refused_files() {
        let d = decide(
            &[m("m1", false, unknown()), m("m2", false, unknown())],
            &[snap("/s/bad.db", 0, Some("truncated"))],
            None,
        );
        let Decision::Refused { reason } = d else {
            panic!("{d:?}")
        };
        assert!(reason.contains("/s/bad.db: truncated"), "{reason}");
    }

    #[test]
    fn every_step_but_the_checks_and_the_reset_has_a_rollback_and_the_others_rejoin_one_at_a_time()
    {
        let a: IpAddr = "198.18.0.11".parse().unwrap();
        let b: IpAddr = "198.18.0.12".parse().unwrap();
        let s = steps(
            "20260101T000000Z",
            "m1",
            a,
            &Source::Member {
                node: "m1".into(),
                revision: 5,
            },
            &[("m2".into(), b, false), ("m3".into(), b, true)],
            Some("apiservers"),
            6443,
        );
        for st in &s {
            assert!(st.rollback.is_some() != st.no_rollback.is_some(), "{st:?}");
        }
        let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids[..3],
            [
                "recover/pool-remove/m2",
                "recover/pool-remove/m3",
                "recover/fence/m3"
            ],
            "the others out of the pool first; only the reachable other is fenced"
        );
        let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
        assert!(pos("recover/pool-remove/m3") < pos("recover/start/m1"));
        assert!(pos("recover/pool-add/m2") < pos("recover/reset/m3"));
        assert!(
            pos("recover/fence-rejoin/m3") < pos("recover/join/m2"),
            "all fenced before any join"
        );
        assert!(pos("recover/join/m3") < pos("recover/promoted/m3"));
    }
}
