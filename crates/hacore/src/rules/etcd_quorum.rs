//! etcd keeps quorum after the action.
//!
//! Learners do not count. Members with no matching node, or that never
//! started, count as unhealthy. Members of unknown health make the answer
//! "unknown" unless quorum holds even with all of them down.

use super::{Context, NoParams, deny, member_health, pass, unknown};
use crate::action::Action;
use crate::quorum::{Membership, Safety};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-quorum";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    let etcd = match ctx.state.section(Probe::Etcd, ctx.state.etcd.as_ref()) {
        Ok(e) => e,
        Err(e) => {
            out.push(unknown(ID, format!("cannot project etcd quorum: {e}")).fix(
                "make every etcd member reachable (client certificates, :2379) and observe again",
            ));
            return;
        }
    };
    let mut m = Membership::default();
    let (mut healthy_t, mut unknown_t, mut down_t) = (0, 0, 0);
    let mut down_names = Vec::new();
    let mut unknown_names = Vec::new();
    for member in &etcd.members {
        if member.is_learner {
            m.learners += 1;
            continue;
        }
        m.voters += 1;
        let health = member_health(ctx, member);
        let label = if member.name.is_empty() {
            member.id.to_string()
        } else {
            member.name.clone()
        };
        match health {
            Some(true) => m.healthy += 1,
            None => {
                m.unknown += 1;
                unknown_names.push(label.clone());
            }
            Some(false) => down_names.push(label),
        }
        if ctx.member_is_target(member) {
            match health {
                Some(true) => healthy_t += 1,
                None => unknown_t += 1,
                Some(false) => down_t += 1,
            }
        }
    }
    let now = format!(
        "{} voter(s), {} healthy{}{}",
        m.voters,
        m.healthy,
        if down_names.is_empty() {
            String::new()
        } else {
            format!(", down: {}", down_names.join(", "))
        },
        if unknown_names.is_empty() {
            String::new()
        } else {
            format!(", unknown: {}", unknown_names.join(", "))
        },
    );
    // A cluster that has lost quorum (or cannot be shown to have it) takes no
    // further disruption, whatever the target.
    match m.take_down(0, 0).safety() {
        Safety::Safe => {}
        Safety::Unknown => {
            out.push(
                unknown(ID, format!("etcd may have lost quorum already: {now}"))
                    .fix("check `etcdctl endpoint health --cluster` and observe again"),
            );
            return;
        }
        Safety::Unsafe => {
            out.push(
                deny(
                    ID,
                    format!("etcd has no quorum now: {now}, quorum {}", m.quorum()),
                )
                .fix("restore etcd quorum before anything else; disrupt nothing"),
            );
            return;
        }
    }
    if ctx.action == Action::Drain {
        out.push(pass(
            ID,
            format!("drain leaves the etcd static pod running; quorum holds ({now})"),
        ));
        return;
    }
    if ctx.action == Action::Join {
        if etcd.members.iter().any(|mb| ctx.member_is_target(mb)) {
            out.push(
                deny(ID, format!("{} already has an etcd member", ctx.target))
                    .fix("remove the stale member (etcdctl member remove ID) before joining again"),
            );
            return;
        }
    } else if !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} runs no etcd member; quorum holds ({now})",
                ctx.target_names()
            ),
        ));
        return;
    } else if healthy_t + unknown_t + down_t == 0 {
        out.push(pass(
            ID,
            format!(
                "no etcd voter runs on {}; quorum is unaffected",
                ctx.target_names()
            ),
        ));
        return;
    }
    let learner_joins = ctx.topology.etcd.learner_joins;
    let proj = match ctx.action {
        Action::RemoveMember => m.remove(healthy_t, unknown_t, down_t),
        Action::Join if learner_joins => m.add_healthy_voter(),
        Action::Join => m.add_unstarted_voter(),
        _ => m.take_down(healthy_t, unknown_t),
    };
    let what = match ctx.action {
        Action::Join if learner_joins => {
            format!("after {} joins as a learner and is promoted", ctx.target)
        }
        Action::Join => format!(
            "while {} joins as a voter that has not started yet",
            ctx.target
        ),
        a => format!("during {a} of {}", ctx.target_names()),
    };
    match proj.safety() {
        Safety::Safe => out.push(pass(
            ID,
            format!(
                "etcd keeps quorum {what}: {} of {} voters healthy, quorum {} (now {now})",
                proj.healthy_min, proj.voters, proj.quorum
            ),
        )),
        Safety::Unknown => out.push(
            unknown(
                ID,
                format!(
                    "etcd quorum {what} depends on members of unknown health: {}..{} of {} voters healthy, quorum {} (now {now})",
                    proj.healthy_min, proj.healthy_max, proj.voters, proj.quorum
                ),
            )
            .fix("check `etcdctl endpoint health --cluster` and observe again"),
        ),
        Safety::Unsafe if proj.voters == 0 => out.push(
            deny(ID, format!("{} would remove the last etcd voter", ctx.action))
                .fix("never remove the last member; the cluster's data lives there"),
        ),
        Safety::Unsafe => {
            let fix = if ctx.action == Action::Join {
                "enable learner joins (EtcdLearnerMode, default since kubeadm 1.29) or restore the unhealthy members first".to_string()
            } else if !down_names.is_empty() {
                format!("bring {} back first", down_names.join(", "))
            } else {
                "add control-plane nodes first: a cluster of this size cannot lose a member".to_string()
            };
            out.push(
                deny(
                    ID,
                    format!(
                        "etcd would lose quorum {what}: {} of {} voters healthy, quorum {} (now {now})",
                        proj.healthy_max, proj.voters, proj.quorum
                    ),
                )
                .fix(fix),
            )
        }
    }
}
