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
use crate::quorum::{Membership, Projection, Safety, tolerance};
use crate::state::{EtcdMember, Probe};
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-quorum";

/// Check: count the voters, project the action onto them, explain.
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
    let counted = Counted::of(ctx, &etcd.members);
    let now = counted.now();
    let finding = counted
        .no_quorum_now(&now)
        .or_else(|| unaffected(ctx, &etcd.members, &counted, &now))
        .unwrap_or_else(|| {
            let proj = project(ctx, &counted);
            explain(ctx, &etcd.members, &counted, &proj, &now)
        });
    out.push(finding);
}

/// The voters as observed, and those the action takes.
struct Counted<'a> {
    m: Membership,
    /// Healthy, unknown and down voters on the targets.
    healthy_t: usize,
    unknown_t: usize,
    down_t: usize,
    /// Voters known down (unhealthy, or added and never started).
    down_names: Vec<String>,
    /// Started voters that match no node: they count as down whatever they
    /// report.
    unmatched: Vec<&'a EtcdMember>,
    unknown_names: Vec<String>,
    /// Healthy voters that stay up during the action.
    left_names: Vec<String>,
}

impl<'a> Counted<'a> {
    /// Counting: every member once, learners apart.
    fn of(ctx: &Context<'_>, members: &'a [EtcdMember]) -> Self {
        let mut c = Counted {
            m: Membership::default(),
            healthy_t: 0,
            unknown_t: 0,
            down_t: 0,
            down_names: Vec::new(),
            unmatched: Vec::new(),
            unknown_names: Vec::new(),
            left_names: Vec::new(),
        };
        for member in members {
            if member.is_learner {
                c.m.learners += 1;
                continue;
            }
            c.m.voters += 1;
            let health = member_health(ctx, member);
            let label = member_label(member);
            let target = ctx.member_is_target(member);
            match health {
                Some(true) => {
                    c.m.healthy += 1;
                    if !target {
                        c.left_names.push(label);
                    }
                }
                None => {
                    c.m.unknown += 1;
                    c.unknown_names.push(label);
                }
                Some(false) if ctx.member_unmatched(member) => c.unmatched.push(member),
                Some(false) => c.down_names.push(label),
            }
            if target {
                match health {
                    Some(true) => c.healthy_t += 1,
                    None => c.unknown_t += 1,
                    Some(false) => c.down_t += 1,
                }
            }
        }
        c
    }

    /// Voters on the targets, whatever their health.
    fn target_voters(&self) -> usize {
        self.healthy_t + self.unknown_t + self.down_t
    }

    /// The voters now, in words: "3 voters, 2 healthy, down: m3".
    fn now(&self) -> String {
        let mut now = format!(
            "{}, {} healthy",
            count(self.m.voters, "voter"),
            self.m.healthy
        );
        if !self.down_names.is_empty() {
            now += &format!(", down: {}", and_list(&self.down_names));
        }
        if !self.unknown_names.is_empty() {
            now += &format!(", unknown: {}", and_list(&self.unknown_names));
        }
        if !self.unmatched.is_empty() {
            let names: Vec<String> = self.unmatched.iter().map(|mb| member_label(mb)).collect();
            now += &format!(", matching no node: {}", and_list(&names));
        }
        now
    }

    /// A cluster that has lost quorum (or cannot be shown to have it) takes
    /// no further disruption, whatever the target.
    fn no_quorum_now(&self, now: &str) -> Option<Finding> {
        match self.m.take_down(0, 0).safety() {
            Safety::Safe => None,
            Safety::Unknown => Some(
                unknown(ID, format!("etcd may have lost quorum already: {now}"))
                    .fix("check `etcdctl endpoint health --cluster` and observe again"),
            ),
            Safety::Unsafe => {
                let f = deny(
                    ID,
                    format!("etcd has no quorum now: {now}, quorum {}", self.m.quorum()),
                );
                Some(match unmatched_fix(&self.unmatched) {
                    Some(fix) => f.fix(format!(
                        "restore etcd quorum before anything else; disrupt nothing. {fix}"
                    )),
                    None => f.fix("restore etcd quorum before anything else; disrupt nothing"),
                })
            }
        }
    }
}

/// Actions that leave the voters as they are (a drain, a target without
/// an etcd voter), and a join of a node that already has a member.
fn unaffected(
    ctx: &Context<'_>,
    members: &[EtcdMember],
    counted: &Counted<'_>,
    now: &str,
) -> Option<Finding> {
    if ctx.action == Action::Drain {
        return Some(pass(
            ID,
            format!("drain leaves the etcd static pod running; quorum holds ({now})"),
        ));
    }
    if ctx.action == Action::Join {
        return members.iter().any(|mb| ctx.member_is_target(mb)).then(|| {
            deny(ID, format!("{} already has an etcd member", ctx.target))
                .fix(format!(
                    "check first whether {} already runs as an etcd member (`etcdctl member list`, `etcdctl endpoint health`): if it does, it needs no join; if the node was reset, its old member is stale and must go before it joins again",
                    ctx.target
                ))
        });
    }
    if !ctx.targets_control_plane() {
        return Some(pass(
            ID,
            format!(
                "{} runs no etcd member; quorum holds ({now})",
                ctx.target_phrase()
            ),
        ));
    }
    (counted.target_voters() == 0).then(|| {
        pass(
            ID,
            format!(
                "no etcd voter runs on {}; quorum is unaffected",
                ctx.target_phrase()
            ),
        )
    })
}

