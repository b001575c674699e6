//! The operations on etcd (`etcd-client` over TLS with the observer's
//! client certificate): member list, promote, remove by id, snapshot, and
//! the per-member health check. Every request has a deadline.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use etcd_client::{Client as Etcd, ConnectOptions};
use tokio::time::timeout_at;

use super::{CpError, KubeadmControlPlane};

/// One etcd member as `member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Name (empty until it has started).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until it has started).
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// The host part of `https://HOST:PORT`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some(
        host.parse::<std::net::IpAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| host.to_string()),
    )
}

/// Whether removing member `id` leaves the voters that stay with a
/// healthy quorum: at least `n/2 + 1` of the `n` voters left are among
/// `healthy`. The error says how many are healthy and names the others.
pub fn quorum_after_removal(
    members: &[Member],
    id: u64,
    healthy: &BTreeSet<u64>,
) -> Result<(), String> {
    let left: Vec<&Member> = members
        .iter()
        .filter(|m| m.id != id && !m.is_learner)
        .collect();
    let up = left.iter().filter(|m| healthy.contains(&m.id)).count();
    let quorum = left.len() / 2 + 1;
    if up >= quorum {
        return Ok(());
    }
    let down: Vec<String> = left
        .iter()
        .filter(|m| !healthy.contains(&m.id))
        .map(|m| {
            if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                format!("{} ({:x})", m.name, m.id)
            }
        })
        .collect();
    Err(format!(
        "{up} of the {} voters left would be healthy, below their quorum of {quorum} (not answering a quorum read: {})",
        left.len(),
        down.join(", ")
    ))
}

