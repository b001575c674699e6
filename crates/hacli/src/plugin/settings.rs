//! The Woodpecker plugin's settings: which it knows, for which command,
//! and how each is read and checked (an error names the setting, e.g.
//! `PLUGIN_NODE (settings.node)`); secrets are written to a private
//! temporary directory (0700, files 0600, removed with it).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::args::parse_duration;

pub(crate) const GATE: &str = "gate";
pub(crate) const CHECK: &str = "check";
pub(crate) const PLAN: &str = "plan";
pub(crate) const SIMULATE: &str = "simulate";
pub(crate) const RELEASE: &str = "release";
pub(crate) const DISRUPT: &str = "disrupt";
pub(crate) const ROLL: &str = "roll";
pub(crate) const COMMANDS: [&str; 7] = [GATE, CHECK, PLAN, SIMULATE, RELEASE, DISRUPT, ROLL];

/// The commands that reach the live cluster as `gate` does.
const LIVE: &[&str] = &[GATE, DISRUPT, ROLL];

/// A setting the plugin knows.
pub(crate) struct Setting {
    pub(crate) key: &'static str,
    pub(crate) commands: &'static [&'static str],
    pub(crate) help: &'static str,
}

const fn s(key: &'static str, commands: &'static [&'static str], help: &'static str) -> Setting {
    Setting {
        key,
        commands,
        help,
    }
}

pub(crate) const SETTINGS: &[Setting] = &[
    s(
        "command",
        &COMMANDS,
        "gate, check, plan, simulate, release, disrupt or roll (required)",
    ),
    s(
        "action",
        &[GATE, CHECK, DISRUPT, ROLL],
        "gate, check: reboot, drain, upgrade, shutdown, remove-member or join; disrupt, roll: reboot or upgrade (required)",
    ),
    s(
        "node",
        &[GATE, CHECK, DISRUPT],
        "the target: a node name, or a hypervisor host (required)",
    ),
    s(
        "topology",
        &[GATE, CHECK, DISRUPT, ROLL],
        "a topology file in the workspace, or the topology itself as YAML (required)",
    ),
    s(
        "policy",
        &[GATE, CHECK, DISRUPT, ROLL],
        "a built-in policy name, a policy file in the workspace, or inline YAML; the action's built-in by default",
    ),
    s(
        "state",
        &[CHECK, PLAN],
        "an observed state file in the workspace, or inline YAML (required for check)",
    ),
    s(
        "at",
        &[CHECK],
        "evaluate as of this time (RFC 3339, or now); now by default, so a stale state is unknown",
    ),
    s(
        "kubeconfig",
        &[GATE, RELEASE, DISRUPT, ROLL],
        "the kubeconfig's contents (a secret); by default KUBECONFIG or the in-cluster service account",
    ),
    s(
        "etcd_endpoints",
        LIVE,
        "etcd client URLs (a list); the topology's by default",
    ),
    s(
        "etcd_ca",
        LIVE,
        "the etcd CA certificate, PEM contents (a secret)",
    ),
    s(
        "etcd_cert",
        LIVE,
        "the etcd client certificate, PEM contents (a secret)",
    ),
    s(
        "etcd_key",
        LIVE,
        "the etcd client key, PEM contents (a secret)",
    ),
    s(
        "deadline",
        LIVE,
        "overall deadline of the observation, e.g. 2s (default 2s)",
    ),
    s(
        "member_timeout",
        LIVE,
        "how long one etcd member may take (default 1s)",
    ),
    s(
        "kill_switch",
        LIVE,
        "kill-switch ConfigMap, namespace/name (default kube-system/hacli-kill-switch)",
    ),
    s(
        "daemonsets",
        LIVE,
        "DaemonSets whose pod must run on every node (a list)",
    ),
    s(
        "prometheus_url",
        LIVE,
        "Prometheus base URL for firing alerts (a secret if it holds credentials)",
    ),
    s(
        "prometheus",
        LIVE,
        "Prometheus base URL etcd-latency and master-disk read their figures from (a secret if it holds credentials); the topology's by default",
    ),
    s(
        "lb_runtime_api",
        LIVE,
        "HAProxy runtime API, unix:/path or tcp:ADDR:PORT; the topology's by default",
    ),
    s(
        "apiserver_port",
        LIVE,
        "apiserver port on each master; the control-plane endpoint's by default",
    ),
    s(
        "lock",
        &[GATE],
        "true: when allowed, take the disruption lock (default false)",
    ),
    s(
        "lock_ttl",
        LIVE,
        "how long the lock lasts without renewal (default 30m)",
    ),
    s(
        "lock_lease",
        &[GATE, RELEASE, DISRUPT, ROLL],
        "disruption lock Lease, namespace/name (default kube-system/hacli-disruption-lock)",
    ),
    s(
        "identity",
        &[GATE, CHECK, RELEASE, DISRUPT, ROLL],
        "lock holder identity; woodpecker:CI_REPO#CI_PIPELINE_NUMBER by default, so a later step releases it",
    ),
    s(
        "output",
        &[GATE, CHECK, PLAN, SIMULATE],
        "also write the JSON result to this file in the workspace",
    ),
    s(
        "from",
        &[PLAN],
        "the topology now: a file in the workspace or inline YAML (required)",
    ),
    s(
        "to",
        &[PLAN],
        "the topology wanted: a file in the workspace or inline YAML (required)",
    ),
    s(
        "template",
        &[PLAN],
        "VM id of the template new masters are cloned from",
    ),
    s(
        "plan",
        &[SIMULATE],
        "a plan (hacli plan -o json) in the workspace, or inline JSON (required)",
    ),
    s(
        "failures",
        &[SIMULATE],
        "largest number of simultaneous failures to try (default 1)",
    ),
    s(
        "version",
        &[DISRUPT, ROLL],
        "for upgrade: the version to upgrade to, e.g. v1.33.2 (required for upgrade)",
    ),
    s(
        "nodes",
        &[ROLL],
        "only these nodes (a list); every node by default, masters first",
    ),
    s(
        "soak",
        &[ROLL],
        "wait this long after each master before the next node (default 0s)",
    ),
    s(
        "journal_dir",
        &[DISRUPT, ROLL],
        "the journals' directory in the workspace (default .hacli/journal); a retried step finds its journal there and resumes",
    ),
    s(
        "backend",
        &[DISRUPT, ROLL],
        "live (default) or simulated (a rehearsal on the in-memory cluster, its state in the journal directory)",
    ),
    s(
        "sim_fail",
        &[DISRUPT, ROLL],
        "simulated backend: make operation OP fail on NODE (a list of OP/NODE, e.g. upgrade/m2)",
    ),
    s(
        "ssh_identity",
        &[DISRUPT, ROLL],
        "the SSH private key for the nodes, its contents (a secret)",
    ),
    s(
        "known_hosts",
        &[DISRUPT, ROLL],
        "the nodes' SSH host keys, known_hosts contents (a secret or a plain setting)",
    ),
];

/// `PLUGIN_NODE (settings.node)`.
pub(crate) fn name(key: &str) -> String {
    format!("PLUGIN_{} (settings.{key})", key.to_uppercase())
}

/// Whether a value is a document rather than a path: YAML has a line
/// break, and Woodpecker hands a map written under `settings:` as JSON.
pub(crate) fn is_inline(v: &str) -> bool {
    v.contains('\n') || v.trim_start().starts_with('{')
}

/// The settings Woodpecker set, by key.
pub(crate) struct Settings {
    values: BTreeMap<String, String>,
    pub(crate) workspace: PathBuf,
    pub(crate) command: &'static str,
}

impl Settings {
    pub(crate) fn from_env() -> anyhow::Result<Settings> {
        let mut values = BTreeMap::new();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            let Some(key) = k.strip_prefix("PLUGIN_") else {
                continue;
            };
            let key = key.to_lowercase();
            let v = v
                .into_string()
                .map_err(|_| anyhow!("{}: not valid UTF-8", name(&key)))?;
            if v.trim().is_empty() {
                continue;
            }
            values.insert(key, v);
        }
        let unknown: Vec<String> = values
            .keys()
            .filter(|k| !SETTINGS.iter().any(|s| s.key == k.as_str()))
            .map(|k| name(k))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "unknown setting(s) {}: the plugin knows {} (see `hacli plugin --list-settings`)",
                unknown.join(", "),
                SETTINGS
                    .iter()
                    .map(|s| s.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let Some(command) = values.get("command") else {
            bail!(
                "{} is missing: say what to run, one of {}",
                name("command"),
                COMMANDS.join(", ")
            );
        };
        let Some(command) = COMMANDS.into_iter().find(|c| c == command) else {
            bail!(
                "{}: `{command}` is not a command the plugin runs; use one of {}",
                name("command"),
                COMMANDS.join(", ")
            );
        };
        for key in values.keys() {
            let setting = SETTINGS.iter().find(|s| s.key == key).expect("known");
            if !setting.commands.contains(&command) {
                bail!(
                    "{} is not used by command {command} (it is for: {}); remove it",
                    name(key),
                    setting.commands.join(", ")
                );
            }
        }
        let workspace = match std::env::var_os("CI_WORKSPACE") {
            Some(w) if !w.is_empty() => PathBuf::from(w),
            _ => std::env::current_dir().context("reading the current directory")?,
        };
        Ok(Settings {
            values,
            workspace,
            command,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        debug_assert!(SETTINGS.iter().any(|s| s.key == key), "{key}");
        self.values.get(key).map(String::as_str)
    }

    pub(crate) fn required(&self, key: &str) -> anyhow::Result<&str> {
        self.get(key).ok_or_else(|| {
            let help = SETTINGS.iter().find(|s| s.key == key).expect("known").help;
            let help = help.trim_end_matches(" (required)");
            anyhow!(
                "{} is missing: command {} needs it ({help})",
                name(key),
                self.command
            )
        })
    }

    /// A path in the workspace (relative paths are relative to it).
    pub(crate) fn in_workspace(&self, v: &str) -> PathBuf {
        self.workspace.join(v)
    }

    /// A file given as a workspace path or inline: the path to read.
    pub(crate) fn file(&self, key: &str, v: &str, tmp: &Path) -> anyhow::Result<PathBuf> {
        if is_inline(v) {
            return write_private(tmp, &format!("settings.{key}.yaml"), v)
                .with_context(|| name(key));
        }
        let path = self.in_workspace(v);
        if !path.is_file() {
            bail!(
                "{}: `{}` is not a file in the workspace {}; give a path relative to the \
                 repository, or the document itself as YAML",
                name(key),
                v,
                self.workspace.display()
            );
        }
        Ok(path)
    }

    /// A duration, as given and as read.
    pub(crate) fn duration(&self, key: &str) -> anyhow::Result<Option<(String, Duration)>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let d = parse_duration(v).map_err(|e| anyhow!("{}: {e}", name(key)))?;
                Ok(Some((v.to_string(), d)))
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str) -> anyhow::Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => bail!("{}: `{v}` is not true or false", name(key)),
        }
    }

    /// A list: comma-joined (Woodpecker's form for a list of strings) or a
    /// JSON array.
    pub(crate) fn list(&self, key: &str) -> anyhow::Result<Option<String>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items: Vec<String> = if v.trim_start().starts_with('[') {
            serde_json::from_str(v)
                .map_err(|e| anyhow!("{}: not a JSON list of strings: {e}", name(key)))?
        } else {
            v.split(',').map(|s| s.trim().to_string()).collect()
        };
        if items.iter().any(|i| i.is_empty() || i.contains(',')) {
            bail!("{}: `{v}` has an empty or comma-holding item", name(key));
        }
        Ok(Some(items.join(",")))
    }

    /// A secret's contents, checked for shape (never printed) and written
    /// to a private file.
    pub(crate) fn secret_file(
        &self,
        key: &str,
        tmp: &Path,
        pem: bool,
    ) -> anyhow::Result<Option<PathBuf>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let looks_right = if pem {
            v.contains("-----BEGIN ")
        } else {
            is_inline(v) && (v.contains("clusters") || v.contains("apiVersion"))
        };
        if !looks_right {
            let what = if pem {
                "PEM contents (-----BEGIN ...)"
            } else {
                "a kubeconfig's contents (YAML with clusters, users, contexts)"
            };
            let path_hint = if !v.contains('\n') && self.in_workspace(v).exists() {
                "; it names a file, but the plugin takes the contents: use from_secret"
            } else {
                ""
            };
            bail!(
                "{}: expected {what}, got {} bytes that are not{path_hint} (the value is a secret and is not shown)",
                name(key),
                v.len()
            );
        }
        write_private(tmp, key, v)
            .with_context(|| name(key))
            .map(Some)
    }
}

