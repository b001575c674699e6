//! The reach keywords: how a live function reaches the cluster, as flat
//! keyword arguments named as the CLI's flags (`kubeconfig=`, `context=`,
//! `ssh_identity=`, `known_hosts=`, `deadline=`, ...), translated into one
//! `haops::Reach` over the environment (`Reach::with_env`, the CLI's
//! variables and precedence). The functions of `ops.rs`, `recover.rs`,
//! `snapshot.rs` and `remediate.rs` take them as `**reach`; the `.pyi`
//! stubs list them one by one.
//!
//! `reach={...}` (a dict of the same settings, the 0.x style; `timeout` and
//! `ssh_known_hosts` its old names for `deadline` and `known_hosts`) is
//! still accepted with a `DeprecationWarning`, for one release.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyDeprecationWarning, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::ConfigError;

/// Every reach keyword.
pub(crate) const KEYWORDS: &[&str] = &[
    "kubeconfig",
    "context",
    "etcd",
    "etcd_pki",
    "deadline",
    "member_timeout",
    "kill_switch",
    "lock_lease",
    "daemonsets",
    "prometheus_url",
    "prometheus",
    "apiserver_port",
    "lb_runtime_api",
    "snapshot_dir",
    "boot_wait",
    "ssh_identity",
    "known_hosts",
    "accept_new_host_key",
    "proxmox",
    "proxmox_fingerprint",
    "proxmox_ca",
    "proxmox_insecure",
    "proxmox_token_env",
];

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| ConfigError::new_err(format!("{what}={s}: a number of seconds >= 0")))
}

/// The name a key of a deprecated `reach` dict has now.
fn current_name(key: &str) -> &str {
    match key {
        "timeout" => "deadline",
        "ssh_known_hosts" => "known_hosts",
        k => k,
    }
}

/// The keywords given (`**reach`), the deprecated `reach` dict's merged
/// in (a setting given both ways is an error), checked against
/// [`KEYWORDS`]: `function` names the caller in the message.
fn settings<'py>(
    function: &str,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let mut out: Vec<(String, Bound<'py, PyAny>)> = Vec::new();
    let Some(kwargs) = kwargs else {
        return Ok(out);
    };
    let mut old = None;
    for (k, v) in kwargs.iter() {
        let k: String = k.extract()?;
        if k == "reach" {
            old = Some(v);
            continue;
        }
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(PyTypeError::new_err(format!(
                "{function}() got an unexpected keyword argument '{k}' (the reach keywords: {})",
                KEYWORDS.join(", ")
            )));
        }
        out.push((k, v));
    }
    if let Some(old) = old.filter(|o| !o.is_none()) {
        let py = old.py();
        PyErr::warn(
            py,
            py.get_type::<PyDeprecationWarning>().as_any(),
            c"reach={...} is deprecated: pass its settings as keywords (kubeconfig=..., deadline=..., known_hosts=...)",
            2,
        )?;
        let d = old.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{function}(): reach must be a dict of reach settings"
            ))
        })?;
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            let name = current_name(&k).to_string();
            if !KEYWORDS.contains(&name.as_str()) {
                return Err(ConfigError::new_err(format!(
                    "reach: unknown setting `{k}`; expected one of {}",
                    KEYWORDS.join(", ")
                )));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::new_err(format!(
                    "{name}: given both as a keyword and in reach={{...}}; give it once"
                )));
            }
            out.push((name, v));
        }
    }
    Ok(out)
}

/// The reach the keywords give, over the environment, over kubeadm's
/// defaults; `deadline` when the caller gives none.
pub(crate) fn reach(
    function: &str,
    kwargs: Option<&Bound<'_, PyDict>>,
    deadline: Duration,
) -> PyResult<haops::Reach> {
    let mut r = haops::Reach {
        deadline,
        member_timeout: deadline.min(Duration::from_secs(2)),
        ..haops::Reach::default()
    };
    let mut member_timeout = None;
    for (k, v) in settings(function, kwargs)? {
        let bad = |e: PyErr| ConfigError::new_err(format!("{k}: {e}"));
        let path = |v: &Bound<'_, PyAny>| -> PyResult<Option<PathBuf>> { v.extract() };
        match k.as_str() {
            "kubeconfig" => r.kubeconfig = path(&v).map_err(bad)?,
            "context" => r.context = v.extract().map_err(bad)?,
            "etcd" => {
                r.etcd_endpoints = v
                    .extract::<Option<Vec<String>>>()
                    .map_err(bad)?
                    .unwrap_or_default()
            }
            "etcd_pki" => r.etcd_tls.pki = path(&v).map_err(bad)?,
            "deadline" => r.deadline = seconds("deadline", v.extract().map_err(bad)?)?,
            "member_timeout" => {
                member_timeout = Some(seconds("member_timeout", v.extract().map_err(bad)?)?)
            }
            "kill_switch" => r.kill_switch = v.extract().map_err(bad)?,
            "lock_lease" => r.lock_lease = v.extract().map_err(bad)?,
            "daemonsets" => {
                r.daemonsets = v
                    .extract::<Option<Vec<String>>>()
                    .map_err(bad)?
                    .unwrap_or_default()
            }
            "prometheus_url" => r.prometheus_url = v.extract().map_err(bad)?,
            "prometheus" => r.prometheus = v.extract().map_err(bad)?,
            "apiserver_port" => r.apiserver_port = v.extract().map_err(bad)?,
            "lb_runtime_api" => {
                let s: Option<String> = v.extract().map_err(bad)?;
                r.lb_runtime_api = s
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e: String| ConfigError::new_err(format!("lb_runtime_api: {e}")))?;
            }
            "snapshot_dir" => r.snapshot_dir = path(&v).map_err(bad)?,
            "boot_wait" => r.boot_wait = seconds("boot_wait", v.extract().map_err(bad)?)?,
            "ssh_identity" => r.ssh.identity = path(&v).map_err(bad)?,
            "known_hosts" => r.ssh.known_hosts = path(&v).map_err(bad)?,
            "accept_new_host_key" => r.ssh.accept_new_host_key = v.extract().map_err(bad)?,
            "proxmox" => r.proxmox.endpoint = v.extract().map_err(bad)?,
            "proxmox_fingerprint" => r.proxmox.fingerprint = v.extract().map_err(bad)?,
            "proxmox_ca" => r.proxmox.ca_file = path(&v).map_err(bad)?,
            "proxmox_insecure" => r.proxmox.insecure = v.extract().map_err(bad)?,
            "proxmox_token_env" => r.proxmox.token_env = v.extract().map_err(bad)?,
            other => unreachable!("{other} is checked against KEYWORDS"),
        }
    }
    r.member_timeout = member_timeout.unwrap_or(r.deadline.min(Duration::from_secs(2)));
    r.with_env(|k| std::env::var(k).ok())
        .map_err(|e| ConfigError::new_err(e.to_string()))
}
