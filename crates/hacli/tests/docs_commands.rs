//! Every hacli command README.md and docs/*.md show, checked against the
//! binary, so a renamed flag or a changed verdict fails here naming the
//! file, the line and the command.
//!
//! - In fenced code blocks (```sh, ```bash, ```console, ```shell, and plain
//!   ones whose lines start with `hacli ` or `$ hacli`), each `hacli ...`
//!   line (`\` continuations joined, `# comments` dropped, `> FILE` taken
//!   as where stdout goes) must be accepted by clap (the hidden
//!   `hacli parse-args`). Those that can run offline on files that exist
//!   (the bundled examples, or a file an earlier command of the block
//!   wrote) are run, in a scratch directory where `examples/` is the
//!   repository's, inside an empty network namespace (`unshare --net`): a
//!   doc command can never reach an address, 10.0.20.x included. Each must
//!   exit 0, or what an `<!-- exit: N -->` comment right before the block
//!   says (one code for every command run, or one per command run,
//!   comma-separated). A `$ hacli ...` line's output lines shown after it
//!   must appear in that order in what it prints (`...` skips).
//!   Commands with live backends (`--backend live`, `--proxmox`,
//!   `--kubeconfig`, or a subcommand that observes the cluster) are only
//!   parsed.
//! - Inline code spans starting with `hacli ` (synopses with placeholders,
//!   as docs/cli.md's table) are checked flag by flag: each `--flag` / `-f`
//!   must exist (an alias counts) on the subcommand the leading words name
//!   (`hacli parse-args --known-flags`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The subcommands that run offline, on files.
const OFFLINE: &[&str] = &[
    "check",
    "status",
    "topology",
    "policy",
    "plan",
    "simulate",
    "apply",
    "disrupt",
    "roll",
    "remove-master",
    "replace-master",
    "completions",
    "man",
];

/// Flags whose value is a file the command reads.
const INPUT_FLAGS: &[&str] = &[
    "-t",
    "--topology",
    "-s",
    "--state",
    "--from",
    "--target",
    "--dead-state",
    "--memory",
    "--metrics",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the repository root")
        .to_path_buf()
}

fn doc_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.insert(0, repo().join("README.md"));
    files
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// One command a fenced block shows.
#[derive(Debug, Default)]
struct Shown {
    /// `file:line`.
    at: String,
    /// As written (continuations joined).
    text: String,
    /// The arguments after `hacli`.
    args: Vec<String>,
    /// `> FILE`.
    stdout_to: Option<String>,
    /// For a `$ hacli` line: the output lines shown after it.
    output: Vec<String>,
}

/// A fenced block's commands and the exit codes its comment declares.
#[derive(Debug, Default)]
struct Block {
    at: String,
    commands: Vec<Shown>,
    exits: Option<Vec<i32>>,
}

/// `<!-- exit: 1 -->`, `<!-- exit: 0, 1 -->`, a word after each code
/// allowed (`<!-- exit: 1 (deny) -->`).
fn exit_comment(line: &str) -> Option<Vec<i32>> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim()
        .strip_prefix("exit:")?;
    inner
        .split(',')
        .map(|c| c.split_whitespace().next()?.parse().ok())
        .collect::<Option<Vec<i32>>>()
}

/// The fenced blocks of one file, and the text outside them (for inline
/// spans) as (line number, line).
fn parse_doc(file: &Path) -> (Vec<Block>, Vec<(usize, String)>) {
    let name = rel(file);
    let text = std::fs::read_to_string(file).expect("a doc file");
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut exits = None;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            if let Some(e) = exit_comment(line) {
                exits = Some(e);
            } else if !line.trim().is_empty() {
                exits = None;
            }
            prose.push((n, line.to_string()));
            continue;
        };
        let body: Vec<(usize, &str)> = lines
            .by_ref()
            .take_while(|(_, l)| !l.trim_start().starts_with("```"))
            .collect();
        if !["", "sh", "bash", "console", "shell"].contains(&lang.trim()) {
            continue;
        }
        let mut block = Block {
            at: format!("{name}:{n}"),
            exits: exits.take(),
            ..Block::default()
        };
        commands_of(&name, &body, &mut block.commands);
        blocks.push(block);
    }
    (blocks, prose)
}

