//! Placement across hypervisor hosts: one host must not take two masters
//! down with it (anti-affinity), within each host's capacity.
//!
//! - Where a master runs is what the hypervisor's inventory reports (its VM
//!   id on a host, [`observed_host`]), else what the topology declares.
//! - A new master that names no host is placed by the planner ([`place`]):
//!   on the host with the fewest masters that has the memory and vCPUs for
//!   it (ties: the most free memory, then the name).
//! - With more than one host, a new master put on a host that already runs
//!   a master, while another host runs none and has room for it, is refused
//!   with the host to use (`spread`); when no host has room the plan says
//!   that the masters cannot be spread and why (a warning: the reviewer
//!   accepts it or frees a host).
//! - [`ha_phase`]: a Proxmox HA rule that keeps the masters apart from then
//!   on (a negative resource-affinity rule over their VMs).

use std::collections::BTreeMap;

use super::{Ctx, Phase, Plan, step};
use crate::backend::{HvOp, Op};
use crate::state::ClusterState;
use crate::topology::{Node, Topology};
use crate::units::Dur;

/// The host the inventory reports VM `node.vmid` on, if it was observed.
pub fn observed_host<'a>(node: &Node, state: Option<&'a ClusterState>) -> Option<&'a str> {
    let vmid = node.vmid?;
    state?
        .hypervisors
        .as_ref()?
        .iter()
        .find(|h| h.vmids.contains(&vmid))
        .map(|h| h.name.as_str())
}

/// Where `node` runs: observed, else declared.
pub fn host_of<'a>(node: &'a Node, state: Option<&'a ClusterState>) -> Option<&'a str> {
    observed_host(node, state).or(node.hypervisor.as_deref())
}

/// Free memory (GiB) and vCPUs (at 4:1) per host of `topology`, observed
/// when the inventory was read, else from the topology's own declarations.
fn free(topology: &Topology, state: Option<&ClusterState>) -> BTreeMap<String, (i64, i64)> {
    let observed = state.and_then(|s| s.hypervisors.as_ref());
    let mut out = BTreeMap::new();
    for h in &topology.hypervisors {
        let f = match observed.and_then(|o| o.iter().find(|o| o.name == h.name)) {
            Some(o) => (
                o.memory_gib as i64 - o.committed_memory_gib as i64,
                o.cpus as i64 * 4 - o.committed_cpus as i64,
            ),
            None => {
                let (m, c) = topology.committed_on(&h.name);
                (
                    h.memory_gib as i64 - (m + h.other_committed_memory_gib) as i64,
                    h.cpus as i64 * 4 - (c + h.other_committed_cpus) as i64,
                )
            }
        };
        out.insert(h.name.clone(), f);
    }
    out
}

fn needs(n: &Node) -> (i64, i64) {
    (n.memory_gib.unwrap_or(0) as i64, n.cpus.unwrap_or(0) as i64)
}

/// `to` with a host chosen for every new master (a control-plane node
/// `from` does not list) that names none, when `to` declares hosts. A
/// master no host has room for stays without one (refused later, with the
/// free memory of every host: `spread`).
pub fn place(from: &Topology, to: &Topology, state: Option<&ClusterState>) -> Topology {
    let mut out = to.clone();
    if to.hypervisors.is_empty() {
        return out;
    }
    // What `from` declares is already counted in each host's free room;
    // new masters declared on a host take theirs.
    let mut room = free(from, state);
    for h in &to.hypervisors {
        room.entry(h.name.clone()).or_insert((
            h.memory_gib as i64 - h.other_committed_memory_gib as i64,
            h.cpus as i64 * 4 - h.other_committed_cpus as i64,
        ));
    }
    let mut masters: BTreeMap<String, usize> = room.keys().map(|h| (h.clone(), 0)).collect();
    for m in to.control_plane_nodes() {
        let host = match from.node(&m.name) {
            Some(old) => host_of(old, state),
            None => m.hypervisor.as_deref(),
        };
        if let Some(h) = host {
            *masters.entry(h.to_string()).or_default() += 1;
            if from.node(&m.name).is_none()
                && let Some(r) = room.get_mut(h)
            {
                r.0 -= needs(m).0;
                r.1 -= needs(m).1;
            }
        }
    }
    for n in out.nodes.iter_mut() {
        if !n.is_control_plane() || n.hypervisor.is_some() || from.node(&n.name).is_some() {
            continue;
        }
        let (mem, cpu) = needs(n);
        let best = room
            .iter()
            .filter(|(_, (m, c))| *m >= mem && *c >= cpu)
            .min_by_key(|(h, (m, _))| (masters.get(*h).copied().unwrap_or(0), -*m, (*h).clone()))
            .map(|(h, _)| h.clone());
        if let Some(h) = best {
            let r = room.get_mut(&h).expect("listed");
            r.0 -= mem;
            r.1 -= cpu;
            *masters.entry(h.clone()).or_default() += 1;
            n.hypervisor = Some(h);
        }
    }
    out
}