impl KubeadmControlPlane {
    async fn etcd_connect(&self, url: &str) -> Result<Etcd, CpError> {
        let shown = crate::redact_url(url).into_owned();
        let opts = ConnectOptions::new()
            .with_tls(self.etcd_tls.clone())
            .with_connect_timeout(self.opts.timeout)
            .with_timeout(self.opts.timeout);
        match timeout_at(self.until(), Etcd::connect([url], Some(opts))).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(CpError::etcd(format!("connect {shown}"), e)),
            Err(_) => Err(CpError::Timeout {
                what: format!("etcd: connect {shown}"),
                deadline: self.opts.timeout,
            }),
        }
    }

    /// The member list, from the first endpoint that answers.
    pub async fn members(&self) -> Result<Vec<Member>, CpError> {
        let mut errors = Vec::new();
        for url in &self.etcd_endpoints {
            let shown = crate::redact_url(url).into_owned();
            let mut c = match self.etcd_connect(url).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match timeout_at(self.until(), c.member_list()).await {
                Ok(Ok(ml)) => {
                    return Ok(ml
                        .members()
                        .iter()
                        .map(|m| Member {
                            id: m.id(),
                            name: m.name().to_string(),
                            peer_urls: m.peer_urls().to_vec(),
                            client_urls: m.client_urls().to_vec(),
                            is_learner: m.is_learner(),
                        })
                        .collect());
                }
                Ok(Err(e)) => {
                    errors.push(CpError::etcd(format!("member list {shown}"), e).to_string())
                }
                Err(_) => errors.push(format!("etcd: member list {shown}: no answer")),
            }
        }
        Err(CpError::Etcd {
            what: "member list".into(),
            message: format!("no endpoint answered: {}", errors.join("; ")),
        })
    }

    /// `node`'s member: by name, else by a peer URL on its address (a
    /// member that has not started yet has no name).
    pub async fn member_of(&self, node: &str) -> Result<Option<Member>, CpError> {
        let addr = self.topology.node(node).map(|n| n.address.to_string());
        Ok(self.members().await?.into_iter().find(|m| {
            m.name == node
                || addr
                    .as_ref()
                    .is_some_and(|a| m.peer_urls.iter().any(|u| url_host(u).as_ref() == Some(a)))
        }))
    }

    pub(crate) async fn member_is_voter(&self, node: &str) -> Result<bool, CpError> {
        Ok(self.member_of(node).await?.is_some_and(|m| !m.is_learner))
    }

    /// Promote `node`'s learner (etcd refuses while it has not caught up).
    pub async fn promote_member(&self, node: &str) -> Result<(), CpError> {
        let m = self
            .member_of(node)
            .await?
            .ok_or_else(|| CpError::Refused(format!("{node} has no etcd member")))?;
        if !m.is_learner {
            return Ok(());
        }
        self.member_call(
            &format!("promote {node} ({:x})", m.id),
            |mut c| async move { c.member_promote(m.id).await.map(|_| ()) },
        )
        .await
    }

    /// Run `f` with a client on the first endpoint that connects.
    async fn member_call<F, Fut>(&self, what: &str, f: F) -> Result<(), CpError>
    where
        F: Fn(Etcd) -> Fut,
        Fut: std::future::Future<Output = Result<(), etcd_client::Error>>,
    {
        let mut last = None;
        for url in &self.etcd_endpoints {
            let c = match self.etcd_connect(url).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            return match timeout_at(self.until(), f(c)).await {
                Ok(r) => r.map_err(|e| CpError::etcd(what.to_string(), e)),
                Err(_) => Err(CpError::Timeout {
                    what: format!("etcd: {what}"),
                    deadline: self.opts.timeout,
                }),
            };
        }
        Err(last.unwrap_or_else(|| CpError::Config("no etcd endpoints".into())))
    }

    /// Remove `node`'s member by id, if it is listed; never the last voter,
    /// and only the member whose name and peer URL are both `node`'s
    /// ([`member_to_remove`]).
    pub async fn remove_member_of(&self, node: &str) -> Result<(), CpError> {
        let members = self.members().await?;
        let addr = self.topology.node(node).map(|n| n.address.to_string());
        let Some(m) =
            member_to_remove(&members, node, addr.as_deref()).map_err(CpError::Refused)?
        else {
            return Ok(());
        };
        let voters = members.iter().filter(|x| !x.is_learner).count();
        if !m.is_learner && voters <= 1 {
            return Err(CpError::Refused(format!(
                "{node}'s etcd member {:x} is the last voter: removing it would destroy the cluster",
                m.id
            )));
        }
        self.check_quorum_after_removal(node, &members, m.id)
            .await?;
        let id = m.id;
        self.member_call(
            &format!("member remove {node} ({id:x})"),
            |mut c| async move {
                match c.member_remove(id).await {
                    Ok(_) => Ok(()),
                    // Removed meanwhile: idempotent.
                    Err(etcd_client::Error::GRpcStatus(s))
                        if s.message().contains("member not found") =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// The ids of the voters of `members` that answer a quorum read through
    /// their own client URL now (as `etcdctl endpoint health`), asked
    /// together, each within the call deadline.
    pub async fn healthy_voters(&self, members: &[Member]) -> BTreeSet<u64> {
        let checks = members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| async move {
                let url = m.client_urls.first()?;
                let mut c = self.etcd_connect(url).await.ok()?;
                match timeout_at(self.until(), c.get("health", None)).await {
                    Ok(Ok(_)) => Some(m.id),
                    _ => None,
                }
            });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Refuse to remove member `id` of `node` when the voters left would
    /// not hold a healthy quorum ([`quorum_after_removal`]), as a
    /// disruption's member removal refuses: outside a disruption (a reset,
    /// a rollback, `remove-master`) too.
    async fn check_quorum_after_removal(
        &self,
        node: &str,
        members: &[Member],
        id: u64,
    ) -> Result<(), CpError> {
        let healthy = self.healthy_voters(members).await;
        quorum_after_removal(members, id, &healthy).map_err(|why| {
            CpError::Refused(format!(
                "{node}'s etcd member {id:x} is not removed: {why}; bring the unhealthy members back first"
            ))
        })
    }

    /// Every listed member is a voter and answers a quorum read through its
    /// own client URL (as `etcdctl endpoint health`).
    pub(crate) async fn members_healthy(&self, nodes: &[String]) -> Result<bool, CpError> {
        let members = self.members().await?;
        for n in nodes {
            let Some(m) = members.iter().find(|m| &m.name == n) else {
                return Ok(false);
            };
            if m.is_learner {
                return Ok(false);
            }
            let Some(url) = m.client_urls.first() else {
                return Ok(false);
            };
            let Ok(mut c) = self.etcd_connect(url).await else {
                return Ok(false);
            };
            match timeout_at(self.until(), c.get("health", None)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    fn snapshot_path(&self, node: &str) -> PathBuf {
        self.opts
            .snapshot_dir
            .join(format!("{}-{node}-etcd.db", self.topology.cluster))
    }

    pub(crate) fn snapshot_is_done(&self, node: &str) -> Result<bool, CpError> {
        let p = self.snapshot_path(node);
        Ok(std::fs::metadata(&p).ok().is_some_and(|m| {
            m.len() > 0
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < self.opts.snapshot_max_age)
        }))
    }

    /// Stream a snapshot from `node`'s member to
    /// `<snapshot_dir>/<cluster>-<node>-etcd.db` (0600, written whole then
    /// renamed).
    pub(crate) async fn take_snapshot(&self, node: &str) -> Result<(), CpError> {
        let m = self
            .member_of(node)
            .await?
            .ok_or_else(|| CpError::Refused(format!("{node} has no etcd member to snapshot")))?;
        let url = m.client_urls.first().cloned().ok_or_else(|| {
            CpError::Refused(format!(
                "{node}'s etcd member has not started (no client URL)"
            ))
        })?;
        let shown = crate::redact_url(&url).into_owned();
        let path = self.snapshot_path(node);
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| {
            CpError::Config(format!(
                "cannot create snapshot directory {}: {e}",
                dir.display()
            ))
        })?;
        let part = path.with_extension("db.part");
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part)
                .map_err(|e| CpError::Config(format!("cannot write {}: {e}", part.display())))?
        };
        let mut c = self.etcd_connect(&url).await?;
        // A snapshot of a large database takes longer than one call.
        let deadline = self.opts.join_timeout;
        let until = tokio::time::Instant::now() + deadline;
        let result = timeout_at(until, async {
            let mut stream = c
                .snapshot()
                .await
                .map_err(|e| CpError::etcd(format!("snapshot {shown}"), e))?;
            let mut total = 0u64;
            let mut finished = false;
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|e| CpError::etcd(format!("snapshot {shown}"), e))?
            {
                file.write_all(msg.blob()).map_err(|e| {
                    CpError::Config(format!("cannot write {}: {e}", part.display()))
                })?;
                total += msg.blob().len() as u64;
                finished = msg.remaining_bytes() == 0;
            }
            if !finished || total == 0 {
                return Err(CpError::Protocol {
                    what: format!("snapshot {shown}"),
                    detail: format!("the stream ended early ({total} bytes)"),
                });
            }
            file.sync_all()
                .map_err(|e| CpError::Config(format!("cannot sync {}: {e}", part.display())))?;
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => std::fs::rename(&part, &path).map_err(|e| {
                CpError::Config(format!(
                    "cannot rename {} to {}: {e}",
                    part.display(),
                    path.display()
                ))
            }),
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
            Err(_) => {
                let _ = std::fs::remove_file(&part);
                Err(CpError::Timeout {
                    what: format!("etcd: snapshot {shown}"),
                    deadline,
                })
            }
        }
    }
}

/// The member to remove for `node` (at `addr`, its topology address): the
/// one named `node` with a peer URL on `addr` (or, not started yet, unnamed
/// with a peer URL on `addr`). A member that matches by its name and not its
/// peer URL, or the other way round, is another's: refused, naming it.
pub fn member_to_remove<'a>(
    members: &'a [Member],
    node: &str,
    addr: Option<&str>,
) -> Result<Option<&'a Member>, String> {
    let on_addr = |m: &Member| {
        addr.is_some_and(|a| {
            m.peer_urls
                .iter()
                .any(|u| url_host(u).as_deref() == Some(a))
        })
    };
    let candidates: Vec<&Member> = members
        .iter()
        .filter(|m| m.name == node || on_addr(m))
        .collect();
    let mut found = None;
    for m in candidates {
        if on_addr(m) && (m.name == node || m.name.is_empty()) {
            found.get_or_insert(m);
            continue;
        }
        return Err(format!(
            "etcd member {:x} is named `{}` with peer URLs [{}], not {node} at {}: not removing it",
            m.id,
            m.name,
            m.peer_urls.join(", "),
            addr.unwrap_or("(no address in the topology)")
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://198.18.0.{id}:2380")],
            client_urls: vec![format!("https://198.18.0.{id}:2379")],
            is_learner: learner,
        }
    }

    fn member(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    #[test]
    fn a_member_removal_that_leaves_no_healthy_quorum_is_refused() {
        let three = [
            voter(1, "m1", false),
            voter(2, "m2", false),
            voter(3, "m3", false),
        ];
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        // m3 down, removed: m1 and m2 stay, both healthy (2 of 2).
        assert!(quorum_after_removal(&three, 3, &set(&[1, 2])).is_ok());
        // m2 down, m3 removed: 1 of the 2 left is healthy, below 2.
        let e = quorum_after_removal(&three, 3, &set(&[1, 3])).unwrap_err();
        assert!(
            e.contains("1 of the 2 voters left") && e.contains("m2 (2)"),
            "{e}"
        );
        // Removing a learner keeps the voters: they still need a quorum.
        let mut four = three.to_vec();
        four.push(voter(9, "", true));
        assert!(quorum_after_removal(&four, 9, &set(&[1, 2])).is_ok());
        let e = quorum_after_removal(&four, 9, &set(&[1])).unwrap_err();
        assert!(
            e.contains("1 of the 3 voters left") && e.contains("quorum of 2"),
            "{e}"
        );
        // Five voters, two down: removing a healthy one leaves 2 of 4.
        let five: Vec<Member> = (1..=5).map(|i| voter(i, &format!("m{i}"), false)).collect();
        assert!(quorum_after_removal(&five, 5, &set(&[1, 2, 3])).is_ok());
        assert!(quorum_after_removal(&five, 3, &set(&[1, 2, 3])).is_err());
    }

    #[test]
    fn only_the_member_named_after_the_node_at_its_address_is_removed() {
        let m2 = member(0xa2, "k8s-master-2", "https://198.18.20.105:2380");
        let m3 = member(0xa3, "k8s-master-3", "https://198.18.20.106:2380");
        let members = vec![m2.clone(), m3.clone()];
        let addr = Some("198.18.20.105");
        assert_eq!(
            member_to_remove(&members, "k8s-master-2", addr),
            Ok(Some(&m2))
        );
        // A member not started yet has no name: its peer URL names it.
        let fresh = vec![member(0xb1, "", "https://198.18.20.105:2380"), m3.clone()];
        assert_eq!(
            member_to_remove(&fresh, "k8s-master-2", addr)
                .unwrap()
                .map(|m| m.id),
            Some(0xb1)
        );
        // None listed: nothing to do.
        assert_eq!(
            member_to_remove(std::slice::from_ref(&m3), "k8s-master-2", addr),
            Ok(None)
        );
        // The name with another address: another machine's member.
        let moved = vec![member(0xc1, "k8s-master-2", "https://198.18.20.150:2380")];
        let e = member_to_remove(&moved, "k8s-master-2", addr).unwrap_err();
        assert_eq!(
            e,
            "etcd member c1 is named `k8s-master-2` with peer URLs [https://198.18.20.150:2380], not k8s-master-2 at 198.18.20.105: not removing it"
        );
        // The address under another name: refused too.
        let other = vec![member(0xd1, "k8s-master-9", "https://198.18.20.105:2380")];
        assert!(
            member_to_remove(&other, "k8s-master-2", addr)
                .unwrap_err()
                .contains("named `k8s-master-9`")
        );
        // A node the topology does not place: nothing matches its address.
        assert!(member_to_remove(&members, "k8s-master-2", None).is_err());
    }

    #[test]
    fn hosts_of_peer_urls() {
        assert_eq!(
            url_host("https://10.0.0.1:2380").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("https://[fd00::1]:2380").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(url_host("https://m1.lab:2380/").as_deref(), Some("m1.lab"));
    }
}
