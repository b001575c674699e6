//! The hypervisor as it really is: every node's physical memory and CPUs and
//! every VM of the cluster, read from the API; what a migration plan must
//! check against it (over-commitment per host, running and stopped VMs
//! counted apart, the largest size that fits; VM ids taken by any VM; the
//! template; which host each master lands on); and `hacli hypervisor show`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hacore::backend::{HvOp, Op};
use hacore::plan::Plan;
use hacore::state::HostState;
use hacore::topology::{Node, Topology};

use crate::client::Client;
use crate::error::Error;
use crate::mark::{Found, Owner, judge};

const GIB: u64 = 1024 * 1024 * 1024;

/// A VM as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    /// VM id.
    pub vmid: u32,
    /// Name.
    pub name: String,
    /// `running`, `stopped`...
    pub status: String,
    /// Configured memory, bytes.
    pub memory: u64,
    /// vCPUs.
    pub cpus: u32,
    /// A template (never runs; its memory is not committed).
    pub template: bool,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A node with its VMs.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    /// Node name.
    pub node: String,
    /// `online`, `offline`...
    pub status: String,
    /// Physical memory, bytes.
    pub memory: u64,
    /// Logical CPUs.
    pub cpus: u32,
    /// VMs on the node, by id.
    pub vms: Vec<VmView>,
}

/// Committed resources on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Memory of running VMs, bytes.
    pub running_memory: u64,
    /// Memory of stopped VMs (not templates), bytes.
    pub stopped_memory: u64,
    /// vCPUs of running VMs.
    pub running_cpus: u32,
    /// vCPUs of stopped VMs (not templates).
    pub stopped_cpus: u32,
}

