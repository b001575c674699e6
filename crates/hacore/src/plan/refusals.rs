//! Refusals and warnings: whether the migration can be made safe at all
//! (every reason it cannot), and the risks a reviewer accepts with it.

use std::collections::BTreeSet;

use super::{Ctx, Refusal};
use crate::state::ClusterState;
use crate::topology::{LbKind, Node};

/// Every reason the migration cannot be made safe, or the warnings to show
/// with the plan.
pub(super) fn check(ctx: &Ctx<'_>, state: Option<&ClusterState>) -> Result<Vec<String>, Refusal> {
    let mut reasons = Vec::new();
    shape(ctx, &mut reasons);
    new_masters(ctx, &mut reasons);
    addresses(ctx, state, &mut reasons);
    vmids(ctx, state, &mut reasons);
    capacity(ctx, state, &mut reasons);
    let mut warnings = warnings(ctx);
    warnings.extend(super::placement::spread(ctx, state, &mut reasons));
    if reasons.is_empty() {
        Ok(warnings)
    } else {
        Err(Refusal::unsafe_for(reasons))
    }
}

/// The target's shape: valid, odd, no fewer masters, the masters unchanged,
/// a load balancer in front of several.
fn shape(ctx: &Ctx<'_>, reasons: &mut Vec<String>) {
    let to = ctx.to;
    let report = to.validate();
    for e in &report.errors {
        reasons.push(format!("target topology: {e}"));
    }
    let count = ctx.masters_to.len();
    if count % 2 == 0 {
        reasons.push(format!(
            "the target has {} control-plane nodes: an even etcd size tolerates no more failures than one fewer; use {} or {}",
            count,
            count.saturating_sub(1),
            count + 1
        ));
    }
    if count < ctx.masters_from.len() {
        reasons.push(
            "the target has fewer masters than the cluster: removal is not planned here".into(),
        );
    }
    for m in &ctx.masters_from {
        match to.node(&m.name) {
            Some(t) if t.is_control_plane() && t.address == m.address => {}
            Some(_) => reasons.push(format!(
                "master `{}` changes role or address in the target; that is not a migration step",
                m.name
            )),
            None => reasons.push(format!("master `{}` is missing from the target", m.name)),
        }
    }
    if to.load_balancer.kind == LbKind::None && count > 1 {
        reasons.push(format!(
            "the target has {count} masters but no load balancer: clients would still depend on one master"
        ));
    }
}

/// Each new master says where and how big its VM is, and there is a template.
fn new_masters(ctx: &Ctx<'_>, reasons: &mut Vec<String>) {
    for n in &ctx.new_masters {
        let missing: Vec<&str> = [
            ("hypervisor", n.hypervisor.is_none()),
            ("vmid", n.vmid.is_none()),
            ("cpus", n.cpus.is_none()),
            ("memoryGiB", n.memory_gib.is_none()),
            ("diskGiB", n.disk_gib.is_none()),
        ]
        .into_iter()
        .filter(|(_, absent)| *absent)
        .map(|(field, _)| field)
        .collect();
        if !missing.is_empty() {
            reasons.push(format!(
                "new master `{}` needs {} to be provisioned",
                n.name,
                missing.join(", ")
            ));
        }
    }
    if !ctx.new_masters.is_empty() && ctx.opts.template.is_none() {
        reasons.push(super::NEEDS_TEMPLATE.into());
    }
}

/// The VIP and the new nodes' addresses are free.
fn addresses(ctx: &Ctx<'_>, state: Option<&ClusterState>, reasons: &mut Vec<String>) {
    for (what, addr) in &ctx.wanted {
        if let Some(n) = ctx.from.nodes.iter().find(|n| n.address == *addr) {
            reasons.push(format!(
                "{what} address {addr} is already node `{}`",
                n.name
            ));
        } else if let Some(in_use) = state.and_then(|s| s.addresses_in_use.as_ref())
            && in_use.contains(addr)
        {
            reasons.push(format!(
                "{what} address {addr} already answers on the network"
            ));
        }
    }
}

/// The new VM ids are free, in the topology and on every observed host.
fn vmids(ctx: &Ctx<'_>, state: Option<&ClusterState>, reasons: &mut Vec<String>) {
    for n in &ctx.new_masters {
        let Some(vmid) = n.vmid else { continue };
        if let Some(o) = ctx.from.nodes.iter().find(|o| o.vmid == Some(vmid)) {
            reasons.push(format!(
                "VM id {vmid} for `{}` is already VM `{}`",
                n.name, o.name
            ));
        }
        for h in state
            .and_then(|s| s.hypervisors.as_ref())
            .into_iter()
            .flatten()
        {
            if h.vmids.contains(&vmid) {
                reasons.push(format!(
                    "VM id {vmid} for `{}` is already taken on hypervisor `{}`",
                    n.name, h.name
                ));
            }
        }
    }
}

/// Each host has the memory and CPU for its new masters, from observation
/// when there is one.
fn capacity(ctx: &Ctx<'_>, state: Option<&ClusterState>, reasons: &mut Vec<String>) {
    for h in &ctx.to.hypervisors {
        let adding: Vec<&&Node> = ctx
            .new_masters
            .iter()
            .filter(|n| n.hypervisor.as_deref() == Some(h.name.as_str()))
            .collect();
        if adding.is_empty() {
            continue;
        }
        let observed = state
            .and_then(|s| s.hypervisors.as_ref())
            .and_then(|hs| hs.iter().find(|o| o.name == h.name));
        let (mem, mem_used, cpus, cpus_used) = match observed {
            Some(o) => (
                o.memory_gib,
                o.committed_memory_gib,
                o.cpus,
                o.committed_cpus,
            ),
            None => {
                let (m, c) = ctx.from.committed_on(&h.name);
                (
                    h.memory_gib,
                    m + h.other_committed_memory_gib,
                    h.cpus,
                    c + h.other_committed_cpus,
                )
            }
        };
        let add_mem: u32 = adding.iter().filter_map(|n| n.memory_gib).sum();
        let add_cpu: u32 = adding.iter().filter_map(|n| n.cpus).sum();
        if mem_used + add_mem > mem {
            let free = mem.saturating_sub(mem_used);
            let each = free / adding.len() as u32;
            let fit = if each >= 2 {
                format!(
                    "{} new master(s) of at most {each} GiB each would fit",
                    adding.len()
                )
            } else {
                "no useful size fits: free memory on the host or add a host".to_string()
            };
            reasons.push(format!(
                "hypervisor `{}`: {mem_used} of {mem} GiB already committed ({}%), the new masters need {add_mem} GiB more; {fit}",
                h.name,
                mem_used * 100 / mem.max(1)
            ));
        }
        if cpus_used + add_cpu > cpus * 4 {
            reasons.push(format!(
                "hypervisor `{}`: {cpus_used} vCPUs committed on {cpus} threads, {add_cpu} more would exceed 4:1",
                h.name
            ));
        }
    }
}

/// Risks the plan accepts: one hypervisor for every master, joins without
/// learners.
fn warnings(ctx: &Ctx<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    let count = ctx.masters_to.len();
    let hosts: BTreeSet<Option<&str>> = ctx
        .masters_to
        .iter()
        .map(|n| n.hypervisor.as_deref())
        .collect();
    if count > 1 && hosts.len() == 1 {
        warnings.push(format!(
            "all {count} masters share one hypervisor: a host failure still takes the control plane down"
        ));
    }
    if !ctx.to.etcd.learner_joins {
        warnings.push(
            "joins without etcd learner mode: growing 1 -> 2 voters loses quorum until the new member starts".into(),
        );
    }
    warnings
}
