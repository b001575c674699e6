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
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
}

/// Run. Exit 0 with a plan, 1 when the migration cannot be made safe.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    match compute(&a)? {
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

/// The plan, or why there is none (shared with `hacli plugin`).
pub fn compute(a: &Args) -> anyhow::Result<Result<Plan, Refusal>> {
    let (from, w1) = Topology::load(&a.from)?;
    let (to, w2) = Topology::load(&a.to)?;
    crate::print_warnings(&w1.warnings);
    crate::print_warnings(&w2.warnings);
    let state = match &a.state {
        Some(p) => Some(ClusterState::load(p, &from)?.0),
        None => None,
    };
    Ok(plan::plan(
        &from,
        &to,
        state.as_ref(),
        &Options {
            template: a.template,
        },
    ))
}
