//! Advice: etcd should have an odd number of voters after the action.

use super::{Context, NoParams, count, pass, unknown, warn};
use crate::action::Action;
use crate::quorum::tolerance;
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-odd-size";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    let etcd = match ctx.state.section(Probe::Etcd, ctx.state.etcd.as_ref()) {
        Ok(e) => e,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let voters = etcd.members.iter().filter(|m| !m.is_learner).count();
    let removed = etcd
        .members
        .iter()
        .filter(|m| !m.is_learner && ctx.member_is_target(m))
        .count();
    let after = match ctx.action {
        Action::Join => voters + 1,
        Action::RemoveMember => voters - removed,
        _ => voters,
    };
    if after % 2 == 0 && after > 0 {
        out.push(warn(
            ID,
            format!(
                "etcd will have {after} voters: an even size tolerates {}, the same as {}",
                count(tolerance(after), "failure"),
                count(after - 1, "voter")
            ),
        ));
    } else {
        out.push(pass(
            ID,
            format!("etcd will have {}", count(after, "voter")),
        ));
    }
}