/// Anti-affinity across hosts: reasons (a new master crowds a host while
/// another host runs none and has room for it; a new master no host has
/// room for) and warnings (the masters cannot be spread within capacity; a
/// master runs elsewhere than the topology says).
pub(super) fn spread(
    ctx: &Ctx<'_>,
    state: Option<&ClusterState>,
    reasons: &mut Vec<String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let (from, to) = (ctx.from, ctx.to);
    for m in &ctx.masters_from {
        if let (Some(seen), Some(declared)) = (observed_host(m, state), m.hypervisor.as_deref())
            && seen != declared
        {
            warnings.push(format!(
                "`{}` runs on `{seen}` (the hypervisor's inventory), not on `{declared}` as the topology says: placement is reasoned with `{seen}`",
                m.name
            ));
        }
    }
    if to.hypervisors.len() < 2 {
        return warnings;
    }
    let room = free(from, state);
    let mut on: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for m in &ctx.masters_to {
        let host = match from.node(&m.name) {
            Some(old) => host_of(old, state),
            None => m.hypervisor.as_deref(),
        };
        if let Some(h) = host {
            on.entry(h).or_default().push(m);
        }
    }
    // Room left on each host once the new masters declared on it are there.
    let mut left = room.clone();
    for n in &ctx.new_masters {
        if let Some(r) = n.hypervisor.as_deref().and_then(|h| left.get_mut(h)) {
            r.0 -= needs(n).0;
            r.1 -= needs(n).1;
        }
    }
    let describe = |left: &BTreeMap<String, (i64, i64)>| {
        left.iter()
            .map(|(h, (m, c))| format!("{h}: {} GiB, {} vCPUs free", m.max(&0), c.max(&0)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for n in &ctx.new_masters {
        if n.hypervisor.is_none() {
            reasons.push(format!(
                "no hypervisor host has room for new master `{}` ({} GiB, {} vCPUs) ({})",
                n.name,
                needs(n).0,
                needs(n).1,
                describe(&left)
            ));
        }
    }
    for (host, masters) in &on {
        if masters.len() < 2 {
            continue;
        }
        let names: Vec<&str> = masters.iter().map(|m| m.name.as_str()).collect();
        let mut moved = false;
        for n in masters.iter().filter(|m| from.node(&m.name).is_none()) {
            let (mem, cpu) = needs(n);
            let alt = left.iter().find(|(h, (m, c))| {
                on.get(h.as_str()).is_none_or(Vec::is_empty) && *m >= mem && *c >= cpu
            });
            if let Some((alt, (m, _))) = alt {
                reasons.push(format!(
                    "new master `{}` is to run on `{host}` with {}: host `{alt}` runs no master and has room for it ({m} GiB free, it needs {mem} GiB): put it there (hypervisor: {alt}); one host must not take two masters down",
                    n.name,
                    names.iter().filter(|x| **x != n.name).copied().collect::<Vec<_>>().join(" and ")
                ));
                moved = true;
                break;
            }
        }
        if !moved {
            warnings.push(format!(
                "masters {} share hypervisor `{host}` and cannot be spread within capacity ({}): a failure of `{host}` takes {} masters down",
                names.join(" and "),
                describe(&left),
                names.len()
            ));
        }
    }
    warnings
}

/// The phase that keeps the target's masters on different hosts from now
/// on: a Proxmox HA resource per master VM and the negative
/// resource-affinity rule `rule` listing exactly them. None with fewer than
/// two master VMs.
pub fn ha_phase(to: &Topology, rule: &str) -> Option<Phase> {
    let vmids: Vec<u32> = to.control_plane_nodes().filter_map(|n| n.vmid).collect();
    if vmids.len() < 2 {
        return None;
    }
    let mut s = step(
        &format!("ha/{rule}"),
        format!(
            "keep VMs {} apart: HA resources and the negative resource-affinity rule `{rule}`",
            vmids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Op::Hypervisor(HvOp::HaAntiAffinity {
            rule: rule.to_string(),
            vmids,
        }),
        Dur::secs(5),
    );
    s.notes.push(
        "Proxmox's HA manager then relocates a master that shares a host with another, and never starts two on one host".into(),
    );
    Some(Phase {
        id: "ha".into(),
        title: "Keep the masters on different hypervisor hosts (Proxmox HA)".into(),
        steps: vec![s],
        rollback: Some(format!(
            "none needed: the rule only constrains placement; `DELETE /cluster/ha/rules/{rule}` removes it"
        )),
    })
}

/// `plan` ending with the [`ha_phase`] over the masters that remain (a VM
/// the plan deletes, the replaced master's, is not kept).
pub fn with_ha(mut plan: Plan, rule: &str) -> Plan {
    let gone: Vec<u32> = plan
        .steps()
        .filter_map(|(_, s)| match &s.op {
            Op::Hypervisor(HvOp::DeleteVm { vmid, .. }) => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut to = plan.to.clone();
    to.nodes
        .retain(|n| n.vmid.is_none_or(|v| !gone.contains(&v)));
    if let Some(mut p) = ha_phase(&to, rule) {
        for st in &mut p.steps {
            st.command = Some(super::commands::describe(&st.op, &plan.to));
            st.rollback_command = st
                .rollback
                .as_ref()
                .map(|r| super::commands::describe(r, &plan.to));
        }
        // The drill, when asked, stays the last phase.
        let at = plan
            .phases
            .iter()
            .position(|p| p.id == "drill")
            .unwrap_or(plan.phases.len());
        plan.phases.insert(at, p);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Options};
    use crate::state::HostState;

    fn topo(hosts: &str, nodes: &str) -> Topology {
        let y = format!(
            "cluster: lab\ncontrolPlaneEndpoint: {{ address: 10.0.0.10 }}\nloadBalancer: {{ kind: haproxy, pool: k8s-apiserver, frontend: \"10.0.0.10:6443\" }}\nhypervisors:\n{hosts}nodes:\n{nodes}"
        );
        Topology::from_yaml("t.yaml", &y).unwrap().0
    }

    const HOSTS: &str = "  - { name: pve1, memoryGiB: 64, cpus: 16 }\n  - { name: pve2, memoryGiB: 64, cpus: 16 }\n  - { name: pve3, memoryGiB: 64, cpus: 16 }\n";
    const M1: &str = "  - { name: m1, role: control-plane, address: 10.0.0.11, hypervisor: pve1, vmid: 101, cpus: 2, memoryGiB: 8, diskGiB: 32 }\n";

    fn new(name: &str, last: u8, host: Option<&str>) -> String {
        format!(
            "  - {{ name: {name}, role: control-plane, address: 10.0.0.{last}, {}vmid: 1{last}, cpus: 2, memoryGiB: 8, diskGiB: 32 }}\n",
            host.map(|h| format!("hypervisor: {h}, "))
                .unwrap_or_default()
        )
    }

    fn opts() -> Options {
        Options {
            template: Some(9000),
        }
    }

    #[test]
    fn new_masters_without_a_host_are_spread_one_per_host() {
        let from = topo(HOSTS, M1);
        let to = topo(
            HOSTS,
            &format!("{M1}{}{}", new("m2", 12, None), new("m3", 13, None)),
        );
        let p = plan::plan(&from, &to, None, &opts()).unwrap();
        let host = |n: &str| p.to.node(n).unwrap().hypervisor.clone().unwrap();
        assert_eq!(host("m1"), "pve1");
        assert_ne!(host("m2"), "pve1");
        assert_ne!(host("m3"), "pve1");
        assert_ne!(host("m2"), host("m3"));
    }

    #[test]
    fn a_new_master_crowding_a_host_while_another_has_room_is_refused_with_the_host_to_use() {
        let from = topo(HOSTS, M1);
        let to = topo(
            HOSTS,
            &format!(
                "{M1}{}{}",
                new("m2", 12, Some("pve1")),
                new("m3", 13, Some("pve2"))
            ),
        );
        let e = plan::plan(&from, &to, None, &opts()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`m2` is to run on `pve1` with m1"), "{text}");
        assert!(text.contains("host `pve3` runs no master"), "{text}");
        assert!(text.contains("(hypervisor: pve3)"), "{text}");
    }

    #[test]
    fn masters_that_cannot_be_spread_within_capacity_are_planned_with_the_reason() {
        // pve2 and pve3 are nearly full: only pve1 has room.
        let hosts = "  - { name: pve1, memoryGiB: 64, cpus: 16 }\n  - { name: pve2, memoryGiB: 16, cpus: 16, otherCommittedMemoryGiB: 12 }\n";
        let from = topo(hosts, M1);
        let to = topo(
            hosts,
            &format!(
                "{M1}{}{}",
                new("m2", 12, Some("pve1")),
                new("m3", 13, Some("pve1"))
            ),
        );
        let p = plan::plan(&from, &to, None, &opts()).unwrap();
        let w = p.warnings.join("\n");
        assert!(
            w.contains("share hypervisor `pve1` and cannot be spread within capacity"),
            "{w}"
        );
        assert!(w.contains("pve2: 4 GiB"), "{w}");
        // And a master placed by the planner where nothing fits is refused
        // with every host's free room.
        let big = "  - { name: m2, role: control-plane, address: 10.0.0.12, vmid: 112, cpus: 2, memoryGiB: 60, diskGiB: 32 }\n";
        let to = topo(hosts, &format!("{M1}{big}"));
        let e = plan::plan(&from, &to, None, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no hypervisor host has room for new master `m2` (60 GiB"),
            "{e}"
        );
    }

    #[test]
    fn placement_follows_the_inventory_not_the_topology() {
        // The topology says m1 is on pve1; the inventory finds VM 101 on pve2.
        let from = topo(HOSTS, M1);
        let to = topo(
            HOSTS,
            &format!("{M1}{}{}", new("m2", 12, None), new("m3", 13, None)),
        );
        let mut state = ClusterState::empty("2026-05-21T12:00:00Z".parse().unwrap());
        state.hypervisors = Some(
            [("pve1", vec![]), ("pve2", vec![101]), ("pve3", vec![])]
                .into_iter()
                .map(|(h, ids)| HostState {
                    name: h.into(),
                    memory_gib: 64,
                    committed_memory_gib: 8,
                    cpus: 16,
                    committed_cpus: 2,
                    vmids: ids,
                })
                .collect(),
        );
        let p = plan::plan(&from, &to, Some(&state), &opts()).unwrap();
        let host = |n: &str| p.to.node(n).unwrap().hypervisor.clone().unwrap();
        assert_ne!(host("m2"), "pve2");
        assert_ne!(host("m3"), "pve2");
        assert_ne!(host("m2"), host("m3"));
        assert!(
            p.warnings
                .iter()
                .any(|w| w
                    .contains("`m1` runs on `pve2` (the hypervisor's inventory), not on `pve1`")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn the_ha_phase_keeps_every_master_vm_apart() {
        let to = topo(
            HOSTS,
            &format!(
                "{M1}{}{}",
                new("m2", 12, Some("pve2")),
                new("m3", 13, Some("pve3"))
            ),
        );
        let ph = ha_phase(&to, "k8s-masters").unwrap();
        assert_eq!(
            ph.steps[0].op,
            Op::Hypervisor(HvOp::HaAntiAffinity {
                rule: "k8s-masters".into(),
                vmids: vec![101, 112, 113]
            })
        );
        assert!(ha_phase(&topo(HOSTS, M1), "k8s-masters").is_none());
    }

    #[test]
    fn a_replacement_keeps_the_rule_over_the_masters_that_remain_after_the_old_vm_is_gone() {
        let current = topo(
            HOSTS,
            &format!(
                "{M1}{}{}",
                new("m2", 12, Some("pve2")),
                new("m3", 13, Some("pve3"))
            ),
        );
        let mut target = topo(
            HOSTS,
            &format!(
                "{M1}{}{}{}",
                new("m2", 12, Some("pve2")),
                new("m3", 13, Some("pve3")),
                new("m4", 14, Some("pve1"))
            ),
        );
        target.nodes.retain(|n| n.name != "m1");
        let p = crate::replace::replace_master(
            &current,
            &target,
            "m1",
            "m4",
            &opts(),
            &Default::default(),
        )
        .unwrap();
        let p = with_ha(p, "k8s-masters");
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(ids.last(), Some(&"ha/k8s-masters"), "{ids:?}");
        let (_, last) = p.steps().last().unwrap();
        assert_eq!(
            last.op,
            Op::Hypervisor(HvOp::HaAntiAffinity {
                rule: "k8s-masters".into(),
                vmids: vec![112, 113, 114]
            })
        );
        assert!(
            ids.iter().position(|i| *i == "remove/m1/vm")
                < ids.iter().position(|i| *i == "ha/k8s-masters")
        );
    }
}