/// The `hacli` commands of a block's lines.
fn commands_of(name: &str, body: &[(usize, &str)], out: &mut Vec<Shown>) {
    let mut i = 0;
    let mut console = false;
    while i < body.len() {
        let (n, first) = body[i];
        let mut text = first.to_string();
        while text.ends_with('\\') && i + 1 < body.len() {
            text.pop();
            i += 1;
            text.push(' ');
            text.push_str(body[i].1.trim());
        }
        i += 1;
        let prompt = text.strip_prefix("$ ");
        let command = prompt.unwrap_or(&text);
        if command.starts_with("hacli ") {
            console = prompt.is_some();
            for shown in split_shell(name, n, command) {
                out.push(shown);
            }
        } else if prompt.is_some() {
            console = false;
        } else if console && let Some(last) = out.last_mut() {
            last.output.push(text.clone());
        }
    }
}

/// A shell line's `hacli` commands (split at `|`, `&&`, `;`), comments
/// dropped, `> FILE` taken.
fn split_shell(name: &str, n: usize, line: &str) -> Vec<Shown> {
    let words = shlex::split(line)
        .unwrap_or_else(|| panic!("{name}:{n}: the shell cannot split `{line}` (quotes?)"));
    let words: Vec<String> = words
        .into_iter()
        .take_while(|w| !w.starts_with('#'))
        .collect();
    let mut shown = Vec::new();
    for segment in words.split(|w| ["|", "&&", ";", "||"].contains(&w.as_str())) {
        let Some((first, rest)) = segment.split_first() else {
            continue;
        };
        if first != "hacli" {
            continue;
        }
        let mut s = Shown {
            at: format!("{name}:{n}"),
            text: line.to_string(),
            ..Shown::default()
        };
        let mut it = rest.iter();
        while let Some(w) = it.next() {
            if w == ">" {
                s.stdout_to = it.next().cloned();
            } else if let Some(f) = w.strip_prefix('>') {
                s.stdout_to = Some(f.to_string());
            } else {
                s.args.push(w.clone());
            }
        }
        shown.push(s);
    }
    shown
}