/// Projecting: the voters during (or after) the action.
fn project(ctx: &Context<'_>, c: &Counted<'_>) -> Projection {
    match ctx.action {
        Action::RemoveMember => c.m.remove(c.healthy_t, c.unknown_t, c.down_t),
        Action::Join if ctx.topology.etcd.learner_joins => c.m.add_healthy_voter(),
        Action::Join => c.m.add_unstarted_voter(),
        _ => c.m.take_down(c.healthy_t, c.unknown_t),
    }
}

/// Explaining: the finding for the projection, in words.
fn explain(
    ctx: &Context<'_>,
    members: &[EtcdMember],
    c: &Counted<'_>,
    proj: &Projection,
    now: &str,
) -> Finding {
    let what = during(ctx);
    let left = left_up(ctx, c);
    match proj.safety() {
        Safety::Safe if proj.healthy_min == proj.quorum && ctx.action != Action::Join => {
            let until = if ctx.action == Action::RemoveMember {
                "a voter is added".to_string()
            } else {
                let t = ctx.target_masters();
                format!("{} {} back", and_list(&t), is_are(t.len()))
            };
            let again = also_restores_a_margin(ctx, members, c);
            warn(
                ID,
                format!(
                    "etcd keeps quorum {what}, but with nothing to spare: {} of {} voters healthy, quorum {}{left} (now {now}); no further failure can be tolerated until {until}{again}",
                    proj.healthy_min, proj.voters, proj.quorum
                ),
            )
            .fix("disrupt nothing else meanwhile, and watch the remaining members")
        }
        Safety::Safe => pass(
            ID,
            format!(
                "etcd keeps quorum {what}: {} of {} voters healthy, quorum {}{left} (now {now})",
                proj.healthy_min, proj.voters, proj.quorum
            ),
        ),
        Safety::Unknown => unknown(
            ID,
            format!(
                "etcd quorum {what} depends on members of unknown health: {}..{} of {} voters healthy, quorum {}{left} (now {now})",
                proj.healthy_min, proj.healthy_max, proj.voters, proj.quorum
            ),
        )
        .fix("check `etcdctl endpoint health --cluster` and observe again"),
        Safety::Unsafe if proj.voters == 0 => {
            deny(ID, format!("{} would remove the last etcd voter", ctx.action))
                .fix("never remove the last member; the cluster's data lives there")
        }
        Safety::Unsafe => deny(
            ID,
            format!(
                "etcd would lose quorum {what}: {} of {} voters healthy, quorum {}{left} (now {now})",
                proj.healthy_max, proj.voters, proj.quorum
            ),
        )
        .fix(quorum_loss_fix(ctx, c)),
    }
}

/// "during reboot of m1", "after m4 joins as a learner and is promoted".
fn during(ctx: &Context<'_>) -> String {
    match (ctx.action, ctx.host) {
        (Action::Join, _) if ctx.topology.etcd.learner_joins => {
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
    }
}

/// For a hypervisor host: "; left up: m3" (the healthy voters elsewhere).
fn left_up(ctx: &Context<'_>, c: &Counted<'_>) -> String {
    if ctx.host.is_some() {
        format!(
            "; left up: {}",
            if c.left_names.is_empty() {
                "none".to_string()
            } else {
                and_list(&c.left_names)
            }
        )
    } else {
        String::new()
    }
}

/// Members down already, besides the targets: bringing one back also
/// restores a margin (" (or m3 is back)").
fn also_restores_a_margin(ctx: &Context<'_>, members: &[EtcdMember], c: &Counted<'_>) -> String {
    let others: Vec<String> = members
        .iter()
        .filter(|mb| !mb.is_learner && !ctx.member_is_target(mb))
        .filter(|mb| member_health(ctx, mb) == Some(false) && !ctx.member_unmatched(mb))
        .map(member_label)
        .collect();
    let strays: Vec<String> = c.unmatched.iter().map(|mb| member_label(mb)).collect();
    match (others.is_empty(), strays.is_empty()) {
        (true, true) => String::new(),
        (false, true) => {
            format!(" (or {} {} back)", and_list(&others), is_are(others.len()))
        }
        (true, false) => format!(
            " (or {} {} a node)",
            and_list(&strays),
            if strays.len() == 1 {
                "matches"
            } else {
                "match"
            }
        ),
        (false, false) => format!(
            " (or {} {} back, or {} {} a node)",
            and_list(&others),
            is_are(others.len()),
            and_list(&strays),
            if strays.len() == 1 {
                "matches"
            } else {
                "match"
            }
        ),
    }
}

/// What to do when the action would lose quorum.
fn quorum_loss_fix(ctx: &Context<'_>, c: &Counted<'_>) -> String {
    let m = &c.m;
    let host_voters = c.target_voters();
    let tolerated = tolerance(m.voters);
    if ctx.action == Action::Join {
        "enable learner joins (EtcdLearnerMode, default since kubeadm 1.29) or restore the unhealthy members first".to_string()
    } else if let Some(h) = ctx.host.filter(|_| host_voters > tolerated) {
        let tolerate = if m.voters == 1 {
            "tolerates"
        } else {
            "tolerate"
        };
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
    } else if let Some(fix) = unmatched_fix(&c.unmatched) {
        fix
    } else if !c.down_names.is_empty() {
        format!("bring {} back first", and_list(&c.down_names))
    } else {
        format!(
            "add control-plane nodes first: {} {} no failure",
            count(m.voters, "voter"),
            if m.voters == 1 {
                "tolerates"
            } else {
                "tolerate"
            }
        )
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
