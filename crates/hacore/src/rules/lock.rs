//! Nobody else holds the disruption lock.

use super::{Context, NoParams, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "lock";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    let lock = match ctx.state.section(Probe::Lock, ctx.state.lock.as_ref()) {
        Ok(l) => l,
        Err(e) => return out.push(unknown(ID, e)),
    };
    match lock.live_holder(ctx.now) {
        None => out.push(pass(ID, "the disruption lock is free")),
        Some(h) if Some(h) == ctx.requester => out.push(pass(
            ID,
            format!("the disruption lock is held by {h} (the requester)"),
        )),
        Some(h) => {
            let until = match (lock.renewed_at, lock.ttl) {
                (Some(at), Some(ttl)) => format!(" until {} unless renewed", at + ttl.0),
                _ => String::new(),
            };
            out.push(
                deny(ID, format!("the disruption lock is held by {h}{until}"))
                    .fix("wait for the holder to finish; one disruption at a time"),
            )
        }
    }
}
