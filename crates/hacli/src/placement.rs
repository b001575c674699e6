//! Placement across Proxmox hosts (issue 26): what `hacli hypervisor show`
//! prints after the inventory (where each master runs, the HA resources and
//! rules).

use std::time::Duration;

use proxmox::ha::{HaView, render_placement};
use proxmox::{Client, InventoryView};

/// The masters' placement (with a topology) and the HA configuration; an
/// HA configuration that cannot be read is said, not hidden (Proxmox
/// before 9 has no `/cluster/ha/rules`).
pub fn text(client: &Client, inv: &InventoryView, topology: Option<&hacore::Topology>) -> String {
    let mut s = String::new();
    if let Some(t) = topology {
        s.push_str(&render_placement(inv, t));
    }
    let ha = crate::args::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), HaView::read(client)).await
            })
            .map_err(|_| format!("{}: no HA configuration within 30 s", client.base()))?
            .map_err(|e| e.to_string())
        });
    match ha {
        Ok(ha) => s.push_str(&ha.render(inv)),
        Err(e) => s.push_str(&format!("HA resources and rules: unknown ({e})\n")),
    }
    s
}
