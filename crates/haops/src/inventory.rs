//! The hypervisor's live inventory, read before anything is planned or
//! touched: the Proxmox cluster as it is (hosts, VMs, templates), the
//! owner mark of a run, the reasons a plan must not start, and the
//! hypervisor backend of a live run. Every read has a deadline; an
//! inventory that cannot be read is unknown, never safe.

use std::path::Path;
use std::time::Duration;

use hacore::backend::{Hypervisor, Op};
use hacore::exec::Record;
use hacore::plan::Plan;
use proxmox::{Client, InventoryView, Owner};

use crate::{Error, Reach};

/// The deadline of one inventory read.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Unreachable(format!("starting the async runtime: {e}")))
}

/// The Proxmox cluster's inventory through `client`, under [`DEADLINE`]
/// (an unreadable one: [`Error::Unreachable`], exit 3).
pub fn read(client: &Client) -> Result<InventoryView, Error> {
    let rt = runtime()?;
    rt.block_on(async { tokio::time::timeout(DEADLINE, InventoryView::read(client)).await })
        .map_err(|_| {
            Error::Unreachable(format!(
                "{}: no inventory within {} s",
                client.base(),
                DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| Error::Unreachable(format!("reading the Proxmox inventory: {}", chain(&e))))
}

/// An error with its causes, `: `-joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// The inventory as JSON (what `hacli hypervisor show --json` prints and
/// `hapy.hypervisor` returns): per host, committed memory and vCPUs
/// (running, stopped) against physical memory and CPUs, and its VMs.
pub fn to_json(inv: &InventoryView) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = inv
        .hosts
        .iter()
        .map(|h| {
            let c = h.committed();
            serde_json::json!({
                "node": h.node, "status": h.status, "memoryBytes": h.memory, "cpus": h.cpus,
                "runningMemoryBytes": c.running_memory, "stoppedMemoryBytes": c.stopped_memory,
                "runningCpus": c.running_cpus, "stoppedCpus": c.stopped_cpus,
                "vms": h.vms.iter().map(|v| serde_json::json!({
                    "vmid": v.vmid, "name": v.name, "status": v.status,
                    "memoryBytes": v.memory, "cpus": v.cpus, "template": v.template,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "hosts": hosts })
}

/// The Proxmox cluster's HA resources and rules, under [`DEADLINE`]. Proxmox
/// before 9 has no `/cluster/ha/rules`: that is an error here, said by
/// the caller, never an empty configuration.
pub fn ha(client: &Client) -> Result<proxmox::ha::HaView, Error> {
    let rt = runtime()?;
    rt.block_on(async { tokio::time::timeout(DEADLINE, proxmox::ha::HaView::read(client)).await })
        .map_err(|_| {
            Error::Unreachable(format!(
                "{}: no HA configuration within {} s",
                client.base(),
                DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| Error::Unreachable(format!("reading the HA configuration: {}", chain(&e))))
}

/// `hacli hypervisor show -o json` and `hapy.hypervisor()`: the inventory
/// ([`to_json`]), with a topology where each master runs (`placement`)
/// and the hosts two share (`sharedHosts`), and the HA configuration
/// (`ha`: resources with the VM and host each is on, rules with the hosts
/// where a negative affinity is not met) or why it is unknown
/// (`haError`).
pub fn show_json(
    inv: &InventoryView,
    topology: Option<&hacore::Topology>,
    ha: &Result<proxmox::ha::HaView, Error>,
) -> serde_json::Value {
    let mut doc = to_json(inv);
    if let Some(t) = topology {
        let placed = proxmox::ha::placement(inv, t);
        let shared: Vec<serde_json::Value> = proxmox::ha::shared_hosts(&placed)
            .into_iter()
            .map(|(host, masters)| serde_json::json!({"host": host, "masters": masters}))
            .collect();
        doc["placement"] = serde_json::json!(placed);
        doc["sharedHosts"] = serde_json::json!(shared);
    }
    match ha {
        Ok(view) => {
            let resources: Vec<serde_json::Value> = view
                .resources
                .iter()
                .map(|r| {
                    let on = r.vmid().and_then(|v| inv.vm(v));
                    serde_json::json!({
                        "sid": r.sid, "state": r.state, "comment": r.comment,
                        "vm": on.map(|(_, v)| v.name.clone()),
                        "host": on.map(|(h, _)| h.node.clone()),
                    })
                })
                .collect();
            let rules: Vec<serde_json::Value> = view
                .rules
                .iter()
                .map(|r| {
                    let mut v = serde_json::json!(r);
                    v["notMet"] = r
                        .not_met(inv)
                        .into_iter()
                        .map(|(host, vms)| serde_json::json!({"host": host, "vms": vms}))
                        .collect();
                    v
                })
                .collect();
            doc["ha"] = serde_json::json!({"resources": resources, "rules": rules});
        }
        Err(e) => {
            doc["ha"] = serde_json::Value::Null;
            doc["haError"] = serde_json::json!(e.to_string());
        }
    }
    doc
}

/// The owner mark of a run of `plan` with the journal `journal` (made
/// absolute), whose `records` name the clones a killed run left unmarked.
pub fn owner(plan: &Plan, journal: &Path, records: &[Record]) -> Owner {
    let path = std::path::absolute(journal).unwrap_or_else(|_| journal.to_path_buf());
    Owner::for_run(plan, &path.display().to_string(), records)
}

fn touches_vms(plan: &Plan) -> bool {
    plan.steps().any(|(_, s)| {
        matches!(s.op, Op::Hypervisor(_)) || matches!(s.rollback, Some(Op::Hypervisor(_)))
    })
}

/// Why a live run of `plan` must not start, from the Proxmox cluster as it
/// is now (VM ids, VMs to delete, template, hosts, capacity, addresses:
/// [`proxmox::inventory::plan_refusals`]), whatever the plan was made
/// from; each reason says so. Empty: nothing stands in the way, or the
/// plan has no VM step.
pub fn refusals(plan: &Plan, reach: &Reach, owner: &Owner) -> Result<Vec<String>, Error> {
    if !touches_vms(plan) || !reach.proxmox_wanted(Some(&plan.to)) {
        return Ok(Vec::new());
    }
    let (client, _) = reach.proxmox_client(Some(&plan.to))?;
    let rt = runtime()?;
    let found = rt
        .block_on(async {
            tokio::time::timeout(
                DEADLINE,
                proxmox::inventory::plan_refusals(&client, plan, owner),
            )
            .await
        })
        .map_err(|_| {
            Error::Unreachable(format!(
                "{}: no inventory within {} s",
                client.base(),
                DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| {
            Error::Unreachable(format!(
                "reading the Proxmox inventory from {}: {}",
                client.base(),
                chain(&e)
            ))
        })?;
    Ok(found
        .into_iter()
        .map(|r| format!("the Proxmox cluster as it is now: {r}"))
        .collect())
}

/// The hypervisor backend of a live run of `plan`: Proxmox, deleting only
/// VMs `owner` marks; absent when the plan has no VM step and no Proxmox
/// API is named. A plan with VM steps and no API is a setting error.
pub fn hypervisor(
    plan: &Plan,
    reach: &Reach,
    owner: Owner,
) -> Result<Option<Box<dyn Hypervisor>>, Error> {
    let needs = plan.steps().any(|(_, s)| matches!(s.op, Op::Hypervisor(_)));
    if !reach.proxmox_wanted(Some(&plan.to)) {
        if needs {
            return Err(Error::Setting {
                what: "the Proxmox API".into(),
                why: "the plan creates or snapshots VMs, but no Proxmox API is configured: add `proxmox: {endpoint: ...}` to the target topology, or pass --proxmox URL (token: PROXMOX_VE_API_TOKEN or --proxmox-token-env)".into(),
            });
        }
        return Ok(None);
    }
    let (client, _) = reach.proxmox_client(Some(&plan.to))?;
    let mut hv = proxmox::ProxmoxHypervisor::new(client).map_err(|e| Error::Setting {
        what: "the Proxmox hypervisor".into(),
        why: e.to_string(),
    })?;
    hv.owner = owner;
    Ok(Some(Box::new(hv)))
}
