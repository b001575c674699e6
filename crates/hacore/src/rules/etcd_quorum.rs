//! etcd keeps quorum after the action.
//!
//! Learners do not count. Members with no matching node, or that never
//! started, count as unhealthy. Members of unknown health make the answer
//! "unknown" unless quorum holds even with all of them down.

use super::{
    Context, NoParams, and_list, count, deny, is_are, member_health, member_label, pass, unknown,
    warn,
};
use crate::action::Action;
use crate::quorum::{Membership, Safety, tolerance};
use crate::state::{EtcdMember, Probe};
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
    // Voters known down (unhealthy, or added and never started).
    let mut down_names = Vec::new();
    // Started voters that match no node: they count as down whatever they
    // report.
    let mut unmatched: Vec<&EtcdMember> = Vec::new();
    let mut unknown_names = Vec::new();
    // Healthy voters that stay up during the action.
    let mut left_names = Vec::new();
    for member in &etcd.members {
        if member.is_learner {
            m.learners += 1;
            continue;
        }
        m.voters += 1;
        let health = member_health(ctx, member);
        let label = member_label(member);
        let target = ctx.member_is_target(member);
        match health {
            Some(true) => {
                m.healthy += 1;
                if !target {
                    left_names.push(label);
                }
            }
            None => {
                m.unknown += 1;
                unknown_names.push(label);
            }
            Some(false) if ctx.member_unmatched(member) => unmatched.push(member),
            Some(false) => down_names.push(label),
        }
        if target {
            match health {
                Some(true) => healthy_t += 1,
                None => unknown_t += 1,
                Some(false) => down_t += 1,
            }
        }
    }
    let mut now = format!("{}, {} healthy", count(m.voters, "voter"), m.healthy);
    if !down_names.is_empty() {
        now += &format!(", down: {}", and_list(&down_names));
    }
    if !unknown_names.is_empty() {
        now += &format!(", unknown: {}", and_list(&unknown_names));
    }
    if !unmatched.is_empty() {
        let names: Vec<String> = unmatched.iter().map(|mb| member_label(mb)).collect();
        now += &format!(", matching no node: {}", and_list(&names));
    }
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
            let mut f = deny(
                ID,
                format!("etcd has no quorum now: {now}, quorum {}", m.quorum()),
            );
            f = match unmatched_fix(&unmatched) {
                Some(fix) => f.fix(format!(
                    "restore etcd quorum before anything else; disrupt nothing. {fix}"
                )),
                None => f.fix("restore etcd quorum before anything else; disrupt nothing"),
            };
            out.push(f);
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
                    .fix(format!(
                        "check first whether {} already runs as an etcd member (`etcdctl member list`, `etcdctl endpoint health`): if it does, it needs no join; if the node was reset, its old member is stale and must go before it joins again",
                        ctx.target
                    )),
            );
            return;
        }
    } else if !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} runs no etcd member; quorum holds ({now})",
                ctx.target_phrase()
            ),
        ));
        return;
    } else if healthy_t + unknown_t + down_t == 0 {
        out.push(pass(
            ID,
            format!(
                "no etcd voter runs on {}; quorum is unaffected",
                ctx.target_phrase()
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
    let host_voters = healthy_t + unknown_t + down_t;
    let what = match (ctx.action, ctx.host) {
        (Action::Join, _) if learner_joins => {
            format!("after {} joins as a learner and is promoted", ctx.target)
        }
        (Action::Join, _) => format!(
            "while {} joins as a voter that has not started yet",
            ctx.target
        ),
        (a, Some(h)) => {
            let masters = ctx.target_masters();
            if masters.len() > 1 {
                format!(
                    "during {a} of hypervisor {}, which takes {} down together",
                    h.name,
                    and_list(&masters)
                )
            } else {
                format!(
                    "during {a} of hypervisor {}, which takes {} down with it",
                    h.name,
                    and_list(&masters)
                )
            }
        }
        (a, None) => format!("during {a} of {}", ctx.target_names()),
    };
    let left = if ctx.host.is_some() {
        format!(
            "; left up: {}",
            if left_names.is_empty() {
                "none".to_string()
            } else {
                and_list(&left_names)
            }
        )
    } else {
        String::new()
    };
    match proj.safety() {
        Safety::Safe if proj.healthy_min == proj.quorum && ctx.action != Action::Join => {
            // Allowed, with nothing to spare.
            let until = if ctx.action == Action::RemoveMember {
                "a voter is added".to_string()
            } else {
                let t = ctx.target_masters();
                format!("{} {} back", and_list(&t), is_are(t.len()))
            };
            // Members down already, besides the targets: bringing one back
            // also restores a margin.
            let others: Vec<String> = etcd
                .members
                .iter()
                .filter(|mb| !mb.is_learner && !ctx.member_is_target(mb))
                .filter(|mb| member_health(ctx, mb) == Some(false) && !ctx.member_unmatched(mb))
                .map(member_label)
                .collect();
            let strays: Vec<String> = unmatched.iter().map(|mb| member_label(mb)).collect();
            let again = match (others.is_empty(), strays.is_empty()) {
                (true, true) => String::new(),
                (false, true) => {
                    format!(" (or {} {} back)", and_list(&others), is_are(others.len()))
                }
                (true, false) => format!(
                    " (or {} {} a node)",
                    and_list(&strays),
                    if strays.len() == 1 { "matches" } else { "match" }
                ),
                (false, false) => format!(
                    " (or {} {} back, or {} {} a node)",
                    and_list(&others),
                    is_are(others.len()),
                    and_list(&strays),
                    if strays.len() == 1 { "matches" } else { "match" }
                ),
            };
            out.push(
                warn(
                    ID,
                    format!(
                        "etcd keeps quorum {what}, but with nothing to spare: {} of {} voters healthy, quorum {}{left} (now {now}); no further failure can be tolerated until {until}{again}",
                        proj.healthy_min, proj.voters, proj.quorum
                    ),
                )
                .fix("disrupt nothing else meanwhile, and watch the remaining members"),
            )
        }
        Safety::Safe => out.push(pass(
            ID,
            format!(
                "etcd keeps quorum {what}: {} of {} voters healthy, quorum {}{left} (now {now})",
                proj.healthy_min, proj.voters, proj.quorum
            ),
        )),
        Safety::Unknown => out.push(
            unknown(
                ID,
                format!(
                    "etcd quorum {what} depends on members of unknown health: {}..{} of {} voters healthy, quorum {}{left} (now {now})",
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
            let tolerated = tolerance(m.voters);
            let fix = if ctx.action == Action::Join {
                "enable learner joins (EtcdLearnerMode, default since kubeadm 1.29) or restore the unhealthy members first".to_string()
            } else if let Some(h) = ctx.host.filter(|_| host_voters > tolerated) {
                let tolerate = if m.voters == 1 { "tolerates" } else { "tolerate" };
                let voters = count(m.voters, "voter");
                if tolerated == 0 {
                    format!(
                        "hypervisor {} runs {host_voters} of the {} etcd voters, and {voters} {tolerate} no failure: add masters on other hypervisor hosts first",
                        h.name, m.voters
                    )
                } else {
                    format!(
                        "hypervisor {} runs {host_voters} of the {} etcd voters, and {voters} {tolerate} {}: spread the masters over more hypervisor hosts (at most {tolerated} per host) before taking it down",
                        h.name,
                        m.voters,
                        count(tolerated, "failure")
                    )
                }
            } else if let Some(fix) = unmatched_fix(&unmatched) {
                fix
            } else if !down_names.is_empty() {
                format!("bring {} back first", and_list(&down_names))
            } else {
                format!(
                    "add control-plane nodes first: {} {} no failure",
                    count(m.voters, "voter"),
                    if m.voters == 1 { "tolerates" } else { "tolerate" }
                )
            };
            out.push(
                deny(
                    ID,
                    format!(
                        "etcd would lose quorum {what}: {} of {} voters healthy, quorum {}{left} (now {now})",
                        proj.healthy_max, proj.voters, proj.quorum
                    ),
                )
                .fix(fix),
            )
        }
    }
}

/// What to do about members that match no node: they count as down even
/// when they report healthy.
fn unmatched_fix(unmatched: &[&EtcdMember]) -> Option<String> {
    let one = match unmatched {
        [] => return None,
        [_] => true,
        _ => false,
    };
    let each: Vec<String> = unmatched
        .iter()
        .map(|mb| {
            format!(
                "{} (id {}, peer {})",
                member_label(mb),
                mb.id,
                mb.peer_urls.first().map(String::as_str).unwrap_or("none")
            )
        })
        .collect();
    let healthy = unmatched.iter().all(|mb| mb.healthy == Some(true));
    let (member, matches, it, counts, its) = if one {
        ("member", "matches", "it", "counts", "its")
    } else {
        ("members", "match", "they", "count", "their")
    };
    Some(format!(
        "etcd {member} {} {matches} no node of the topology by name or peer address, so {it} {counts} as down{}: the state and the topology disagree, so check `etcdctl member list` against the topology before anything else; if {it} {} on a node of this cluster, make that node's name or address in the topology match {its} name or peer URL",
        and_list(&each),
        match (healthy, one) {
            (true, true) => " even though it reports healthy",
            (true, false) => " even though they report healthy",
            _ => "",
        },
        if one { "runs" } else { "run" },
    ))
}
