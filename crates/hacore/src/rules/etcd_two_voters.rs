//! Refuse to take a member down when etcd has exactly two voters (Talos'
//! rule): two voters tolerate no failure, so the other must stay up for the
//! whole action and nothing may go wrong.

use super::{Context, NoParams, count, deny, pass, unknown};
use crate::action::Action;
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-two-voters";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    if !matches!(
        ctx.action,
        Action::Reboot | Action::Upgrade | Action::Shutdown
    ) || !ctx.targets_control_plane()
    {
        out.push(pass(
            ID,
            format!(
                "{} of {} takes no etcd voter down",
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
    let voters = etcd.members.iter().filter(|m| !m.is_learner).count();
    if voters == 2
        && etcd
            .members
            .iter()
            .any(|m| !m.is_learner && ctx.member_is_target(m))
    {
        out.push(
            deny(
                ID,
                "etcd has exactly 2 voters: with one down, the other alone cannot commit",
            )
            .fix("finish growing to 3 members (or shrink to 1) before disrupting a member"),
        );
    } else {
        out.push(pass(ID, format!("etcd has {}", count(voters, "voter"))));
    }
}