fn hacli(dir: &Path, isolate: bool, args: &[String]) -> Output {
    let bin = env!("CARGO_BIN_EXE_hacli");
    let mut c = if isolate {
        let mut c = Command::new("unshare");
        c.args(["--net", "--", bin]);
        c
    } else {
        Command::new(bin)
    };
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        let k_up = k.to_ascii_uppercase();
        if [
            "HACLI_",
            "PLUGIN_",
            "PROXMOX_",
            "PFSENSE_",
            "KUBECONFIG",
            "NODE_NAME",
        ]
        .iter()
        .any(|p| k_up.starts_with(p))
        {
            c.env_remove(&k);
        }
    }
    c.output().expect("hacli runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Why a shown command is only parsed, or None when it runs offline.
fn live_reason(s: &Shown, dir: &Path) -> Option<String> {
    let sub = s.args.first().map(String::as_str).unwrap_or("");
    if !OFFLINE.contains(&sub) {
        return Some(format!("`{sub}` needs a live cluster"));
    }
    let mut inputs = Vec::new();
    for (i, w) in s.args.iter().enumerate() {
        let value = s.args.get(i + 1).map(String::as_str);
        match (w.as_str(), value) {
            ("--backend" | "--lb", Some("live")) => return Some(format!("{w} live")),
            ("--proxmox" | "--probe-addresses" | "--measure" | "--kubeconfig", _) => {
                return Some(w.clone());
            }
            (f, Some(v)) if INPUT_FLAGS.contains(&f) => inputs.push(v),
            ("--to", Some(v)) if sub == "plan" => inputs.push(v),
            _ => {}
        }
    }
    if ["simulate", "apply"].contains(&sub)
        && let Some(plan) = s.args.get(1)
    {
        inputs.push(plan.as_str());
    }
    inputs
        .into_iter()
        .find(|f| !dir.join(f).exists())
        .map(|f| format!("{f} does not exist here"))
}

/// Each shown output line, whitespace aside, appears in order.
fn missing_output(shown: &[String], actual: &str) -> Option<String> {
    let norm = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let actual: Vec<String> = actual.lines().map(norm).collect();
    let mut from = 0;
    for want in shown.iter().map(|l| norm(l)) {
        if want.is_empty() || want == "..." {
            continue;
        }
        match actual[from..].iter().position(|a| *a == want) {
            Some(p) => from += p + 1,
            None => return Some(want),
        }
    }
    None
}

fn can_isolate() -> bool {
    Command::new("unshare")
        .args(["--net", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_command_the_docs_show_is_accepted_and_the_offline_ones_exit_as_shown() {
    let isolate = can_isolate();
    if !isolate {
        testlab::skip::skip(
            "docs_commands (running the offline commands)",
            "`unshare --net` does not work here (needs root or user namespaces); \
             the commands are parsed, not run",
        );
    }
    let mut failures = Vec::new();
    let (mut parsed, mut ran) = (0, 0);
    for file in doc_files() {
        for block in parse_doc(&file).0 {
            let dir = tempfile::tempdir().expect("a scratch directory");
            std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples"))
                .expect("examples/ linked");
            let mut run_index = 0;
            for s in &block.commands {
                parsed += 1;
                let mut args = vec!["parse-args".to_string(), "--".to_string()];
                args.extend(s.args.iter().cloned());
                let p = hacli(dir.path(), false, &args);
                if !p.status.success() {
                    failures.push(format!(
                        "{}: `{}`: not accepted:\n{}",
                        s.at,
                        s.text,
                        text(&p)
                    ));
                    continue;
                }
                if !isolate || live_reason(s, dir.path()).is_some() {
                    continue;
                }
                ran += 1;
                let want = match &block.exits {
                    None => 0,
                    Some(e) if e.len() == 1 => e[0],
                    Some(e) => *e.get(run_index).unwrap_or_else(|| {
                        panic!(
                            "{}: `<!-- exit: -->` names fewer codes than commands run",
                            block.at
                        )
                    }),
                };
                run_index += 1;
                let o = hacli(dir.path(), true, &s.args);
                if let Some(f) = &s.stdout_to {
                    std::fs::write(dir.path().join(f), &o.stdout).expect("stdout written");
                }
                let code = o.status.code().unwrap_or(-1);
                if code != want {
                    failures.push(format!(
                        "{}: `{}`: exit {code}, the doc means {want}:\n{}",
                        s.at,
                        s.text,
                        text(&o)
                    ));
                } else if let Some(line) = missing_output(&s.output, &text(&o)) {
                    failures.push(format!(
                        "{}: `{}`: the doc shows the line\n  {line}\nwhich it does not print (in that order):\n{}",
                        s.at,
                        s.text,
                        text(&o)
                    ));
                }
            }
        }
    }
    println!("{parsed} doc commands parsed, {ran} run offline");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        parsed >= 10 && (!isolate || ran >= 5),
        "{parsed} parsed, {ran} run: the parser lost them"
    );
}

/// Inline spans starting with `hacli ` (continued across lines), with the
/// line they start on.
fn inline_spans(prose: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in prose {
        for (i, part) in line.split('`').enumerate() {
            if i > 0 {
                open = match open.take() {
                    Some(span) => {
                        spans.push(span);
                        None
                    }
                    None => Some((*n, String::new())),
                };
            }
            if let Some((_, span)) = &mut open {
                span.push_str(part);
            }
        }
        if let Some((_, span)) = &mut open {
            span.push(' ');
        }
        if line.trim().is_empty() {
            open = None;
        }
    }
    spans
        .into_iter()
        .filter(|(_, s)| s.starts_with("hacli "))
        .collect()
}

/// A synopsis's `hacli` segments as words: brackets, escapes and
/// alternatives (`--a|--b`) taken apart.
fn synopsis_segments(span: &str) -> Vec<Vec<String>> {
    let mut segments = vec![Vec::new()];
    for raw in span.split_whitespace() {
        if ["|", "&&", ";", ">", "||"].contains(&raw) {
            segments.push(Vec::new());
            continue;
        }
        let w = raw.replace("\\|", "|");
        let w = w.trim_matches(|c| "[](),.…".contains(c));
        let last = segments.last_mut().expect("a segment");
        if w.starts_with('-') {
            last.extend(
                w.split('|')
                    .map(|f| f.trim_matches(|c| "[]".contains(c)).to_string()),
            );
        } else if !w.is_empty() {
            last.push(w.to_string());
        }
    }
    segments
        .into_iter()
        .filter(|s| s.first().is_some_and(|w| w == "hacli"))
        .map(|s| s[1..].to_vec())
        .collect()
}

#[test]
fn every_flag_an_inline_synopsis_names_exists() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let (_, prose) = parse_doc(&file);
        for (n, span) in inline_spans(&prose) {
            for words in synopsis_segments(&span) {
                checked += 1;
                let mut args = vec!["parse-args".into(), "--known-flags".into(), "--".into()];
                args.extend(words);
                let o = hacli(dir.path(), false, &args);
                if !o.status.success() {
                    failures.push(format!("{}:{n}: `{span}`: {}", rel(&file), text(&o).trim()));
                }
            }
        }
    }
    println!("{checked} inline synopses checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 30,
        "only {checked} inline synopses found: the parser lost them"
    );
}
