//! Old flag spellings, still accepted as hidden aliases: one line on
//! stderr names the spelling to use instead (the command still runs).

/// (the subcommand the old spelling belongs to, or "" for any; the old
/// spelling; the one to use).
const RENAMED: &[(&str, &str, &str)] = &[
    ("", "--ssh-known-hosts", "--known-hosts"),
    ("", "--ssh-key", "--ssh-identity"),
    ("lb", "--identity", "--ssh-identity"),
    ("lb", "--timeout", "--deadline"),
    ("snapshot", "--timeout", "--transfer-deadline"),
    ("hypervisor", "--json", "-o json"),
];

/// The deprecation lines for `args` (the program name first), one per
/// old spelling used before a `--`.
pub fn lines(args: &[String]) -> Vec<String> {
    let command = args.get(1).map(String::as_str).unwrap_or_default();
    let mut said = Vec::new();
    for arg in args.iter().skip(1).take_while(|a| *a != "--") {
        let flag = arg.split('=').next().unwrap_or_default();
        for (cmd, old, new) in RENAMED {
            if flag == *old && (cmd.is_empty() || *cmd == command) {
                let line = format!("warning: {old} is deprecated: use {new}");
                if !said.contains(&line) {
                    said.push(line);
                }
            }
        }
    }
    said
}

/// Say on stderr which old spellings `args` used.
pub fn warn(args: impl Iterator<Item = String>) {
    for line in lines(&args.collect::<Vec<_>>()) {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::lines;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn old_spellings_are_named_once() {
        let said = lines(&args(
            "hacli lb show --identity k --timeout=5s --identity k -- --ssh-key",
        ));
        assert_eq!(
            said,
            [
                "warning: --identity is deprecated: use --ssh-identity",
                "warning: --timeout is deprecated: use --deadline",
            ]
        );
        // `--identity` is the lock holder everywhere else.
        assert!(lines(&args("hacli gate reboot m1 --identity ci")).is_empty());
        assert_eq!(
            lines(&args("hacli recover --ssh-known-hosts f")),
            ["warning: --ssh-known-hosts is deprecated: use --known-hosts"]
        );
    }
}
