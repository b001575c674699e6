//! `hacli status`: the cluster at a glance.

use crate::{Exit, TableOutput, render};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub files: super::Files,
    /// Evaluate "what may go down" as of this time (RFC 3339, or `now`); now
    /// by default, so a stale state lets nothing go down.
    #[arg(long)]
    pub at: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: TableOutput,
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let (topology, state) = super::load(&a.files.topology, &a.files.state)?;
    let now = super::parse_at(a.at.as_deref())?.unwrap_or_else(jiff::Timestamp::now);
    let status = hacore::status::status(&topology, &state, now);
    match a.output.document() {
        None => out!("{}", render::status(&status, a.output == TableOutput::Wide)),
        Some(o) => crate::print_doc(o, "ClusterStatus", &status)?,
    }
    Ok(Exit::Ok)
}
