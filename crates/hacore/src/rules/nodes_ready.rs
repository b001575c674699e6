//! Every other node is Ready (the kured sentinel gate's "all nodes Ready").

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, deny, pass, unknown};
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

/// Check. Every node counts: the topology's nodes (one the API does not
/// report is of unknown readiness) and every node the API reports that the
/// topology does not list (`node-drift` names those).
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let observed = match ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        Ok(n) => n,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let mut ready = 0usize;
    let mut not_ready = Vec::new();
    let mut unsure = Vec::new();
    let declared = ctx
        .topology
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), ctx.node_state(&n.name)));
    let undeclared = observed
        .iter()
        .filter(|s| ctx.topology.node(&s.name).is_none())
        .map(|s| (s.name.as_str(), Some(s)));
    for (name, state) in declared.chain(undeclared) {
        if ctx.is_target(name) {
            continue;
        }
        match state.and_then(|s| s.ready) {
            Some(true) => ready += 1,
            Some(false) => not_ready.push(name),
            None => unsure.push(name),
        }
    }
    if not_ready.len() > p.max_not_ready {
        out.push(
            deny(
                ID,
                format!(
                    "{} NotReady: {}",
                    if not_ready.len() == 1 {
                        "node"
                    } else {
                        "nodes"
                    },
                    and_list(&not_ready)
                ),
            )
            .fix("wait until every node is Ready before disrupting another"),
        );
    } else if not_ready.len() + unsure.len() > p.max_not_ready {
        out.push(unknown(
            ID,
            format!(
                "readiness unknown (condition Unknown, or not reported): {}",
                and_list(&unsure)
            ),
        ));
    } else {
        out.push(pass(ID, format!("{} Ready", count(ready, "other node"))));
    }
}
