//! Hypervisor hosts are failure domains: taking a host down takes all its VMs;
//! disrupting a node that shares a host with other masters puts them at risk.

use super::{Context, NoParams, pass, warn};
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "hypervisor-host";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    if let Some(h) = ctx.host {
        let masters = ctx.targets.iter().filter(|n| n.is_control_plane()).count();
        out.push(pass(
            ID,
            format!(
                "hypervisor {} runs {} node(s), {masters} of them control plane: {}",
                h.name,
                ctx.targets.len(),
                if ctx.targets.is_empty() {
                    "none".into()
                } else {
                    ctx.target_names()
                }
            ),
        ));
        return;
    }
    if !ctx.action.takes_node_down() {
        out.push(pass(
            ID,
            format!("{} leaves the hypervisor alone", ctx.action),
        ));
        return;
    }
    for t in &ctx.targets {
        let Some(host) = &t.hypervisor else { continue };
        let neighbours: Vec<&str> = ctx
            .topology
            .control_plane_nodes()
            .filter(|n| n.name != t.name && n.hypervisor.as_ref() == Some(host))
            .map(|n| n.name.as_str())
            .collect();
        if !neighbours.is_empty() {
            out.push(warn(
                ID,
                format!(
                    "{} shares hypervisor {host} with control-plane node(s) {}: a host failure during the {} takes them too",
                    t.name,
                    neighbours.join(", "),
                    ctx.action
                ),
            ));
            return;
        }
    }
    out.push(pass(
        ID,
        "no other control-plane node shares the target's hypervisor",
    ));
}
