//! The outage of a cluster with one master, stated and accepted: the rule
//! of the `single-master` policy. Taking the only master down takes the
//! Kubernetes API and etcd down with it until it is back; this rule says so
//! as a warning, so the verdict shows the outage it allows. It denies on a
//! cluster with more than one master, where no outage is needed and the
//! quorum rules of the action's own policy must decide.

use super::{Context, NoParams, deny, pass, warn};
use crate::action::Action;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "single-master";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    let masters: Vec<&str> = ctx
        .topology
        .control_plane_nodes()
        .map(|n| n.name.as_str())
        .collect();
    if masters.len() > 1 {
        return out.push(
            deny(
                ID,
                format!(
                    "this policy accepts the outage of a cluster's only master, and this cluster has {} masters ({})",
                    masters.len(),
                    masters.join(", ")
                ),
            )
            .fix(format!(
                "use the `{}` policy, which keeps etcd quorum and the API up",
                ctx.action
            )),
        );
    }
    let takes_it_down = matches!(
        ctx.action,
        Action::Reboot | Action::Upgrade | Action::Shutdown
    ) && ctx.targets_control_plane();
    if !takes_it_down {
        return out.push(pass(
            ID,
            format!(
                "{} of {} leaves the only master up",
                ctx.action,
                ctx.target_names()
            ),
        ));
    }
    out.push(
        warn(
            ID,
            format!(
                "OUTAGE ACCEPTED: {} is the only master: the Kubernetes API and etcd are down from the {} until it is back (typically 1-3 minutes; clients and controllers retry)",
                ctx.target_names(),
                ctx.action
            ),
        )
        .fix("grow to three masters (`hacli plan`) to disrupt without an outage"),
    );
}
