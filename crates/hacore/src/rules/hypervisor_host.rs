//! Hypervisor hosts are failure domains: taking a host down takes all its VMs;
//! disrupting a node that shares a host with other masters puts them at risk.
//! Where a master runs is what the hypervisor's inventory reports (its VM
//! id on a host, when observed), else what the topology declares.

use super::{Context, NoParams, and_list, count, is_are, pass, warn};
use crate::plan::placement::{host_of, observed_host};
use crate::topology::{Hypervisor, Node};
use crate::verdict::Finding;

/// Where `n` runs, with " (observed)" when the inventory says otherwise
/// than the topology.
fn placed<'a>(ctx: &Context<'a>, n: &'a Node) -> Option<&'a str> {
    host_of(n, Some(ctx.state))
}

/// The masters the inventory places elsewhere than the topology, as a
/// clause ("; m2 runs on pve2 by the inventory, not on pve1").
fn moved(ctx: &Context<'_>) -> String {
    let mut out = String::new();
    for n in ctx.topology.control_plane_nodes() {
        if let (Some(seen), Some(declared)) =
            (observed_host(n, Some(ctx.state)), n.hypervisor.as_deref())
            && seen != declared
        {
            out.push_str(&format!(
                "; {} runs on {seen} by the hypervisor's inventory, not on {declared}",
                n.name
            ));
        }
    }
    out
}

/// Rule id.
pub const ID: &str = "hypervisor-host";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    match ctx.host {
        Some(h) => host_down(ctx, h, out),
        None => node_down(ctx, out),
    }
}

/// The disruption of a whole hypervisor host: which masters it takes down
/// together, and what is left on other hosts.
fn host_down(ctx: &Context<'_>, h: &Hypervisor, out: &mut Vec<Finding>) {
    let masters: Vec<&str> = ctx
        .topology
        .control_plane_nodes()
        .filter(|n| placed(ctx, n) == Some(h.name.as_str()))
        .map(|n| n.name.as_str())
        .collect();
    let others: Vec<&str> = ctx
        .topology
        .control_plane_nodes()
        .filter(|n| !masters.contains(&n.name.as_str()))
        .map(|n| n.name.as_str())
        .collect();
    let left = format!(
        "{}{}",
        {
            if others.is_empty() {
                "no control-plane node is left".to_string()
            } else {
                format!(
                    "{} {} left on other hosts",
                    and_list(&others),
                    is_are(others.len())
                )
            }
        },
        moved(ctx)
    );
    if ctx.targets.is_empty() && masters.is_empty() {
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

/// The disruption of nodes: does a target share its hypervisor with other
/// masters?
fn node_down(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    if !ctx.action.takes_node_down() {
        out.push(pass(
            ID,
            format!("{} leaves the hypervisor alone", ctx.action),
        ));
        return;
    }
    for t in &ctx.targets {
        let Some(host) = placed(ctx, t) else { continue };
        let neighbours: Vec<&str> = ctx
            .topology
            .control_plane_nodes()
            .filter(|n| n.name != t.name && placed(ctx, n) == Some(host))
            .map(|n| n.name.as_str())
            .collect();
        if !neighbours.is_empty() {
            out.push(warn(
                ID,
                format!(
                    "{} shares hypervisor {host} with {} {}: a host failure during the {} takes {} too{}",
                    t.name,
                    if neighbours.len() == 1 { "master" } else { "masters" },
                    and_list(&neighbours),
                    ctx.action,
                    if neighbours.len() == 1 { "it" } else { "them" },
                    moved(ctx),
                ),
            ));
            return;
        }
    }
    out.push(pass(
        ID,
        format!(
            "no other control-plane node shares the target's hypervisor{}",
            moved(ctx)
        ),
    ));
}
