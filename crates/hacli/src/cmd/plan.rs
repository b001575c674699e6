//! `hacli plan --from F --to G`: the migration plan, for review, from the
//! live inventory when there is one (`haops::plan`).

use std::path::PathBuf;

use hacore::plan::{Plan, Refusal};
use hacore::{ClusterState, Topology};

use crate::Exit;
use crate::args::ProxmoxArgs;
use crate::progress::{Progress, failed};

/// Plan output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// One line per step.
    #[default]
    Text,
    /// The plan itself, for `hacli simulate` and `hacli apply`.
    Json,
    /// The plan as YAML.
    Yaml,
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
    /// End the plan with a drill: a planned reboot of the first master
    /// with traffic through the VIP, as `hacli drill --planned` does it;
    /// the step fails unless every request succeeded.
    #[arg(long)]
    pub verify_drill: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
    /// Keep the masters apart with a Proxmox HA rule (issue 26).
    #[command(flatten)]
    pub ha: crate::args::placement::HaArgs,
    /// Plan from the Proxmox cluster's own inventory.
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
}

/// Run. Exit 0 with a plan, 1 when the migration cannot be made safe, 3
/// when the inventory or an address could not be read.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let computed = match compute_ops(&a)? {
        Ok(c) => c,
        Err(e) => return failed("plan", e),
    };
    match computed {
        Ok(p) => {
            let p = if a.verify_drill {
                hacore::plan::with_drill(p)
            } else {
                p
            };
            match a.output {
                Format::Text => out!("{}", p.to_text()),
                Format::Markdown => out!("{}", p.to_markdown()),
                Format::Json => crate::print_doc(crate::Output::Json, "Plan", &p)?,
                Format::Yaml => crate::print_doc(crate::Output::Yaml, "Plan", &p)?,
            }
            Ok(Exit::Ok)
        }
        Err(refusal) => {
            if let Some(e) = crate::progress::missing_input(&refusal) {
                return Err(e);
            }
            match a.output {
                Format::Json => crate::print_doc(crate::Output::Json, "PlanRefusal", &refusal)?,
                Format::Yaml => crate::print_doc(crate::Output::Yaml, "PlanRefusal", &refusal)?,
                _ => outln!("REFUSED: {refusal}"),
            }
            Ok(Exit::Deny)
        }
    }
}

/// Load the files (a bad one: the outer error), then plan.
fn compute_ops(a: &Args) -> anyhow::Result<Result<Result<Plan, Refusal>, haops::Error>> {
    let (from, w1) = Topology::load(&a.from)?;
    let (to, w2) = Topology::load(&a.to)?;
    crate::print_warnings(&w1.warnings);
    crate::print_warnings(&w2.warnings);
    let state = match &a.state {
        Some(p) => Some(ClusterState::load(p, &from)?.0),
        None => None,
    };
    let request = haops::plan::Request {
        from: &from,
        to: &to,
        state,
        template: a.template,
        probe_addresses: a.probe_addresses,
        ha_rule: a.ha.rule.clone(),
    };
    let progress = Progress::spinner();
    let planned = haops::plan::plan(request, &a.proxmox.as_reach(), &mut |e| {
        progress.on_event(e)
    });
    progress.finish();
    Ok(planned)
}
