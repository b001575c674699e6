//! Every other node is Ready (the kured sentinel gate's "all nodes Ready").

use serde::{Deserialize, Serialize};

use super::{Context, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "nodes-ready";

/// Parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// How many other nodes may be NotReady.
    #[serde(default)]
    pub max_not_ready: usize,
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if let Err(e) = ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        return out.push(unknown(ID, e));
    }
    let mut not_ready = Vec::new();
    let mut unsure = Vec::new();
    for n in ctx
        .topology
        .nodes
        .iter()
        .filter(|n| !ctx.is_target(&n.name))
    {
        match ctx.node_state(&n.name) {
            Some(s) => match s.ready {
                Some(true) => {}
                Some(false) => not_ready.push(n.name.as_str()),
                None => unsure.push(n.name.as_str()),
            },
            None => unsure.push(n.name.as_str()),
        }
    }
    if not_ready.len() > p.max_not_ready {
        out.push(
            deny(ID, format!("node(s) NotReady: {}", short(&not_ready)))
                .fix("wait until every node is Ready before disrupting another"),
        );
    } else if not_ready.len() + unsure.len() > p.max_not_ready {
        out.push(unknown(
            ID,
            format!(
                "readiness unknown (condition Unknown, or not reported): {}",
                short(&unsure)
            ),
        ));
    } else {
        out.push(pass(
            ID,
            format!(
                "{} other node(s) Ready",
                ctx.topology.nodes.len() - ctx.targets.len() - not_ready.len()
            ),
        ));
    }
}

/// At most five names, then a count.
pub(crate) fn short(names: &[&str]) -> String {
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..5].join(", "), names.len() - 5)
    }
}
