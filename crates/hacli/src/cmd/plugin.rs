//! `hacli plugin`: hacli as a Woodpecker CI plugin step.
//!
//! Woodpecker runs a plugin step's image with its entrypoint and hands it
//! the step's `settings:` as environment variables: `settings.node` arrives
//! as `PLUGIN_NODE` (upper-cased; `-` and `.` become `_`), lists
//! comma-joined, maps and nested lists as JSON, secrets (`from_secret`) as
//! their contents. `CI_*` variables describe the repository and pipeline.
//!
//! This command only translates ([`crate::plugin`]): it checks every
//! setting (an error names the setting, e.g. `PLUGIN_NODE
//! (settings.node)`), writes the secrets to a private temporary directory
//! (0700, files 0600, removed at exit), shows the `hacli` command line the
//! settings stand for (which hacli must accept), and runs what that
//! command runs (`haops::gate`, the offline check, plan and simulation,
//! `haops::lock` release). The exit code is that command's.

use anyhow::{Context as _, anyhow};
use clap::Parser as _;

use crate::plugin::settings::{SETTINGS, Settings, name, private_tempdir};
use crate::{Cli, Exit};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the settings and print the hacli command they stand for, without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the settings the plugin knows (name, commands, description) and exit.
    #[arg(long)]
    pub list_settings: bool,
}

/// Print the human summary and the JSON result; write it to `output`.
fn report(st: &Settings, done: &crate::plugin::Done) -> anyhow::Result<Exit> {
    if done.value.is_null() {
        if !done.summary.is_empty() {
            outln!("{}", done.summary);
        }
        return Ok(done.exit);
    }
    out!("{}", done.summary);
    if !done.summary.ends_with('\n') {
        outln!();
    }
    let text = crate::render::document_json("PluginResult", &done.value)? + "\n";
    out!("{text}");
    if let Some(o) = st.get("output") {
        let path = st.in_workspace(o);
        std::fs::write(&path, text)
            .with_context(|| format!("{}: writing {}", name("output"), path.display()))?;
        eprintln!("result written to {}", path.display());
    }
    Ok(done.exit)
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    if a.list_settings {
        for s in SETTINGS {
            outln!("{}\t{}\t{}", s.key, s.commands.join(","), s.help);
        }
        return Ok(Exit::Ok);
    }
    let st = Settings::from_env()?;
    let tmp =
        private_tempdir().context("creating a private temporary directory for the secrets")?;
    let (m, call) = crate::plugin::map::map(&st, tmp.path())?;
    let pipeline = match (
        std::env::var("CI_REPO"),
        std::env::var("CI_PIPELINE_NUMBER"),
    ) {
        (Ok(r), Ok(n)) => format!(" (pipeline {r}#{n})"),
        _ => String::new(),
    };
    eprintln!("hacli plugin{pipeline}: {}", m.shown.join(" "));
    if a.dry_run {
        outln!("{}", m.shown.join(" "));
        return Ok(Exit::Ok);
    }
    Cli::try_parse_from(&m.argv).map_err(|e| {
        anyhow!(
            "the settings stand for `{}`, which hacli rejects: {}",
            m.shown.join(" "),
            e.render()
        )
    })?;
    let exit = report(&st, &crate::plugin::run(call)?)?;
    drop(tmp);
    Ok(exit)
}