/// A temporary directory only its owner may enter (0700), removed on drop.
pub(crate) fn private_tempdir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .prefix("hacli-plugin-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// Write `contents` to `dir/file` with mode 0600.
pub(crate) fn write_private(dir: &Path, file: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The lock identity a pipeline gets by default: the same for every step
/// of one pipeline run, so that a later step releases what a gate took.
pub(crate) fn ci_identity() -> Option<String> {
    let repo = std::env::var("CI_REPO").ok().filter(|s| !s.is_empty())?;
    let number = std::env::var("CI_PIPELINE_NUMBER")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(format!("woodpecker:{repo}#{number}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secrets_are_written_private() {
        let tmp = super::private_tempdir().unwrap();
        let dir_mode = std::fs::metadata(tmp.path()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let p = super::write_private(tmp.path(), "etcd_key", "-----BEGIN X-----\n").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "-----BEGIN X-----\n");
        // Never over an existing file.
        assert!(super::write_private(tmp.path(), "etcd_key", "x").is_err());
    }

    #[test]
    fn every_setting_names_known_commands() {
        for s in super::SETTINGS {
            assert!(!s.commands.is_empty(), "{}", s.key);
            assert!(s.commands.iter().all(|c| super::COMMANDS.contains(c)));
            assert_eq!(s.key, s.key.to_lowercase());
        }
    }
}
