//! Before disrupting the etcd leader, leadership must move to a healthy,
//! caught-up voter (Cluster API and Talos both do this).

use super::{Context, NoParams, and_list, deny, member_health, member_label, pass, unknown};
use crate::state::{EtcdMember, Probe};
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
        None => f.fix(no_transferee(ctx, leader)),
    });
}

/// Why no voter can take over, and what to do.
fn no_transferee(ctx: &Context<'_>, leader: &EtcdMember) -> String {
    let etcd_members = ctx
        .state
        .etcd
        .as_ref()
        .map(|e| e.members.as_slice())
        .unwrap_or_default();
    let voters = || {
        etcd_members
            .iter()
            .filter(|m| !m.is_learner && m.id != leader.id)
    };
    // Healthy voters that go down with the target (on the same host).
    let along: Vec<String> = voters()
        .filter(|m| ctx.member_is_target(m) && member_health(ctx, m) == Some(true))
        .map(display)
        .collect();
    if let Some(h) = ctx.host
        && !along.is_empty()
    {
        let (voter, run) = if along.len() == 1 {
            ("voter", "runs")
        } else {
            ("voters", "run")
        };
        return format!(
            "the other healthy {voter} ({}) {run} on hypervisor {} too and {} down with it, so leadership cannot move off the host: spread the masters over more hypervisor hosts first",
            and_list(&along),
            h.name,
            if along.len() == 1 { "goes" } else { "go" },
        );
    }
    // Voters that report healthy but match no node: not trusted.
    let unmatched: Vec<String> = voters()
        .filter(|m| ctx.member_unmatched(m) && m.healthy == Some(true))
        .map(|m| format!("{} (id {})", display(m), m.id))
        .collect();
    if !unmatched.is_empty() {
        let one = unmatched.len() == 1;
        return format!(
            "etcd {} {} {} healthy but {} no node of the topology by name or peer address, so {} not counted on to take over: the state and the topology disagree; check `etcdctl member list` against the topology first, and make the topology match {} if {} {} nodes of this cluster",
            if one { "member" } else { "members" },
            and_list(&unmatched),
            if one { "reports" } else { "report" },
            if one { "matches" } else { "match" },
            if one { "it is" } else { "they are" },
            if one { "it" } else { "them" },
            if one { "it" } else { "they" },
            if one { "runs on" } else { "run on" },
        );
    }
    "there is no other healthy voter to take over: add control-plane nodes first".to_string()
}

fn display(m: &EtcdMember) -> String {
    member_label(m)
}
