//! Shell completions and the man page, generated from the clap definitions
//! (`hacli completions SHELL`, `hacli man`). bash must be there; zsh, fish
//! and man(1) are used when installed (a test prints SKIPPED otherwise).

use std::path::Path;
use std::process::{Command, Stdio};

fn hacli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .output()
        .expect("hacli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every subcommand a user can type.
const SUBCOMMANDS: [&str; 8] = [
    "check",
    "gate",
    "sentinel",
    "plan",
    "simulate",
    "plugin",
    "completions",
    "man",
];

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    let script = hacli(&["completions", "bash"]);
    for s in SUBCOMMANDS {
        assert!(script.contains(s), "{s} missing from the bash completion");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hacli.bash");
    std::fs::write(&file, &script).unwrap();
    // Load it and ask for completions as bash would: `hacli ga<TAB>` and
    // `hacli gate --lo<TAB>`.
    let probe = format!(
        r#"source {f}
complete -p hacli
COMP_WORDS=(hacli ga); COMP_CWORD=1; COMP_LINE="hacli ga"; COMP_POINT=${{#COMP_LINE}}
_hacli hacli ga hacli; echo "1: ${{COMPREPLY[*]}}"
COMP_WORDS=(hacli gate --lo); COMP_CWORD=2; COMP_LINE="hacli gate --lo"; COMP_POINT=${{#COMP_LINE}}
_hacli hacli --lo gate; echo "2: ${{COMPREPLY[*]}}"
"#,
        f = file.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _hacli hacli"), "{text}");
    assert!(text.contains("1: gate"), "{text}");
    let flags = text.lines().find(|l| l.starts_with("2: ")).unwrap();
    for f in ["--lock", "--lock-ttl", "--lock-lease"] {
        assert!(flags.split(' ').any(|w| w == f), "{f}: {flags}");
    }
}

#[test]
fn zsh_and_fish_completions_parse() {
    for (shell, check) in [("zsh", vec!["-n"]), ("fish", vec!["--no-execute"])] {
        let script = hacli(&["completions", shell]);
        assert!(
            script.contains("sentinel") && script.contains("lock-ttl"),
            "{shell}"
        );
        if !have(shell) {
            testlab::skip::skip(
                &format!("{shell} syntax check"),
                &format!("{shell} is not installed (the script was generated)"),
            );
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("hacli.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let out = Command::new(shell)
            .args(&check)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn man_render(page: &Path) -> Option<String> {
    if !have("man") {
        testlab::skip::skip(
            "rendering with man -l",
            "man(1) is not installed (Debian man-db)",
        );
        return None;
    }
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Strip overstrike (bold/underline) in case the formatter keeps it.
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text = String::new();
    for c in raw.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    Some(text)
}

#[test]
fn the_man_page_renders() {
    let roff = hacli(&["man"]);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH hacli"),
        "{}",
        &roff[..200.min(roff.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("hacli.1");
    std::fs::write(&page, &roff).unwrap();
    let Some(text) = man_render(&page) else {
        return;
    };
    assert!(text.contains("NAME"), "{text}");
    assert!(
        text.contains("hacli - Is it safe to touch this master?"),
        "{text}"
    );
    for s in SUBCOMMANDS {
        assert!(text.contains(&format!("hacli-{s}(1)")), "{s}: {text}");
    }

    // One page per subcommand.
    let out = dir.path().join("pages");
    hacli(&["man", "--out-dir", out.to_str().unwrap()]);
    let Some(text) = man_render(&out.join("hacli-gate.1")) else {
        return;
    };
    for f in ["--lock-ttl", "--deadline", "--kubeconfig"] {
        assert!(text.contains(f), "{f}: {text}");
    }
}

/// docs/cli-reference.md is `hacli man --markdown`, byte for byte: a flag
/// added, renamed or described differently fails here until the reference
/// is regenerated, so it never drifts from the commands.
#[test]
fn the_cli_reference_in_docs_is_the_generated_one() {
    let generated = hacli(&["man", "--markdown"]);
    for s in SUBCOMMANDS {
        assert!(
            generated.contains(&format!("## `hacli {s}`")),
            "hacli {s} missing from the Markdown reference"
        );
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli-reference.md");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what `hacli man --markdown` prints now: regenerate it with\n  \
         cargo run -q -p hacli -- man --markdown > docs/cli-reference.md",
        file.display()
    );
}
