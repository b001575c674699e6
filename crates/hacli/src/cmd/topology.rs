//! `hacli topology validate FILE`.

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
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    let Command::Validate {
        file,
        output,
        strict,
    } = c;
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
