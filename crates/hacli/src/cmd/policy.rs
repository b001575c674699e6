//! `hacli policy list|show`.

use hacore::Policy;
use hacore::gate::BUILTINS;

use crate::{Exit, Output};

/// Policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the built-in policies.
    List {
        /// Output format (a document: the policies, resolved, under `items`).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Print a policy (built-in name or file) with every parameter, resolved.
    Show {
        /// Built-in name or file.
        policy: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    match c {
        Command::List { output } if output.is_document() => {
            let all: Vec<Policy> = BUILTINS
                .iter()
                .map(|n| Policy::builtin(n).expect("built-in"))
                .collect();
            crate::print_doc(output, "PolicyList", &all)?;
        }
        Command::List { .. } => {
            for name in BUILTINS {
                let p = Policy::builtin(name).expect("built-in");
                outln!("{name:<14} {}", p.description.unwrap_or_default());
                outln!("{:<14} rules: {}", "", p.rules.ids().join(", "));
            }
        }
        Command::Show { policy, output } => {
            let p = Policy::named_or_file(&policy)?;
            match output {
                o @ (Output::Json | Output::Yaml) => crate::print_doc(o, "Policy", &p)?,
                Output::Text => {
                    // Strings as JSON, which YAML reads back: the text is
                    // itself a policy file (`hacli policy show X > p.yaml`).
                    outln!("name: {}", serde_json::to_string(&p.name)?);
                    if let Some(d) = &p.description {
                        outln!("description: {}", serde_json::to_string(d)?);
                    }
                    outln!("rules:");
                    let rules = serde_json::to_value(&p.rules)?;
                    for (id, params) in rules.as_object().into_iter().flatten() {
                        // A comment: the text stays a policy file.
                        if let Some(source) = hacore::rules::source_of(id) {
                            outln!("  # {id}'s figures: {source}");
                        }
                        outln!("  {id}: {params}");
                    }
                }
            }
        }
    }
    Ok(Exit::Ok)
}
