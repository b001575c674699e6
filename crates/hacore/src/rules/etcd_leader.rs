//! Before disrupting the etcd leader, leadership must move to a healthy,
//! caught-up voter (Cluster API and Talos both do this).

use super::{Context, NoParams, deny, member_health, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-leader";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    if !ctx.action.stops_control_plane() || !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} of {} leaves the etcd leader alone",
                ctx.action,
                ctx.target_names()
            ),
        ));
        return;
    }
    let etcd = match ctx.state.section(Probe::Etcd, ctx.state.etcd.as_ref()) {
        Ok(e) => e,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let Some(leader) = etcd.members.iter().find(|m| m.leader) else {
        out.push(
            unknown(ID, "no etcd leader was observed (quorum lost, an election in progress, or status not read)")
                .fix("check `etcdctl endpoint status --cluster`"),
        );
        return;
    };
    if !ctx.member_is_target(leader) {
        out.push(pass(
            ID,
            format!("the etcd leader is {}, not a target", display(leader)),
        ));
        return;
    }
    // Best transferee: a healthy voter not among the targets, most caught up.
    let candidate = etcd
        .members
        .iter()
        .filter(|m| !m.is_learner && !m.leader && !ctx.member_is_target(m))
        .filter(|m| member_health(ctx, m) == Some(true))
        .max_by_key(|m| m.raft_index.unwrap_or(0));
    let f = deny(
        ID,
        format!(
            "{} is the etcd leader: move leadership first",
            display(leader)
        ),
    );
    out.push(match candidate {
        Some(c) => f.fix(format!(
            "etcdctl move-leader {} (to {}), then ask again",
            c.id,
            display(c)
        )),
        None => {
            f.fix("there is no other healthy voter to take over: add control-plane nodes first")
        }
    });
}

fn display(m: &crate::state::EtcdMember) -> String {
    if m.name.is_empty() {
        m.id.to_string()
    } else {
        m.name.clone()
    }
}
