//! `hacli completions SHELL` and `hacli man`: generated from the clap
//! definitions by `clap_complete` and `clap_mangen`, so they never drift
//! from the commands.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{Cli, Exit};

/// Arguments of `hacli completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell. Install, e.g.:
    /// bash: `hacli completions bash > /etc/bash_completion.d/hacli`;
    /// zsh: `hacli completions zsh > "${fpath[1]}/_hacli"`;
    /// fish: `hacli completions fish > ~/.config/fish/completions/hacli.fish`.
    pub shell: Shell,
}

/// Arguments of `hacli man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write hacli.1 and one page per subcommand (hacli-gate.1, ...) into
    /// this directory instead of printing hacli.1.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Print the completion script.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "hacli", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(Exit::Ok)
}

/// Print (or write) the manual page(s).
pub fn man(a: ManArgs) -> anyhow::Result<Exit> {
    let cmd = Cli::command();
    match a.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            outln!("man pages written to {}", dir.display());
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .context("rendering the man page")?;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(Exit::Ok);
                }
                return Err(e).context("writing to stdout");
            }
        }
    }
    Ok(Exit::Ok)
}
