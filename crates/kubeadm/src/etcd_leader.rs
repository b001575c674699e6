//! Moving etcd leadership off a node before it goes down (etcd
//! `MoveLeader`), as Cluster API and Talos do.
//!
//! The transferee is chosen by [`hacore::disrupt::leader_transfer`] from a
//! fresh observation: a healthy, caught-up voter other than the node, never
//! a learner. The request goes to the leader itself (only the leader can
//! hand over), with the observer's TLS settings; the move is confirmed by
//! asking the leader's status until another member leads, all within one
//! deadline. The gate's sequence around it (take the lock, move, observe
//! and evaluate again) is `haops::gate`'s.

use std::time::Duration;

use hacore::disrupt::{Leadership, leader_transfer};
use hacore::verdict::{Decision, Severity, Verdict};
use hacore::{ClusterState, Topology};
use tokio::time::{Instant, sleep, timeout_at};

use crate::{Error, Observer};

/// What [`move_leader_away`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderMove {
    /// The node did not lead: nothing was done.
    NotLeader {
        /// The leader, when one was observed.
        leader: Option<String>,
    },
    /// Leadership moved.
    Moved {
        /// The old leader (member name).
        from: String,
        /// The new leader (member name).
        to: String,
        /// How long the move took, from the request to the confirmation.
        took: Duration,
    },
}

impl std::fmt::Display for LeaderMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaderMove::NotLeader { leader: Some(l) } => {
                write!(f, "etcd leadership stays with {l}")
            }
            LeaderMove::NotLeader { leader: None } => f.write_str("no etcd leader observed"),
            LeaderMove::Moved { from, to, took } => write!(
                f,
                "etcd leadership moved from {from} to {to} in {} ms",
                took.as_millis()
            ),
        }
    }
}

fn fail(node: &str, reason: impl Into<String>) -> Error {
    Error::Disruption {
        node: node.to_string(),
        reason: format!("moving etcd leadership: {}", reason.into()),
    }
}

/// The client URL to reach member `id` by: a configured endpoint among its
/// client URLs, else its first client URL.
fn member_url(observer: &Observer, state: &ClusterState, id: u64) -> Option<String> {
    let member = state.etcd.as_ref()?.members.iter().find(|m| m.id.0 == id)?;
    let configured = observer.config().etcd_endpoints(observer.topology());
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    configured
        .iter()
        .find(|c| member.client_urls.iter().any(|u| same(u, c)))
        .cloned()
        .or_else(|| member.client_urls.first().cloned())
}

/// If `node` leads etcd, move leadership to the best healthy, caught-up
/// voter and wait until it leads, all within `deadline`. Errors say why no
/// member could take over, or which call failed.
pub async fn move_leader_away(
    observer: &Observer,
    node: &str,
    deadline: Duration,
) -> Result<LeaderMove, Error> {
    let until = Instant::now() + deadline;
    let timeout = |what: &str| Error::Timeout {
        what: format!("moving etcd leadership off {node}: {what}"),
        ms: deadline.as_millis(),
    };
    let state = timeout_at(until, Box::pin(observer.observe()))
        .await
        .map_err(|_| timeout("observing etcd"))?;
    if let Some(e) = state.probe_errors.get(&hacore::state::Probe::Etcd) {
        return Err(fail(node, format!("etcd not observed: {e}")));
    }
    let topology: &Topology = observer.topology();
    let (from_id, from, to_id, to) =
        match leader_transfer(topology, &state, node, jiff::Timestamp::now())
            .map_err(|e| fail(node, e))?
        {
            Leadership::NotLeader { leader } => return Ok(LeaderMove::NotLeader { leader }),
            Leadership::Move {
                from_id,
                from,
                to_id,
                to,
            } => (from_id, from, to_id, to),
        };
    let url = member_url(observer, &state, from_id)
        .ok_or_else(|| fail(node, format!("member {from} has no client URL")))?;
    let shown = crate::redact_url(&url).into_owned();
    let started = std::time::Instant::now();
    let mut client = timeout_at(until, observer.etcd_client(&url))
        .await
        .map_err(|_| timeout(&format!("connecting to {shown}")))?
        .map_err(|e| fail(node, e))?;
    match timeout_at(until, client.move_leader(to_id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(fail(
                node,
                format!(
                    "MoveLeader to {to} (id {to_id:x}) through {shown}: {}",
                    crate::observe::describe(&e)
                ),
            ));
        }
        Err(_) => return Err(timeout(&format!("MoveLeader through {shown}"))),
    }
    // Confirm: the old leader's status names another leader.
    loop {
        if let Ok(Ok(s)) = timeout_at(until, client.status()).await
            && s.leader() != from_id
            && s.leader() != 0
        {
            return Ok(LeaderMove::Moved {
                from,
                to,
                took: started.elapsed(),
            });
        }
        if Instant::now() >= until {
            return Err(timeout(&format!("waiting until {to} leads")));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `etcd-leader` is the only rule that blocks `verdict` (a deny,
/// with no other deny and no unknown).
pub fn only_leader_denies(verdict: &Verdict) -> bool {
    verdict.decision == Decision::Deny
        && verdict
            .blocking()
            .all(|f| f.rule == hacore::rules::etcd_leader::ID && f.severity == Severity::Deny)
}
