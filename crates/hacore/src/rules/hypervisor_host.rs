//! Hypervisor hosts are failure domains: taking a host down takes all its VMs;
//! disrupting a node that shares a host with other masters puts them at risk.

use super::{Context, NoParams, and_list, count, is_are, pass, warn};
use crate::topology::Hypervisor;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "hypervisor-host";

/// Check: a hypervisor host as the target takes its VMs down together; a
/// node as the target puts the masters on its host at risk.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    match ctx.host {
        Some(h) => host_down(ctx, h, out),
        None => node_down(ctx, out),
    }
}

/// The target is hypervisor host `h`.
fn host_down(ctx: &Context<'_>, h: &Hypervisor, out: &mut Vec<Finding>) {
    let masters = ctx.target_masters();
    let others: Vec<&str> = ctx
        .topology
        .control_plane_nodes()
        .filter(|n| !ctx.is_target(&n.name))
        .map(|n| n.name.as_str())
        .collect();
    let left = if others.is_empty() {
        "no control-plane node is left".to_string()
    } else {
        format!(
            "{} {} left on other hosts",
            and_list(&others),
            is_are(others.len())
        )
    };
    if ctx.targets.is_empty() {
        out.push(pass(
            ID,
            format!("hypervisor {} runs no node of the topology", h.name),
        ));
        return;
    }
    let workers: Vec<&str> = ctx
        .targets
        .iter()
        .filter(|n| !n.is_control_plane())
        .map(|n| n.name.as_str())
        .collect();
    let with = if workers.is_empty() {
        String::new()
    } else {
        format!(
            ", with {} ({})",
            count(workers.len(), "worker"),
            and_list(&workers)
        )
    };
    let (a, host) = (ctx.action, &h.name);
    if !a.takes_node_down() {
        out.push(pass(
            ID,
            format!(
                "{a} of hypervisor {host} ({}) takes no node down",
                ctx.target_names()
            ),
        ));
        return;
    }
    match masters.as_slice() {
        [] => out.push(pass(
            ID,
            format!("{a} of hypervisor {host} takes down no master{with}; {left}"),
        )),
        [m] => out.push(pass(
            ID,
            format!("{a} of hypervisor {host} takes master {m} down{with}; {left}"),
        )),
        _ => out.push(
            warn(
                ID,
                format!(
                    "{a} of hypervisor {host} takes its {} ({}) down together{with}; {left}",
                    count(masters.len(), "master"),
                    and_list(&masters)
                ),
            )
            .fix("spread the masters over hypervisor hosts, one per host, so that a host takes at most one down"),
        ),
    }
}

/// The target is a node (or nodes): which masters share its host.
fn node_down(ctx: &Context<'_>, out: &mut Vec<Finding>) {
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
                    "{} shares hypervisor {host} with {} {}: a host failure during the {} takes {} too",
                    t.name,
                    if neighbours.len() == 1 { "master" } else { "masters" },
                    and_list(&neighbours),
                    ctx.action,
                    if neighbours.len() == 1 { "it" } else { "them" },
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
