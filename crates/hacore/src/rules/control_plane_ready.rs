//! Enough control-plane nodes stay Ready while the target is down (the seed's
//! decision 6: at least 2 of 3).

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "control-plane-ready";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Control-plane nodes that must be Ready while the targets are down.
    #[serde(default = "two")]
    pub min_ready: usize,
}

fn two() -> usize {
    2
}

impl Default for Params {
    fn default() -> Self {
        Params { min_ready: 2 }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if !ctx.action.takes_node_down() || !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} of {} takes no control-plane node down",
                ctx.action,
                ctx.target_names()
            ),
        ));
        return;
    }
    if let Err(e) = ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        return out.push(unknown(ID, e));
    }
    let mut ready = Vec::new();
    let mut unsure = Vec::new();
    for n in ctx
        .topology
        .control_plane_nodes()
        .filter(|n| !ctx.is_target(&n.name))
    {
        match ctx.node_state(&n.name).map(|s| s.ready) {
            Some(Some(true)) => ready.push(n.name.as_str()),
            Some(Some(false)) => {}
            Some(None) | None => unsure.push(n.name.as_str()),
        }
    }
    let (min, max) = (ready.len(), ready.len() + unsure.len());
    let list = if ready.is_empty() {
        "none".to_string()
    } else {
        and_list(&ready)
    };
    if min >= p.min_ready {
        out.push(pass(
            ID,
            format!("{} Ready ({list}); policy needs {}", stay(min), p.min_ready),
        ));
    } else if max >= p.min_ready {
        out.push(unknown(
            ID,
            format!(
                "readiness of {} is unknown; {} known Ready, policy needs {}",
                and_list(&unsure),
                count(min, "control-plane node"),
                p.min_ready
            ),
        ));
    } else {
        out.push(
            deny(
                ID,
                format!(
                    "only {} would stay Ready ({list}) while {} is down; policy needs {}",
                    count(max, "control-plane node"),
                    ctx.target_phrase(),
                    p.min_ready
                ),
            )
            .fix(ctx.host_fix().unwrap_or_else(|| {
                "bring the other control-plane nodes back to Ready, or add masters (hacli plan)"
                    .into()
            })),
        );
    }
}

/// "1 control-plane node stays", "2 control-plane nodes stay".
fn stay(n: usize) -> String {
    format!(
        "{} {}",
        count(n, "control-plane node"),
        if n == 1 { "stays" } else { "stay" }
    )
}
