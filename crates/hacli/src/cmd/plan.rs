//! `hacli plan --from F --to G`: the migration plan, for review.

use std::path::PathBuf;

use hacore::plan::{self, Options, Plan, Refusal};
use hacore::{ClusterState, Topology};

use crate::Exit;

/// Plan output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// One line per step.
    #[default]
    Text,
    /// The plan itself, for `hacli simulate` and `hacli apply`.
    Json,
    /// A checklist a person can review and tick off.
    Markdown,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology now.
    #[arg(long)]
    pub from: PathBuf,
    /// The topology wanted.
    #[arg(long)]
    pub to: PathBuf,
    /// An observed state: hypervisor capacity and VM ids, addresses in use.
    #[arg(long, short = 's')]
    pub state: Option<PathBuf>,
    /// VM id of the template new masters are cloned from.
    #[arg(long)]
    pub template: Option<u32>,
    /// Ask the network whether the addresses to take (new masters, a new
    /// VIP) are free: each is probed over SSH (the topology's `ssh:`) from
    /// a node of --from on its subnet, by neighbour resolution (a packet,
    /// then `ip neigh`), so a host that drops every packet is still seen.
    /// In use: refused (exit 1); undecided: exit 3, never free.
    #[arg(long)]
    pub probe_addresses: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
    /// Plan from the Proxmox cluster's own inventory.
    #[command(flatten)]
    pub proxmox: super::hypervisor::ProxmoxArgs,
    /// Keep the masters apart with a Proxmox HA rule (issue 26).
    #[command(flatten)]
    pub ha: super::placement::HaArgs,
}

/// Run. Exit 0 with a plan, 1 when the migration cannot be made safe.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let computed = match compute(&a) {
        Err(e)
            if e.downcast_ref::<InventoryUnavailable>().is_some()
                || e.downcast_ref::<AddressesUnknown>().is_some() =>
        {
            eprintln!("hacli plan: {e:#}");
            return Ok(Exit::Unknown);
        }
        other => other?,
    };
    match computed {
        Ok(p) => {
            match a.output {
                Format::Text => out!("{}", p.to_text()),
                Format::Markdown => out!("{}", p.to_markdown()),
                Format::Json => crate::print_json(&p)?,
            }
            Ok(Exit::Ok)
        }
        Err(refusal) => {
            match a.output {
                Format::Json => crate::print_json(&refusal)?,
                _ => outln!("REFUSED: {refusal}"),
            }
            Ok(Exit::Deny)
        }
    }
}

/// The Proxmox inventory could not be read (exit 3).
#[derive(Debug)]
pub struct InventoryUnavailable(String);

impl std::fmt::Display for InventoryUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InventoryUnavailable {}

/// Whether an address to take is free could not be decided (exit 3).
#[derive(Debug)]
pub struct AddressesUnknown(String);

impl std::fmt::Display for AddressesUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressesUnknown {}

/// Probe the addresses the migration takes from the nodes of `from`: those
/// in use are added to `state`'s addresses in use (the plan refuses them,
/// naming each); any undecided one is an error (exit 3).
fn probe_addresses(
    from: &Topology,
    to: &Topology,
    state: &mut Option<ClusterState>,
) -> anyhow::Result<()> {
    let wanted = plan::addresses_to_take(from, to);
    if wanted.is_empty() {
        return Ok(());
    }
    let nodes = kubeadm::addresses::node_ssh_configs(
        from,
        &kubeadm::control_plane::ControlPlaneOptions::default(),
    );
    let addrs: Vec<std::net::IpAddr> = wanted.iter().map(|(_, a)| *a).collect();
    let verdicts = crate::args::runtime()?.block_on(kubeadm::addresses::probe(
        &nodes,
        &addrs,
        kubeadm::addresses::DEFAULT_WAIT,
    ));
    let mut unknown = Vec::new();
    for (what, a) in &wanted {
        let Some(v) = verdicts.get(a) else { continue };
        eprintln!("address {a} ({what}): {v}");
        match v {
            kubeadm::addresses::AddressUse::Free { .. } => {}
            kubeadm::addresses::AddressUse::InUse { .. } => {
                let s = state.get_or_insert_with(|| ClusterState::empty(jiff::Timestamp::now()));
                let in_use = s.addresses_in_use.get_or_insert_with(Vec::new);
                if !in_use.contains(a) {
                    in_use.push(*a);
                }
            }
            kubeadm::addresses::AddressUse::Unknown { .. } => {
                unknown.push(format!("{what} address {a}: {v}"))
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(anyhow::Error::new(AddressesUnknown(format!(
            "whether the addresses to take are free is unknown: {}",
            unknown.join("; ")
        ))))
    }
}

/// The plan, or why there is none (shared with `hacli plugin`).
pub fn compute(a: &Args) -> anyhow::Result<Result<Plan, Refusal>> {
    let (from, w1) = Topology::load(&a.from)?;
    let (to, w2) = Topology::load(&a.to)?;
    crate::print_warnings(&w1.warnings);
    crate::print_warnings(&w2.warnings);
    let mut state = match &a.state {
        Some(p) => Some(ClusterState::load(p, &from)?.0),
        None => None,
    };
    if a.probe_addresses {
        probe_addresses(&from, &to, &mut state)?;
    }
    // From the hypervisor's own inventory when a Proxmox endpoint is given:
    // its hosts replace the observed ones, and its checks replace the
    // planner's VM id and capacity reasons with fuller ones.
    let mut inventory = None;
    if a.proxmox.wanted_for(Some(&to)) {
        let client = a.proxmox.client_for(Some(&to))?;
        let inv = match super::hypervisor::ProxmoxArgs::inventory(&client) {
            Ok(i) => i,
            Err(e) => {
                return Err(anyhow::Error::new(InventoryUnavailable(format!(
                    "reading the Proxmox inventory: {e:#}"
                ))));
            }
        };
        state
            .get_or_insert_with(|| ClusterState::empty(jiff::Timestamp::now()))
            .hypervisors = Some(inv.host_states());
        inventory = Some(inv.check(&from, &to, a.template));
    }
    let planned = plan::plan(
        &from,
        &to,
        state.as_ref(),
        &Options {
            template: a.template,
        },
    );
    let planned = match inventory {
        None => planned,
        Some((extra, placement)) => {
            for (host, masters) in &placement {
                eprintln!("placement: {host}: {}", masters.join(", "));
            }
            let mut reasons: Vec<String> = match planned {
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
            if reasons.is_empty() {
                plan::plan(
                    &from,
                    &to,
                    state.as_ref(),
                    &Options {
                        template: a.template,
                    },
                )
            } else {
                Err(plan::Refusal { reasons })
            }
        }
    };
    Ok(planned.map(|p| a.ha.apply(p)))
}
