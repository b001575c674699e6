//! `hacli topology validate FILE` and `hacli topology init`.

use std::path::PathBuf;

use hacore::Topology;
use hacore::topology::Report;

use crate::{Exit, Output};

/// Topology subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a topology file; errors and warnings name file:line:column.
    /// Exit 0 valid (warnings allowed), 2 invalid.
    Validate {
        /// The file.
        file: PathBuf,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Write a starting topology from flags (`--master NAME=ADDR`, `--vip`,
    /// `--lb`, ...) or from the running cluster (`--from-cluster`,
    /// read-only), with `# FILL IN` comments for what neither says. What it
    /// writes passes `validate`. Exit 0 written, 2 bad input, 3 the cluster
    /// did not answer.
    Init(Box<super::topology_init::InitArgs>),
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    let (file, output, strict) = match c {
        Command::Validate {
            file,
            output,
            strict,
        } => (file, output, strict),
        Command::Init(a) => return super::topology_init::run(*a),
    };
    let report = match Topology::load(&file) {
        Ok((_, report)) => report,
        Err(hacore::Error::Invalid { errors, .. }) => Report {
            errors,
            warnings: Vec::new(),
        },
        Err(e) => return Err(e.into()),
    };
    let failed = !report.errors.is_empty() || (strict && !report.warnings.is_empty());
    match output {
        o @ (Output::Json | Output::Yaml) => crate::print_doc(
            o,
            "TopologyValidation",
            &serde_json::json!({
                "file": file.display().to_string(),
                "valid": !failed,
                "errors": report.errors,
                "warnings": report.warnings,
            }),
        )?,
        Output::Text => {
            for d in report.errors.iter().chain(&report.warnings) {
                eprintln!("{d}");
            }
            if !failed {
                outln!(
                    "{}: valid ({} warning(s))",
                    file.display(),
                    report.warnings.len()
                );
            }
        }
    }
    Ok(if failed { Exit::Usage } else { Exit::Ok })
}
