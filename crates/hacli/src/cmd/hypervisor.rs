//! `hacli hypervisor show`: the Proxmox cluster as it really is (per host,
//! committed against physical memory and CPUs, and the VMs on it). The
//! Proxmox flags are `crate::args::ProxmoxArgs` (re-exported here).

use std::path::PathBuf;

use crate::Exit;
pub use crate::args::ProxmoxArgs;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per host: committed memory and vCPUs (running and stopped VMs) against
    /// physical memory and CPUs, and its VMs. Exit 0, or 3 if unreadable.
    Show {
        #[command(flatten)]
        proxmox: ProxmoxArgs,
        /// A topology whose `proxmox` section names the API (flags and the
        /// environment override it).
        #[arg(long, short = 't')]
        topology: Option<PathBuf>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    match c {
        Command::Show {
            proxmox,
            topology,
            json,
        } => {
            let topology = match topology {
                Some(p) => {
                    let (t, report) = hacore::Topology::load(&p)?;
                    crate::print_warnings(&report.warnings);
                    Some(t)
                }
                None => None,
            };
            let client = proxmox.client_for(topology.as_ref())?;
            let inv = match ProxmoxArgs::inventory(&client) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("hacli hypervisor show: {e:#}");
                    return Ok(Exit::Unknown);
                }
            };
            if json {
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
                crate::print_json(&serde_json::json!({ "hosts": hosts }))?;
            } else {
                out!("{}", inv.render());
            }
            Ok(Exit::Ok)
        }
    }
}