impl HostView {
    /// What is committed on this host.
    pub fn committed(&self) -> Committed {
        let mut c = Committed::default();
        for v in self.vms.iter().filter(|v| !v.template) {
            if v.status == "running" {
                c.running_memory += v.memory;
                c.running_cpus += v.cpus;
            } else {
                c.stopped_memory += v.memory;
                c.stopped_cpus += v.cpus;
            }
        }
        c
    }
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InventoryView {
    /// Nodes, by name.
    pub hosts: Vec<HostView>,
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

impl InventoryView {
    /// Read `GET /nodes`, each online node's `status`, and `GET
    /// /cluster/resources?type=vm`.
    pub async fn read(client: &Client) -> Result<InventoryView, Error> {
        let nodes = client.nodes().await?;
        let vms = client.cluster_vms().await?;
        let mut hosts = Vec::new();
        for n in nodes {
            let (memory, cpus) = if n.status == "online" {
                let st = client.node_status(&n.node).await?;
                (st.memory_total, st.cpus)
            } else {
                (n.maxmem.unwrap_or(0), n.maxcpu.unwrap_or(0.0) as u32)
            };
            let mut on: Vec<VmView> = vms
                .iter()
                .filter(|v| v.node == n.node)
                .map(|v| VmView {
                    vmid: v.vmid,
                    name: v.name.clone().unwrap_or_default(),
                    status: v.status.clone(),
                    memory: v.maxmem.unwrap_or(0),
                    cpus: v.maxcpu.unwrap_or(0.0).round() as u32,
                    template: v.template,
                    tags: v.tags.clone(),
                })
                .collect();
            on.sort_by_key(|v| v.vmid);
            hosts.push(HostView {
                node: n.node,
                status: n.status,
                memory,
                cpus,
                vms: on,
            });
        }
        hosts.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(InventoryView { hosts })
    }

    /// A VM anywhere in the cluster.
    pub fn vm(&self, vmid: u32) -> Option<(&HostView, &VmView)> {
        self.hosts
            .iter()
            .find_map(|h| h.vms.iter().find(|v| v.vmid == vmid).map(|v| (h, v)))
    }

    /// The hosts as hacore's planner takes them (committed = running and
    /// stopped VMs; VM ids: those on the host, templates included; the
    /// planner checks a wanted id against every host).
    pub fn host_states(&self) -> Vec<HostState> {
        self.hosts
            .iter()
            .map(|h| {
                let c = h.committed();
                HostState {
                    name: h.node.clone(),
                    memory_gib: (h.memory / GIB) as u32,
                    committed_memory_gib: (c.running_memory + c.stopped_memory).div_ceil(GIB)
                        as u32,
                    cpus: h.cpus,
                    committed_cpus: c.running_cpus + c.stopped_cpus,
                    vmids: h.vms.iter().map(|v| v.vmid).collect(),
                }
            })
            .collect()
    }

    /// Every reason `to` cannot be provisioned on this cluster (empty: it can),
    /// and the placement of each master (host -> masters), for the plan.
    pub fn check(
        &self,
        from: &Topology,
        to: &Topology,
        template: Option<u32>,
    ) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
        let mut reasons = Vec::new();
        let names: Vec<&str> = self.hosts.iter().map(|h| h.node.as_str()).collect();
        let new_masters: Vec<_> = to
            .control_plane_nodes()
            .filter(|n| from.node(&n.name).is_none())
            .collect();

        match template {
            Some(t) => match self.vm(t) {
                None => reasons.push(format!(
                    "template VM {t} does not exist in the Proxmox cluster"
                )),
                Some((h, v)) if !v.template => reasons.push(format!(
                    "VM {t} `{}` on {} is not a template (convert it with `qm template {t}`, or give the template's id)",
                    v.name, h.node
                )),
                Some(_) => {}
            },
            None if !new_masters.is_empty() => {
                reasons.push(hacore::plan::NEEDS_TEMPLATE.into())
            }
            None => {}
        }

        for n in &new_masters {
            if let Some(vmid) = n.vmid
                && let Some((h, v)) = self.vm(vmid)
            {
                let listed = to
                    .nodes
                    .iter()
                    .any(|o| o.vmid == Some(vmid) && o.name != n.name)
                    || from.nodes.iter().any(|o| o.vmid == Some(vmid));
                reasons.push(format!(
                    "VM id {vmid} for `{}` is already taken by VM `{}` ({}, on {}){}; choose a free id (GET /cluster/nextid)",
                    n.name,
                    v.name,
                    v.status,
                    h.node,
                    if listed { "" } else { ", a VM the topology does not list" }
                ));
            }
            if let Some(hv) = &n.hypervisor
                && !names.contains(&hv.as_str())
            {
                reasons.push(format!(
                    "`{}` is to run on `{hv}`, which is not a node of the Proxmox cluster (nodes: {})",
                    n.name,
                    names.join(", ")
                ));
            }
        }

        self.capacity_reasons(&new_masters, &mut reasons);

        let mut placement: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in to.control_plane_nodes() {
            let host = from
                .node(&m.name)
                .and_then(|o| o.vmid)
                .and_then(|id| self.vm(id))
                .map(|(h, _)| h.node.clone())
                .or_else(|| m.hypervisor.clone())
                .unwrap_or_else(|| "(bare metal)".into());
            placement.entry(host).or_default().push(m.name.clone());
        }
        (reasons, placement)
    }

    /// Hosts that the new masters placed on them would over-commit
    /// (memory, or vCPUs beyond 4:1), with what would fit.
    fn capacity_reasons(&self, new_masters: &[&Node], reasons: &mut Vec<String>) {
        for h in &self.hosts {
            let adding: Vec<_> = new_masters
                .iter()
                .filter(|n| n.hypervisor.as_deref() == Some(h.node.as_str()))
                .collect();
            if adding.is_empty() {
                continue;
            }
            let c = h.committed();
            let add_mem: u64 = adding
                .iter()
                .filter_map(|n| n.memory_gib)
                .map(|g| g as u64 * GIB)
                .sum();
            let add_cpu: u32 = adding.iter().filter_map(|n| n.cpus).sum();
            let count = adding.len() as u64;
            let committed = c.running_memory + c.stopped_memory;
            if committed + add_mem > h.memory {
                let each_all = h.memory.saturating_sub(committed) / count / GIB;
                let each_running = h.memory.saturating_sub(c.running_memory) / count / GIB;
                let fit = if each_all >= 2 {
                    format!("{count} master(s) of at most {each_all} GiB each fit")
                } else {
                    "no useful master size fits".to_string()
                };
                reasons.push(format!(
                "host `{}`: {:.0} GiB physical, {:.0} GiB committed to running VMs and {:.0} GiB to stopped ones; the new masters need {:.0} GiB more; {fit} (at most {each_running} GiB each if the stopped VMs are never started again)",
                h.node,
                gib(h.memory),
                gib(c.running_memory),
                gib(c.stopped_memory),
                gib(add_mem),
            ));
            }
            let vcpus = c.running_cpus + c.stopped_cpus;
            if vcpus + add_cpu > h.cpus * 4 {
                let each = (h.cpus * 4).saturating_sub(vcpus) / count as u32;
                reasons.push(format!(
                "host `{}`: {vcpus} vCPUs committed ({} running, {} stopped) on {} CPUs; {add_cpu} more exceed 4:1; at most {each} vCPUs each fit",
                h.node, c.running_cpus, c.stopped_cpus, h.cpus
            ));
            }
        }
    }

    /// Per host: committed against physical memory and CPUs, and its VMs.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            let c = h.committed();
            let pct = |b: u64| (b * 100).checked_div(h.memory).unwrap_or(0);
            let _ = writeln!(
                s,
                "{} ({}): memory {:.0} GiB, committed {:.0} GiB running + {:.0} GiB stopped = {}%; CPUs {}, vCPUs {} running + {} stopped",
                h.node,
                h.status,
                gib(h.memory),
                gib(c.running_memory),
                gib(c.stopped_memory),
                pct(c.running_memory + c.stopped_memory),
                h.cpus,
                c.running_cpus,
                c.stopped_cpus
            );
            for v in &h.vms {
                let _ = writeln!(
                    s,
                    "  {:>6}  {:<24} {:<9} {:>4.0} GiB {:>3} vCPU{}",
                    v.vmid,
                    v.name,
                    v.status,
                    gib(v.memory),
                    v.cpus,
                    if v.template { "  template" } else { "" }
                );
            }
        }
        s
    }
}

