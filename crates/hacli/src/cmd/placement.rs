//! Placement across Proxmox hosts (issue 26): what `hacli hypervisor show`
//! prints after the inventory (where each master runs, the HA resources and
//! rules), and the `--proxmox-ha-rule` flag that adds the HA phase to a
//! plan.

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

/// `--proxmox-ha-rule RULE`: after the plan's last phase, keep the
/// target's masters apart with the Proxmox HA rule RULE.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct HaArgs {
    /// Keep the masters on different Proxmox hosts from now on: make each
    /// master VM an HA resource and RULE a negative resource-affinity HA
    /// rule listing exactly them (Proxmox VE 9; a rule of that id that
    /// hacli did not write is refused).
    #[arg(long = "proxmox-ha-rule", value_name = "RULE")]
    pub rule: Option<String>,
}

impl HaArgs {
    /// `plan` with the HA phase appended, when asked.
    pub fn apply(&self, plan: hacore::plan::Plan) -> hacore::plan::Plan {
        match &self.rule {
            Some(rule) => hacore::plan::placement::with_ha(plan, rule),
            None => plan,
        }
    }
}
