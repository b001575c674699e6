//! The kill-switch ConfigMap halts every disruption while it exists.

use super::{Context, NoParams, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "kill-switch";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    match ctx
        .state
        .section(Probe::KillSwitch, ctx.state.kill_switch.as_ref())
    {
        Err(e) => out.push(unknown(ID, e)),
        Ok(true) => out.push(
            deny(
                ID,
                "the kill-switch ConfigMap is present: all disruptions are halted",
            )
            .fix("delete the kill-switch ConfigMap once whoever set it says so"),
        ),
        Ok(false) => out.push(pass(ID, "no kill-switch is set")),
    }
}
