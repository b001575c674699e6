//! Placement across Proxmox hosts: what `hacli hypervisor show` prints
//! after the inventory (where each master runs, the HA resources and
//! rules).

use proxmox::ha::render_placement;
use proxmox::{Client, InventoryView};

/// The masters' placement (with a topology) and the HA configuration; an
/// HA configuration that cannot be read is said, not hidden (Proxmox
/// before 9 has no `/cluster/ha/rules`).
pub fn text(client: &Client, inv: &InventoryView, topology: Option<&hacore::Topology>) -> String {
    let mut s = String::new();
    if let Some(t) = topology {
        s.push_str(&render_placement(inv, t));
    }
    match haops::inventory::ha(client) {
        Ok(ha) => s.push_str(&ha.render(inv)),
        Err(e) => s.push_str(&format!("HA resources and rules: unknown ({e})\n")),
    }
    s
}
