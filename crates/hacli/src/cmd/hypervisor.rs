//! `hacli hypervisor show`: the Proxmox cluster as it really is (per host,
//! committed against physical memory and CPUs, and the VMs on it), read by
//! `haops::inventory`.

use std::path::PathBuf;

use crate::args::ProxmoxArgs;
use crate::progress::failed;
use crate::{Exit, Output};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per host: committed memory and vCPUs (running and stopped VMs) against
    /// physical memory and CPUs, and its VMs; with a topology, where each
    /// master runs; the HA resources and rules. Exit 0, or 3 if unreadable.
    Show {
        #[command(flatten)]
        proxmox: ProxmoxArgs,
        /// A topology whose `proxmox` section names the API (flags and the
        /// environment override it).
        #[arg(long, short = 't')]
        topology: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        /// The old spelling of `-o json`.
        #[arg(long, hide = true, conflicts_with = "output")]
        json: bool,
    },
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    let Command::Show {
        proxmox,
        topology,
        output,
        json,
    } = c;
    let output = if json { Output::Json } else { output };
    let topology = match topology {
        Some(p) => {
            let (t, report) = hacore::Topology::load(&p)?;
            crate::print_warnings(&report.warnings);
            Some(t)
        }
        None => None,
    };
    let client = proxmox.client_for(topology.as_ref())?;
    let inv = match haops::inventory::read(&client) {
        Ok(i) => i,
        Err(e) => return failed("hypervisor show", e),
    };
    if !output.is_document() {
        out!("{}", inv.render());
        // Placement: where the masters run, the HA rules.
        out!(
            "{}",
            crate::placement::text(&client, &inv, topology.as_ref())
        );
        return Ok(Exit::Ok);
    }
    let ha = haops::inventory::ha(&client);
    crate::print_doc(
        output,
        "HypervisorInventory",
        &haops::inventory::show_json(&inv, topology.as_ref(), &ha),
    )?;
    Ok(Exit::Ok)
}
