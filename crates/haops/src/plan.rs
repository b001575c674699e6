//! Plan a migration with the live inventory: the planner
//! (`hacore::plan`) given what the world says now: the Proxmox cluster's
//! own inventory (its hosts replace the observed ones, its checks the
//! planner's VM id and capacity reasons), and, when asked, whether each
//! address to take is free, probed over SSH from the nodes of `from`.

use std::net::IpAddr;

use hacore::plan::{self, Options, Plan, Refusal};
use hacore::{ClusterState, Topology};
use kubeadm::addresses::{self, AddressUse};

use crate::events::{Event, Events};
use crate::{Error, Reach};

/// What to plan.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The topology now.
    pub from: &'a Topology,
    /// The topology wanted.
    pub to: &'a Topology,
    /// An observed state (hypervisor capacity and VM ids, addresses in
    /// use), if any.
    pub state: Option<ClusterState>,
    /// VM id of the template new masters are cloned from.
    pub template: Option<u32>,
    /// Ask the network whether the addresses to take are free (in use:
    /// refused; undecided: [`Error::Unreachable`], never free).
    pub probe_addresses: bool,
    /// Keep the target's masters apart with this Proxmox HA rule (a last
    /// phase: HA resources and a negative resource-affinity rule).
    pub ha_rule: Option<String>,
}

/// The plan, or why there is none. The Proxmox inventory is read when
/// `reach` (or the target topology) names a Proxmox API: one that cannot
/// be read is [`Error::Unreachable`]. Each address probed and each host's
/// placement is reported as an [`Event::Note`].
pub fn plan(
    mut req: Request<'_>,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Result<Plan, Refusal>, Error> {
    let ha_rule = req.ha_rule.take();
    let planned = plan_without_ha(req, reach, events)?;
    Ok(planned.map(|p| match ha_rule {
        Some(rule) => plan::placement::with_ha(p, &rule),
        None => p,
    }))
}

fn plan_without_ha(
    req: Request<'_>,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Result<Plan, Refusal>, Error> {
    let Request {
        from,
        to,
        mut state,
        template,
        probe_addresses,
        ha_rule: _,
    } = req;
    if probe_addresses {
        probe(from, to, reach, &mut state, events)?;
    }
    let opts = Options { template };
    if !reach.proxmox_wanted(Some(to)) {
        return Ok(plan::plan(from, to, state.as_ref(), &opts));
    }
    let (client, _) = reach.proxmox_client(Some(to))?;
    let inv = crate::inventory::read(&client)?;
    state
        .get_or_insert_with(|| ClusterState::empty(jiff::Timestamp::now()))
        .hypervisors = Some(inv.host_states());
    let (extra, placement) = inv.check(from, to, template);
    for (host, masters) in &placement {
        events(Event::Note(format!(
            "placement: {host}: {}",
            masters.join(", ")
        )));
    }
    // The inventory's reasons replace the planner's about VM ids, hosts
    // and the template: they are fuller (sizes, names).
    let mut reasons: Vec<String> = match plan::plan(from, to, state.as_ref(), &opts) {
        Ok(_) => Vec::new(),
        Err(r) => r
            .reasons
            .into_iter()
            .filter(|r| {
                !(r.starts_with("VM id ")
                    || r.starts_with("hypervisor `")
                    || r.starts_with("new masters are cloned from a template"))
            })
            .collect(),
    };
    reasons.extend(extra);
    Ok(if reasons.is_empty() {
        plan::plan(from, to, state.as_ref(), &opts)
    } else {
        Err(Refusal::unsafe_for(reasons))
    })
}

/// Probe the addresses the migration takes from the nodes of `from`: those
/// in use are added to `state`'s addresses in use (the plan refuses them,
/// naming each); any undecided one is an error (exit 3).
fn probe(
    from: &Topology,
    to: &Topology,
    reach: &Reach,
    state: &mut Option<ClusterState>,
    events: Events<'_>,
) -> Result<(), Error> {
    let wanted = plan::addresses_to_take(from, to);
    if wanted.is_empty() {
        return Ok(());
    }
    let nodes = addresses::node_ssh_configs(from, &reach.control_plane_options());
    let addrs: Vec<IpAddr> = wanted.iter().map(|(_, a)| *a).collect();
    let verdicts = crate::inventory::runtime()?.block_on(addresses::probe(
        &nodes,
        &addrs,
        addresses::DEFAULT_WAIT,
    ));
    let mut unknown = Vec::new();
    for (what, a) in &wanted {
        let Some(v) = verdicts.get(a) else { continue };
        events(Event::Note(format!("address {a} ({what}): {v}")));
        match v {
            AddressUse::Free { .. } => {}
            AddressUse::InUse { .. } => {
                let s = state.get_or_insert_with(|| ClusterState::empty(jiff::Timestamp::now()));
                let in_use = s.addresses_in_use.get_or_insert_with(Vec::new);
                if !in_use.contains(a) {
                    in_use.push(*a);
                }
            }
            AddressUse::Unknown { .. } => unknown.push(format!("{what} address {a}: {v}")),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::Unreachable(format!(
            "whether the addresses to take are free is unknown: {}",
            unknown.join("; ")
        )))
    }
}