/// Every reason `plan` cannot run on the Proxmox cluster as it is now
/// (empty: it can), whatever the plan was made from: read before its first
/// step by `hacli apply --backend live` and the live `replace-master` and
/// `remove-master`.
///
/// - Each VM id the plan clones is free, or already holds this run's own
///   clone (our mark and the planned name; or, after a killed run, the
///   planned name on a clone the journal started): any other VM there is a
///   refusal naming it.
/// - Each VM the plan deletes as a step (not a rollback) is ours.
/// - The template exists and is a template; each host is a node of the
///   cluster and has the memory and vCPUs for the VMs still to create.
/// - No other VM has a planned address as its cloud-init address
///   (`ipconfig0`).
pub async fn plan_refusals(
    client: &Client,
    plan: &Plan,
    owner: &Owner,
) -> Result<Vec<String>, Error> {
    let inv = InventoryView::read(client).await?;
    let mut reasons = Vec::new();
    let mut ours: Vec<u32> = Vec::new();
    let mut template = None;
    let mut addresses: Vec<(String, String)> = Vec::new();
    for (_, step) in plan.steps() {
        match &step.op {
            Op::Hypervisor(HvOp::CloneVm {
                vmid,
                name,
                template: t,
                address,
                ..
            }) => {
                template.get_or_insert(*t);
                let ip = address.split('/').next().unwrap_or_default().to_string();
                addresses.push((ip, name.clone()));
                let Some((h, v)) = inv.vm(*vmid) else {
                    continue;
                };
                let cfg = client.vm_config(&h.node, *vmid).await?;
                match judge(owner, &Found::from_config(*vmid, &v.status, &cfg), name, true) {
                    Ok(()) => ours.push(*vmid),
                    Err(m) => reasons.push(format!(
                        "VM id {vmid} planned for {name} is taken: {m} (on {}); hacli will not clone over it nor delete it: choose a free id (GET /cluster/nextid)",
                        h.node
                    )),
                }
            }
            Op::Hypervisor(HvOp::DeleteVm { vmid, name, .. }) => {
                let Some((h, v)) = inv.vm(*vmid) else {
                    continue;
                };
                let cfg = client.vm_config(&h.node, *vmid).await?;
                if let Err(m) = judge(
                    owner,
                    &Found::from_config(*vmid, &v.status, &cfg),
                    name,
                    true,
                ) {
                    reasons.push(format!(
                        "step {} would delete VM {vmid}: {m} (on {}): hacli deletes only VMs it created; remove `vmid` from {name} in the topology to keep the VM, or delete it yourself",
                        step.id, h.node
                    ));
                }
            }
            Op::Hypervisor(HvOp::HaAntiAffinity { rule, .. }) => {
                if let Some(r) = crate::ha::rules(client)
                    .await?
                    .into_iter()
                    .find(|r| r.rule == *rule && !r.ours())
                {
                    reasons.push(format!(
                        "step {} would rewrite HA rule `{rule}`, which is not hacli's ({}): choose another rule id",
                        step.id,
                        r.describe()
                    ));
                }
            }
            _ => {}
        }
    }
    // Template, hosts and capacity, with this run's own VMs counted as the
    // new masters they are (not twice).
    let mut rest = inv.clone();
    for h in &mut rest.hosts {
        h.vms.retain(|v| !ours.contains(&v.vmid));
    }
    let (more, _) = rest.check(&plan.from, &plan.to, template);
    reasons.extend(more.into_iter().filter(|r| !r.starts_with("VM id ")));
    // Addresses other VMs are configured with.
    if !addresses.is_empty() {
        address_refusals(client, &rest, &addresses, &mut reasons).await?;
    }
    Ok(reasons)
}

/// A refusal for each planned address (with the master it is planned
/// for) that a VM of `inv` has as its cloud-init address (`ipconfig`).
async fn address_refusals(
    client: &Client,
    inv: &InventoryView,
    addresses: &[(String, String)],
    reasons: &mut Vec<String>,
) -> Result<(), Error> {
    for h in &inv.hosts {
        for v in h.vms.iter().filter(|v| !v.template) {
            let cfg = client.vm_config(&h.node, v.vmid).await?;
            let ips: Vec<&str> = cfg
                .iter()
                .filter(|(k, _)| k.starts_with("ipconfig"))
                .filter_map(|(_, c)| c.as_str())
                .flat_map(|c| c.split(','))
                .filter_map(|kv| kv.strip_prefix("ip=").or_else(|| kv.strip_prefix("ip6=")))
                .filter_map(|ip| ip.split('/').next())
                .collect();
            for (ip, name) in addresses {
                if ips.contains(&ip.as_str()) {
                    reasons.push(format!(
                        "address {ip} planned for {name} is the cloud-init address (ipconfig) of VM {} {} ({}, on {})",
                        v.vmid, v.name, v.status, h.node
                    ));
                }
            }
        }
    }
    Ok(())
}
