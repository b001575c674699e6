//! `hapy.snapshot`, `hapy.recover` and `hapy.remediate`: the CLI's
//! `snapshot`, `recover` and `remediate`, same names and semantics,
//! through the same functions of the live operations layer
//! (`haops::snapshot`, `haops::recover`, `haops::remediate`), the GIL
//! released while they run. Each returns its result as a dict, shaped as
//! the CLI's JSON; how the cluster is reached are the reach keywords
//! (`reach.rs`).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{ConfigError, ObserveError, PyState, PyTopology, to_py};

/// A `haops::Error` as the Python exception of the same meaning (see
/// `ops.rs`): 3 `ObserveError`, 2 `ConfigError`, else `Error` (a snapshot
/// failing its integrity check).
fn py_err(e: haops::Error) -> PyErr {
    let text = kubeadm::redact_urls_in(&e.to_string()).into_owned();
    match e.exit_code() {
        3 => ObserveError::new_err(text),
        2 => ConfigError::new_err(text),
        _ => crate::Error::new_err(text),
    }
}

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| ConfigError::new_err(format!("{what}={s}: a number of seconds >= 0")))
}

/// Progress lines (notes, warnings) to the `hapy` logger.
pub(crate) fn log(py: Python<'_>, lines: Vec<(bool, String)>) -> PyResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let logger = py.import("logging")?.call_method1("getLogger", ("hapy",))?;
    for (warning, line) in lines {
        logger.call_method1(if warning { "warning" } else { "info" }, (line,))?;
    }
    Ok(())
}

/// Run `f` without the GIL, its events to the `hapy` logger as they
/// happen (`progress.rs`).
fn with_events<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&mut dyn FnMut(haops::Event)) -> PyResult<T> + Send,
) -> PyResult<T> {
    crate::progress::run(py, None, f)
}

