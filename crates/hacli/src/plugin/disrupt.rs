//! The settings of `disrupt` and `roll` as their `hacli` command line:
//! the journals in the workspace (`journal_dir`, `.hacli/journal` by
//! default), and `--resume` when a journal is already there, so a step
//! Woodpecker retries continues where the stopped one stopped.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use super::map::{Call, Mapped, live};
use super::settings::{DISRUPT, ROLL, Settings, ci_identity, name, write_private};

/// The journals' directory when `journal_dir` is not set.
pub(crate) const DEFAULT_JOURNAL_DIR: &str = ".hacli/journal";

/// Map `disrupt` or `roll`.
pub(crate) fn map(st: &Settings, tmp: &Path) -> anyhow::Result<(Mapped, Call)> {
    let action = st.required("action")?;
    if !matches!(action, "reboot" | "upgrade") {
        bail!(
            "{}: `{action}`: command {} takes reboot or upgrade",
            name("action"),
            st.command
        );
    }
    let dir = st.in_workspace(st.get("journal_dir").unwrap_or(DEFAULT_JOURNAL_DIR));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow!("{}: creating {}: {e}", name("journal_dir"), dir.display()))?;
    let mut m = if st.command == DISRUPT {
        let node = st.required("node")?;
        let journal = dir.join(format!("{node}.jsonl"));
        let mut m = Mapped::new(&[DISRUPT, action, node]);
        m.opt("--journal", Some(&journal));
        if has_records(&journal) {
            m.arg("--resume");
        }
        m
    } else {
        let mut m = Mapped::new(&[ROLL, action]);
        if let Some(nodes) = st.list("nodes")? {
            m.opt("--nodes", Some(nodes));
        }
        if let Some((text, _)) = st.duration("soak")? {
            m.opt("--soak", Some(text));
        }
        m.opt("--journal-dir", Some(&dir));
        if journals(&dir)?.iter().any(|j| has_records(j)) {
            m.arg("--resume");
        }
        m
    };
    let topology = st.file("topology", st.required("topology")?, tmp)?;
    m.opt("--topology", Some(&topology));
    common(st, tmp, action, &mut m)?;
    let call = Call::Command {
        argv: m.argv.clone(),
    };
    Ok((m, call))
}

/// The flags `disrupt` and `roll` share.
fn common(st: &Settings, tmp: &Path, action: &str, m: &mut Mapped) -> anyhow::Result<()> {
    let backend = st.get("backend").unwrap_or("live");
    if !matches!(backend, "live" | "simulated") {
        bail!("{}: `{backend}` is not live or simulated", name("backend"));
    }
    m.opt("--backend", Some(backend));
    if backend == "live" {
        live(st, tmp, m)?;
    } else if let Some(fails) = st.list("sim_fail")? {
        for f in fails.split(',') {
            m.opt("--sim-fail", Some(f));
        }
    }
    match (action, st.get("version")) {
        ("upgrade", Some(v)) => {
            hacore::disrupt::check_version(v).map_err(|e| anyhow!("{}: {e}", name("version")))?;
            m.opt("--to", Some(v));
        }
        ("upgrade", None) => {
            st.required("version")?;
        }
        (_, Some(_)) => bail!(
            "{} is for upgrade only; remove it for {action}",
            name("version")
        ),
        (_, None) => {}
    }
    if let Some(p) = st.get("policy") {
        let spec = if st.in_workspace(p).is_file() {
            st.in_workspace(p).to_string_lossy().into_owned()
        } else {
            p.to_string()
        };
        hacore::Policy::named_or_file(&spec).map_err(|e| anyhow!("{}: {e}", name("policy")))?;
        m.opt("--policy", Some(&spec));
    }
    if let Some((text, _)) = st.duration("lock_ttl")? {
        m.opt("--lock-ttl", Some(text));
    }
    let identity = st.get("identity").map(str::to_string).or_else(ci_identity);
    m.opt("--identity", identity.as_ref());
    let key = st.secret_file("ssh_identity", tmp, true)?;
    m.opt("--ssh-identity", key.as_ref());
    if let Some(k) = st.get("known_hosts") {
        let path: PathBuf = write_private(tmp, "known_hosts", k)?;
        m.opt("--known-hosts", Some(&path));
    }
    Ok(())
}

/// Whether `journal` exists with something in it.
fn has_records(journal: &Path) -> bool {
    std::fs::metadata(journal).is_ok_and(|md| md.len() > 0)
}

/// The journals (`*.jsonl`) in `dir`.
fn journals(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| anyhow!("{}: reading {}: {e}", name("journal_dir"), dir.display()))?
    {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    Ok(out)
}
