//! `hacli observe`: observe the live cluster once and write a state file
//! that `hacli check` and `hacli status` read; or, with `--status`, print
//! the live status table (etcd members, leader, raft index, health; nodes;
//! apiserver readiness per master and via the endpoint; what may go down).

use std::io::Write as _;
use std::path::PathBuf;

use crate::args::LiveArgs;
use crate::{Exit, TableOutput, render};
use anyhow::Context as _;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Write the state here (JSON); stdout by default.
    #[arg(long = "out", short = 'O')]
    pub out: Option<PathBuf>,
    /// Print the status summary of the observation instead of the state.
    #[arg(long)]
    pub status: bool,
    /// Output format of `--status`.
    #[arg(long, short = 'o', value_enum, default_value_t, requires = "status")]
    pub output: TableOutput,
}

/// Run. Exit 0 when every probe answered, 3 when some did not (the file is
/// written either way, with the failures in `probeErrors`).
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let topology = a.live.topology()?;
    let mut state = haops::observe::observe(&topology, &a.live.reach(), None)?.state;
    state.api_version = Some(crate::API_VERSION.into());
    state.kind = Some("ClusterState".into());
    if a.status {
        let status = hacore::status::status(&topology, &state, jiff::Timestamp::now());
        match a.output.document() {
            None => out!("{}", render::status(&status, a.output == TableOutput::Wide)),
            Some(o) => crate::print_doc(o, "ClusterStatus", &status)?,
        }
    } else {
        let text = serde_json::to_string_pretty(&state)?;
        match &a.out {
            Some(p) => std::fs::write(p, text + "\n")
                .with_context(|| format!("writing {}", p.display()))?,
            None => writeln!(std::io::stdout().lock(), "{text}")?,
        }
    }
    for (probe, e) in &state.probe_errors {
        eprintln!("probe {probe} failed: {e}");
    }
    Ok(if state.probe_errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Unknown
    })
}
