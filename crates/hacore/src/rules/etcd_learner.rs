//! A join in progress: a learner that has not caught up, or a member that was
//! added but never started. Join one member at a time, and do not disrupt
//! another member while one is joining.

use serde::{Deserialize, Serialize};

use super::{Context, deny, pass, unknown, warn};
use crate::action::Action;
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-learner";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// A learner within this many raft entries of the leader is caught up.
    #[serde(default = "default_lag")]
    pub max_lag: u64,
}

fn default_lag() -> u64 {
    1000
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_lag: default_lag(),
        }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if ctx.action == Action::Drain {
        out.push(pass(ID, "drain does not touch etcd membership"));
        return;
    }
    let etcd = match ctx.state.section(Probe::Etcd, ctx.state.etcd.as_ref()) {
        Ok(e) => e,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let leader_index = etcd
        .members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.raft_index);
    let mut found = false;
    for m in &etcd.members {
        // Removing the joining member itself is the rollback: always fine.
        if ctx.member_is_target(m) && ctx.action == Action::RemoveMember {
            continue;
        }
        if !m.started() {
            found = true;
            out.push(
                deny(
                    ID,
                    format!("etcd member {} was added but never started: a join is in progress or failed", m.id),
                )
                .fix(format!(
                    "check first whether that join is still running (kubeadm join on the new node, its etcd static pod): let it finish; only once it has failed for good, remove the member by its id, {}",
                    m.id
                )),
            );
            continue;
        }
        if !m.is_learner {
            continue;
        }
        found = true;
        let lag = match (leader_index, m.raft_index) {
            (Some(l), Some(i)) => Some(l.saturating_sub(i)),
            _ => None,
        };
        match lag {
            Some(lag) if lag <= p.max_lag => out.push(
                if ctx.action == Action::Join {
                    deny(ID, format!("learner {} is caught up but not promoted yet", m.name))
                        .fix(format!("promote it (`etcdctl member promote {}`) before the next join", m.id))
                } else {
                    warn(ID, format!("learner {} is caught up (lag {lag}) but not promoted", m.name))
                },
            ),
            Some(lag) => out.push(
                deny(
                    ID,
                    format!("learner {} is {lag} raft entries behind the leader (max {}): a join is in progress", m.name, p.max_lag),
                )
                .fix("wait until it catches up and is promoted; join and disrupt one member at a time"),
            ),
            None => out.push(unknown(
                ID,
                format!("learner {} present, but its raft index or the leader's was not observed", m.name),
            )),
        }
    }
    if !found {
        out.push(pass(ID, "no etcd join in progress"));
    }
}
