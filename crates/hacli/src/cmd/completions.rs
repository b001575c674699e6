//! `hacli completions SHELL` and `hacli man`: generated from the clap
//! definitions by `clap_complete`, `clap_mangen` and `clap-markdown`, so
//! they never drift from the commands (docs/cli-reference.md is
//! `hacli man --markdown`, checked by tests/completions.rs).

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
    #[arg(long, conflicts_with = "markdown")]
    pub out_dir: Option<PathBuf>,
    /// Print the whole command reference as Markdown instead (every
    /// subcommand, its arguments and options): docs/cli-reference.md.
    #[arg(long)]
    pub markdown: bool,
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
    if a.markdown {
        let options = clap_markdown::MarkdownOptions::new()
            .title("hacli command reference".to_string())
            .show_footer(false);
        let text = clap_markdown::help_markdown_command_custom(&cmd, &options);
        return write_stdout(text.as_bytes());
    }
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
            return write_stdout(&buf);
        }
    }
    Ok(Exit::Ok)
}

/// `buf` on stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(buf: &[u8]) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(Exit::Ok);
        }
        return Err(e).context("writing to stdout");
    }
    Ok(Exit::Ok)
}
