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

/// Arguments of the hidden `hacli parse-args [--known-flags] -- ARGS...`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Only check that every flag in ARGS exists (an alias counts) on the
    /// subcommand the leading words name; `a|b` names either subcommand.
    /// For synopses with placeholders, such as `lb drain|ready NODE`.
    #[arg(long)]
    pub known_flags: bool,
    /// A hacli command line without the leading `hacli`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Whether clap accepts ARGS as a hacli command line (exit 0, `accepted`),
/// or its error (exit 2). Nothing is run.
pub fn parse_args(a: ParseArgs) -> anyhow::Result<Exit> {
    if a.known_flags {
        return known_flags(&a.args);
    }
    let line = std::iter::once("hacli".to_string()).chain(a.args);
    match Cli::command().try_get_matches_from(line) {
        Ok(_) => {
            outln!("accepted");
            Ok(Exit::Ok)
        }
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            outln!("accepted");
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprint!("{}", e.render());
            Ok(Exit::Usage)
        }
    }
}

/// Every `--long` / `-s` flag in `args` exists on the subcommand(s) the
/// leading words name (or on one of them, for `a|b`).
fn known_flags(args: &[String]) -> anyhow::Result<Exit> {
    let mut root = Cli::command();
    // Global flags are propagated to the subcommands by the build.
    root.build();
    let mut at: Vec<&clap::Command> = vec![&root];
    let mut words = args.iter().peekable();
    while let Some(w) = words.next_if(|w| !w.starts_with('-')) {
        let next: Vec<&clap::Command> = w
            .split('|')
            .flat_map(|name| at.iter().filter_map(move |c| c.find_subcommand(name)))
            .collect();
        if next.is_empty() {
            break;
        }
        at = next;
    }
    let path: Vec<&str> = at.iter().map(|c| c.get_name()).collect();
    let mut unknown = Vec::new();
    for flag in words.filter(|w| w.starts_with('-') && w.len() > 1 && *w != "--") {
        let name = flag.split('=').next().unwrap_or(flag);
        let known = ["--help", "-h", "--version", "-V"].contains(&name)
            || at.iter().any(|c| has_flag(c, name));
        if !known {
            unknown.push(name.to_string());
        }
    }
    if unknown.is_empty() {
        outln!("accepted");
        return Ok(Exit::Ok);
    }
    eprintln!(
        "error: `hacli {}` has no {}",
        path.join("|"),
        unknown.join(", ")
    );
    Ok(Exit::Usage)
}

fn has_flag(c: &clap::Command, name: &str) -> bool {
    c.get_arguments().any(|a| match name.strip_prefix("--") {
        Some(long) => {
            a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long))
        }
        None => name.strip_prefix('-').is_some_and(|s| {
            let mut chars = s.chars();
            let (Some(ch), None) = (chars.next(), chars.next()) else {
                return false;
            };
            a.get_short() == Some(ch)
                || a.get_all_short_aliases().is_some_and(|al| al.contains(&ch))
        }),
    })
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
