//! Pods on the target whose PodDisruptionBudget allows no disruption would
//! make a drain hang.

use super::{Context, NoParams, and_list, deny, or_list, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "pdb";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    if !ctx.action.evicts_pods() {
        out.push(pass(ID, format!("{} evicts no pods", ctx.action)));
        return;
    }
    if let Some(e) = ctx.state.probe_errors.get(&Probe::Pdbs) {
        return out.push(unknown(ID, format!("probe `pdbs` failed: {e}")));
    }
    if let Err(e) = ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        return out.push(unknown(ID, e));
    }
    let mut blocked = Vec::new();
    for t in &ctx.targets {
        match ctx
            .node_state(&t.name)
            .and_then(|s| s.pdb_blocked_pods.as_ref())
        {
            None => {
                return out.push(unknown(
                    ID,
                    format!("PodDisruptionBudgets were not observed for {}", t.name),
                ));
            }
            Some(pods) => blocked.extend(pods.iter().map(|p| format!("{p} on {}", t.name))),
        }
    }
    if blocked.is_empty() {
        out.push(pass(
            ID,
            format!(
                "no pod on {} is blocked by a PodDisruptionBudget",
                or_list(
                    &ctx.targets
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                )
            ),
        ));
    } else {
        let refs: Vec<&str> = blocked.iter().map(String::as_str).collect();
        out.push(
            deny(ID, format!("PodDisruptionBudget allows no disruption for: {}", and_list(&refs)))
                .fix("scale the workload up or wait until its budget allows a disruption; a drain would hang"),
        );
    }
}
