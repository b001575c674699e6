//! Where etcd leadership goes when its leader is about to go down.
//!
//! The pure choice ([`leader_transfer`]) is shared by the live backends
//! (`kubeadm::etcd_leader`), the simulated one and the disruption's gate, so
//! all pick the same member. A module of its own so that the simulated
//! cluster and [`crate::disrupt`] both use it without importing each other.

use jiff::Timestamp;
use serde::Serialize;

use crate::action::Action;
use crate::gate::resolve_target;
use crate::rules::{Context, member_health, member_label};
use crate::state::{ClusterState, EtcdMember};
use crate::topology::Topology;

/// A follower whose raft index trails the leader's by more than this many
/// entries is not caught up, and is never chosen to lead.
pub const CAUGHT_UP_LAG: u64 = 1000;

/// Where etcd leadership stands relative to a node about to go down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "leadership")]
pub enum Leadership {
    /// The node does not lead: nothing to move.
    NotLeader {
        /// The leader, when one was observed.
        leader: Option<String>,
    },
    /// The node leads; `to` is the best healthy, caught-up voter.
    Move {
        /// The leader's member id.
        #[serde(rename = "fromId")]
        from_id: u64,
        /// The leader (member name).
        from: String,
        /// The transferee's member id.
        #[serde(rename = "toId")]
        to_id: u64,
        /// The transferee (member name).
        to: String,
    },
}

/// Whether `node` leads etcd in `state` and, if it does, the voter that
/// should take over: a voter (never a learner) other than `node`, healthy,
/// matched to a node of the topology, no more than [`CAUGHT_UP_LAG`]
/// entries behind the leader, with the highest raft index (ties: the lowest
/// member id). Errors say why no member qualifies.
pub fn leader_transfer(
    topology: &Topology,
    state: &ClusterState,
    node: &str,
    now: Timestamp,
) -> Result<Leadership, String> {
    let (targets, host) = resolve_target(topology, node).map_err(|e| e.to_string())?;
    let ctx = Context::new(
        topology,
        state,
        Action::Reboot,
        node,
        targets,
        host,
        now,
        None,
    );
    let etcd = state
        .etcd
        .as_ref()
        .ok_or_else(|| "etcd was not observed, so its leader is not known".to_string())?;
    let Some(leader) = etcd.members.iter().find(|m| m.leader) else {
        return Err(
            "no etcd leader was observed (quorum lost, an election in progress, or status not read)"
                .into(),
        );
    };
    if !ctx.member_is_target(leader) {
        return Ok(Leadership::NotLeader {
            leader: Some(member_label(leader)),
        });
    }
    let leader_index = leader.raft_index.unwrap_or(0);
    let eligible = |m: &&EtcdMember| {
        !m.is_learner
            && !m.leader
            && !ctx.member_is_target(m)
            && member_health(&ctx, m) == Some(true)
    };
    let caught_up = |m: &&EtcdMember| {
        m.raft_index
            .is_some_and(|i| i + CAUGHT_UP_LAG >= leader_index)
    };
    let best = etcd
        .members
        .iter()
        .filter(eligible)
        .filter(caught_up)
        .max_by(|a, b| a.raft_index.cmp(&b.raft_index).then(b.id.0.cmp(&a.id.0)));
    match best {
        Some(to) => Ok(Leadership::Move {
            from_id: leader.id.0,
            from: member_label(leader),
            to_id: to.id.0,
            to: member_label(to),
        }),
        None => {
            let healthy: Vec<String> = etcd
                .members
                .iter()
                .filter(eligible)
                .map(|m| {
                    format!(
                        "{} (raft index {}, leader {leader_index})",
                        member_label(m),
                        m.raft_index.map_or("unknown".into(), |i| i.to_string())
                    )
                })
                .collect();
            Err(if healthy.is_empty() {
                format!(
                    "{} leads etcd and no other healthy voter can take over: bring the other members back (or add masters) first",
                    member_label(leader)
                )
            } else {
                format!(
                    "{} leads etcd and no healthy voter is caught up: {}; wait and try again",
                    member_label(leader),
                    healthy.join(", ")
                )
            })
        }
    }
}