/// An etcd snapshot, as `hacli snapshot` takes it: from a healthy follower
/// of `topology`'s etcd (the leader only when no other member is healthy,
/// logged as a warning) into `snapshot_dir` (or `HACLI_SNAPSHOT_DIR`),
/// written atomically (mode 0600) and its integrity checked; with
/// `verify_restore=True` restored into a throwaway etcd on 127.0.0.1 and
/// `verify_key` (else the first key) read back; copied into each
/// directory of `copy_to` and over SSH to each `USER@HOST[:PORT]:/DIR` of
/// `copy_over_ssh` (host key checked: `known_hosts`, `ssh_identity`);
/// then our snapshots beyond the newest `keep`, or older than `max_age`
/// seconds, deleted (the newest always stays). `etcdutl` (else
/// `HACLI_ETCDUTL`, else on PATH). `deadline` (seconds, 300 by default)
/// bounds the transfer, and again a restore check or a copy.
///
/// With `check=FILE`, check that file instead (with `verify_restore`,
/// restore it too); `topology` is not needed. Returns the CLI's JSON as a
/// dict. A snapshot failing its integrity check raises `Error`; etcd or a
/// tool that does not answer, `ObserveError`; bad input, `ConfigError`.
#[pyfunction]
#[pyo3(signature = (
    topology = None, *, check = None, keep = 7, max_age = None, copy_to = None,
    copy_over_ssh = None, verify_restore = false, verify_key = None, etcdutl = None,
    **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn snapshot<'py>(
    py: Python<'py>,
    topology: Option<&Bound<'py, PyAny>>,
    check: Option<PathBuf>,
    keep: usize,
    max_age: Option<f64>,
    copy_to: Option<Vec<PathBuf>>,
    copy_over_ssh: Option<Vec<String>>,
    verify_restore: bool,
    verify_key: Option<String>,
    etcdutl: Option<PathBuf>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let reach = crate::reach::reach("snapshot", reach, Duration::from_secs(300))?;
    let copy_over_ssh = (copy_over_ssh.unwrap_or_default().iter())
        .map(|d| {
            d.parse()
                .map_err(|e: String| ConfigError::new_err(format!("copy_over_ssh: {e}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let opts = haops::snapshot::Options {
        keep,
        max_age: max_age.map(|s| seconds("max_age", s)).transpose()?,
        copy_to: copy_to.unwrap_or_default(),
        copy_over_ssh,
        verify_restore,
        verify_key,
        etcdutl,
        deadline: reach.deadline,
    };
    if let Some(file) = check {
        if !opts.copy_to.is_empty() || !opts.copy_over_ssh.is_empty() {
            return Err(ConfigError::new_err(
                "check=...: a file checked is not copied (copy_to, copy_over_ssh are for a snapshot taken)",
            ));
        }
        let checked = py.detach(|| haops::snapshot::check(&file, &opts).map_err(py_err))?;
        return to_py(py, &checked);
    }
    let Some(topology) = topology else {
        return Err(ConfigError::new_err(
            "snapshot(): the topology is needed to take a snapshot (or check=FILE to check one)",
        ));
    };
    let topology = PyTopology::coerce(topology)?.into_owned();
    let taken = with_events(py, |events| {
        haops::snapshot::take(&topology, &reach, &opts, events).map_err(py_err)
    })?;
    to_py(py, &taken)
}

/// Recover from lost etcd quorum, as `hacli recover` does: observe what
/// survives (each master's data directory over SSH, whether its etcd
/// answers as a voter, the snapshots: `snapshot`, a list of files, else
/// ours in `snapshot_dir`), decide (refused while quorum holds; else the
/// source that loses least, and what it loses) and, with `confirm=True`,
/// restore a one-member cluster on one master (`on`, else the source
/// member) and rejoin the others, journalled in `journal` (the plan saved
/// beside it; `resume=True` continues a run). Without `confirm` nothing
/// changes: the outcome is "needsConfirm". `dry_run=True` only observes
/// and decides. Returns `{"plan": {...}, "outcome": {"outcome": ...}}` as
/// `hacli recover -o json`; a refusal (quorum holds) is an outcome, not an
/// exception. A snapshot named in `snapshot` that fails its integrity
/// check raises `ConfigError` naming it; a cluster that cannot be reached,
/// `ObserveError`. Progress goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    topology, *, journal, snapshot = None, on = None, resume = false, dry_run = false,
    confirm = false, etcdutl = None, serving_bound = 120.0, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn recover<'py>(
    py: Python<'py>,
    topology: &Bound<'py, PyAny>,
    journal: PathBuf,
    snapshot: Option<Vec<PathBuf>>,
    on: Option<String>,
    resume: bool,
    dry_run: bool,
    confirm: bool,
    etcdutl: Option<PathBuf>,
    serving_bound: f64,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let topology = PyTopology::coerce(topology)?.into_owned();
    let reach = crate::reach::reach("recover", reach, haops::Reach::default().deadline)?;
    let opts = haops::recover::Options {
        snapshots: snapshot.unwrap_or_default(),
        on,
        journal,
        resume,
        dry_run,
        confirm,
        etcdutl,
        serving_bound: seconds("serving_bound", serving_bound)?,
    };
    let report = with_events(py, |events| {
        haops::recover::run(&topology, &reach, &opts, events).map_err(py_err)
    })?;
    to_py(py, &report)
}

/// Decide once whether a dead master is to be replaced, as `hacli
/// remediate` does (`haops::remediate::decide_once` over
/// `hacore::remediation::decide`): from `state` (a `State`, a path or a
/// dict) or, without it, one observation of the live cluster (the reach
/// keywords). A master is replaced once unhealthy (Node NotReady, etcd
/// member unhealthy) for longer than `unhealthy_for` seconds, at most
/// `max_retries` attempts within `retry_period` seconds, the next no
/// sooner than `min_healthy_period` seconds after the last ended, never
/// when losing it would break quorum. What it remembers between decisions
/// (each master's unhealthy clock, the attempts) lives in the file
/// `memory`; with `metrics`, the decision is written there as Prometheus
/// text. Returns `{"decision": "healthy" | "wait" | "replace" | "refused"
/// | "cancelled", "node", "reason", "class", "memory"}` (`class`: why, as
/// `hacli_remediation_*`'s `reason_class`).
///
/// Without `confirm` nothing is acted on. With `confirm=True`, as `hacli
/// remediate --confirm` (`haops::remediate::run_once`, the live cluster
/// only: no `state`, no `at`): a "replace" decision is carried out under
/// the disruption lock, the cluster observed again right before it starts
/// (a master that answers again is "cancelled"), `replace-master --dead`
/// for it and `spare` (a node file, as in a topology's `nodes:`),
/// journalled to `JOURNAL.OLD.N`; the result then has `replaced`
/// (`{"journal", "topology"}`: the topology from now on). A refusal
/// (quorum, retry budget) touches nothing.
#[pyfunction]
#[pyo3(signature = (
    topology, *, memory, state = None, unhealthy_for = 300.0, max_retries = 2,
    retry_period = 3600.0, min_healthy_period = 600.0, metrics = None, at = None,
    confirm = false, spare = None, journal = None, template = None, identity = None,
    lock_ttl = 3600.0, idle_bound = 30.0, proxmox_ha_rule = None, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn remediate<'py>(
    py: Python<'py>,
    topology: &Bound<'py, PyAny>,
    memory: PathBuf,
    state: Option<&Bound<'py, PyAny>>,
    unhealthy_for: f64,
    max_retries: u32,
    retry_period: f64,
    min_healthy_period: f64,
    metrics: Option<PathBuf>,
    at: Option<&Bound<'py, PyAny>>,
    confirm: bool,
    spare: Option<PathBuf>,
    journal: Option<PathBuf>,
    template: Option<u32>,
    identity: Option<String>,
    lock_ttl: f64,
    idle_bound: f64,
    proxmox_ha_rule: Option<String>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let dur = |what: &str, s: f64| -> PyResult<hacore::units::Dur> {
        let d = seconds(what, s)?;
        Ok(hacore::units::Dur(d.try_into().map_err(|e| {
            ConfigError::new_err(format!("{what}={s}: {e}"))
        })?))
    };
    let opts = haops::remediate::Once {
        policy: hacore::remediation::Policy {
            unhealthy_for: dur("unhealthy_for", unhealthy_for)?,
            max_retries,
            retry_period: dur("retry_period", retry_period)?,
            min_healthy_period: dur("min_healthy_period", min_healthy_period)?,
        },
        memory,
        metrics,
    };
    let given = |v: Option<&Bound<'py, PyAny>>| v.is_some_and(|v| !v.is_none());
    let topology = PyTopology::coerce(topology)?.into_owned();
    let reach = crate::reach::reach("remediate", reach, haops::Reach::default().deadline)?;
    if confirm {
        if given(state) || given(at) {
            return Err(ConfigError::new_err(
                "remediate(confirm=True) acts on the live cluster, observed now: state= and at= cannot stand for it",
            ));
        }
        let act = Act {
            spare,
            journal,
            template,
            identity,
            lock_ttl: seconds("lock_ttl", lock_ttl)?,
            idle_bound: seconds("idle_bound", idle_bound)?,
            ha_rule: proxmox_ha_rule,
        }
        .act()?;
        let ran = with_events(py, |events| {
            haops::remediate::run_once(&topology, &reach, &opts, Some(&act), events).map_err(py_err)
        })?;
        return to_py(py, &ran);
    }
    let now = match at {
        Some(t) if !t.is_none() => crate::timestamp(t)?,
        _ => jiff::Timestamp::now(),
    };
    let state = match state {
        Some(s) if !s.is_none() => PyState::coerce(s, &topology)?.into_owned(),
        _ => {
            let seen =
                py.detach(|| haops::observe::observe(&topology, &reach, None).map_err(py_err));
            seen?.state
        }
    };
    let decided =
        py.detach(|| haops::remediate::decide_once(&topology, &state, &opts, now).map_err(py_err))?;
    to_py(py, &decided)
}

/// What `remediate(confirm=True)` acts with.
struct Act {
    spare: Option<PathBuf>,
    journal: Option<PathBuf>,
    template: Option<u32>,
    identity: Option<String>,
    lock_ttl: Duration,
    idle_bound: Duration,
    ha_rule: Option<String>,
}

impl Act {
    /// The replacement's settings: the spare's node file read (an error
    /// names it), the journal's base name.
    fn act(self) -> PyResult<haops::remediate::Act> {
        let (Some(spare), Some(journal)) = (self.spare, self.journal) else {
            return Err(ConfigError::new_err(
                "remediate(confirm=True) needs spare= (the spare master: one node as in a topology's nodes:) and journal= (the journal's base name)",
            ));
        };
        let text = std::fs::read_to_string(&spare)
            .map_err(|e| ConfigError::new_err(format!("spare={}: {e}", spare.display())))?;
        let node: hacore::topology::Node =
            hacore::source::parse(&spare.display().to_string(), &text).map_err(|e| {
                ConfigError::new_err(format!(
                    "spare={}: not one node as in a topology's nodes: (name, role, address, hypervisor, vmid, ...): {e}",
                    spare.display()
                ))
            })?;
        Ok(haops::remediate::Act {
            spare: node,
            template: self.template,
            idle_bound: self.idle_bound,
            ha_rule: self.ha_rule,
            run: haops::master::RunOptions {
                identity: self.identity,
                lock_ttl: self.lock_ttl,
                ..haops::master::RunOptions::new(journal, haops::apply::Backend::Live)
            },
        })
    }
}
