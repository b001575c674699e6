//! Python bindings for `hacore`: the private native module `hapy._hapy`,
//! re-exported by the `hapy` package (`python/hapy/__init__.py`).
//!
//! A thin layer. Every decision is hacore's; this crate converts arguments,
//! maps [`hacore::Error`] to `hapy.ConfigError` (keeping the message with its
//! `file:line:column`), and renders results from hacore's serde output (JSON
//! loaded with Python's `json`), so `Verdict.to_dict()` has exactly the shape
//! of `hacli check -o json`. Dicts coming in take the same road the other
//! way: `json.dumps(d, indent=2)`, then hacore's own parser and validation.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::OnceLock;

use hacore::gate::{BUILTINS, Request};
use hacore::quorum::{Membership, Projection, Safety};
use hacore::{Action, ClusterState, Policy, Topology};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyDict, PyString, PyTzInfo};
use serde::Serialize;

mod disrupt;
mod drill;
#[cfg(feature = "live")]
mod init;
mod live;
#[cfg(feature = "live")]
mod ops;
#[cfg(feature = "live")]
mod progress;
#[cfg(feature = "live")]
mod reach;
#[cfg(feature = "live")]
mod recovery;

create_exception!(
    hapy,
    Error,
    PyException,
    "Base class of every error hapy raises."
);
create_exception!(
    hapy,
    ConfigError,
    Error,
    "Bad input: a file that cannot be read, does not parse or fails validation (the message names file:line:column and the field), an unknown target, action or policy, or a bad time."
);
create_exception!(
    hapy,
    ObserveError,
    Error,
    "A live observation failed (reserved for the live backend: hapy.gate / hapy.observe)."
);

/// What a live operation raises in a build without the `live` feature
/// (`what`: "to observe a cluster", ...): the one stand-in for every
/// live function.
#[cfg(not(feature = "live"))]
pub(crate) fn not_live(what: &str) -> PyErr {
    ObserveError::new_err(format!(
        "hapy was built without the `live` feature: rebuild with it (the default) {what}"
    ))
}

fn config_error(e: hacore::Error) -> PyErr {
    ConfigError::new_err(e.to_string())
}

/// `json.loads(serde_json(value))`: hacore's serde output as Python objects.
fn to_py<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| Error::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

fn to_json<T: Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::new_err(e.to_string()))
}

/// A dict as a JSON document (which is YAML) for hacore's parser; values JSON
/// does not know (datetimes, ...) are written with `str()`.
fn dict_text(data: &Bound<'_, PyDict>) -> PyResult<String> {
    let py = data.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("indent", 2)?;
    kwargs.set_item("default", py.get_type::<PyString>())?;
    py.import("json")?
        .call_method("dumps", (data,), Some(&kwargs))?
        .extract()
}

/// A time argument: an aware `datetime`, an RFC 3339 string, or `"now"`.
fn timestamp(obj: &Bound<'_, PyAny>) -> PyResult<Timestamp> {
    if let Ok(s) = obj.cast::<PyString>() {
        // to_cow, not to_str: the stable ABI of Python 3.9 (abi3-py39) has
        // no borrowed UTF-8 view of a str.
        let s = s.to_cow()?;
        let s = s.as_ref();
        if s == "now" {
            return Ok(Timestamp::now());
        }
        return s.parse().map_err(|e| {
            ConfigError::new_err(format!(
                "at `{s}`: expected an RFC 3339 time such as 2026-05-21T12:00:00Z, or `now` ({e})"
            ))
        });
    }
    if obj.cast::<PyDateTime>().is_ok() {
        if obj.getattr("tzinfo")?.is_none() {
            return Err(ConfigError::new_err(format!(
                "at {}: a naive datetime is ambiguous; give it a time zone (e.g. tzinfo=datetime.timezone.utc)",
                obj.repr()?
            )));
        }
        let iso: String = obj.call_method0("isoformat")?.extract()?;
        return iso
            .parse()
            .map_err(|e| ConfigError::new_err(format!("at `{iso}`: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "at: expected a datetime, an RFC 3339 string or None, not {}",
        obj.get_type().name()?
    )))
}

/// A timestamp as an aware `datetime` in UTC (microsecond precision).
fn datetime(py: Python<'_>, ts: Timestamp) -> PyResult<Bound<'_, PyDateTime>> {
    let dt = TimeZone::UTC.to_datetime(ts);
    let utc = PyTzInfo::utc(py)?;
    let narrow = |v: i8| v as u8;
    PyDateTime::new(
        py,
        i32::from(dt.year()),
        narrow(dt.month()),
        narrow(dt.day()),
        narrow(dt.hour()),
        narrow(dt.minute()),
        narrow(dt.second()),
        (dt.subsec_nanosecond() / 1000) as u32,
        Some(&utc),
    )
}

fn fspath(obj: &Bound<'_, PyAny>) -> Option<PathBuf> {
    if obj.cast::<PyString>().is_ok() || obj.hasattr("__fspath__").unwrap_or(false) {
        obj.extract().ok()
    } else {
        None
    }
}

fn type_error(what: &str, expected: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!("{what}: expected {expected}, not {ty}"))
}

fn diag_strings(d: &[hacore::source::Diagnostic]) -> Vec<String> {
    d.iter().map(ToString::to_string).collect()
}

/// The declared cluster: nodes, roles, etcd members, load balancer, VIP and
/// hypervisor hosts. Immutable; load it once and evaluate many times.
#[pyclass(frozen, module = "hapy", name = "Topology")]
struct PyTopology {
    inner: Topology,
    warnings: Vec<String>,
}

impl PyTopology {
    fn new((inner, report): (Topology, hacore::topology::Report)) -> Self {
        PyTopology {
            inner,
            warnings: diag_strings(&report.warnings),
        }
    }

    /// A `Topology`, a path (str or os.PathLike) or a dict.
    fn coerce<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, Topology>> {
        if let Ok(t) = obj.cast::<PyTopology>() {
            return Ok(Cow::Borrowed(&t.get().inner));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return Ok(Cow::Owned(Self::from_dict(d, "<dict>")?.inner));
        }
        match fspath(obj) {
            Some(path) => Ok(Cow::Owned(Self::from_file(obj.py(), path)?.inner)),
            None => Err(type_error(
                "topology",
                "a hapy.Topology, a path or a dict",
                obj,
            )),
        }
    }
}

#[pymethods]
impl PyTopology {
    /// Load and validate a topology file (YAML or JSON).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| Topology::load(&path))
            .map(Self::new)
            .map_err(config_error)
    }

    /// Parse and validate a topology from a YAML or JSON string; `name`
    /// stands for the file in error messages.
    #[staticmethod]
    #[pyo3(signature = (text, name = "<string>"))]
    fn from_yaml(text: &str, name: &str) -> PyResult<Self> {
        Topology::from_yaml(name, text)
            .map(Self::new)
            .map_err(config_error)
    }

    /// Build and validate a topology from a dict shaped like the file
    /// (camelCase keys). Error positions refer to `json.dumps(data, indent=2)`.
    #[staticmethod]
    #[pyo3(signature = (data, name = "<dict>"))]
    fn from_dict(data: &Bound<'_, PyDict>, name: &str) -> PyResult<Self> {
        Self::from_yaml(&dict_text(data)?, name)
    }

    /// The topology as a dict, in the file's shape (round-trips through
    /// `from_dict`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    /// Cluster name.
    #[getter]
    fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// Every node name, in file order.
    #[getter]
    fn nodes(&self) -> Vec<String> {
        self.inner.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Control-plane node names, in file order.
    #[getter]
    fn control_plane_nodes(&self) -> Vec<String> {
        self.inner
            .control_plane_nodes()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Hypervisor host names.
    #[getter]
    fn hypervisors(&self) -> Vec<String> {
        self.inner
            .hypervisors
            .iter()
            .map(|h| h.name.clone())
            .collect()
    }

    /// Validation warnings (risky but accepted), with file:line:column.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyTopology>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Topology {:?}: {} node(s), {} control-plane>",
            self.inner.cluster,
            self.inner.nodes.len(),
            self.inner.control_plane_nodes().count()
        )
    }
}

/// An observed snapshot of the cluster, checked against a topology.
#[pyclass(frozen, module = "hapy", name = "State")]
struct PyState {
    inner: ClusterState,
    warnings: Vec<String>,
}

impl PyState {
    fn new((inner, warnings): (ClusterState, Vec<hacore::source::Diagnostic>)) -> Self {
        PyState {
            inner,
            warnings: diag_strings(&warnings),
        }
    }

    /// A `State`, a path (str or os.PathLike) or a dict.
    fn coerce<'a>(
        obj: &'a Bound<'_, PyAny>,
        topology: &Topology,
    ) -> PyResult<Cow<'a, ClusterState>> {
        if let Ok(s) = obj.cast::<PyState>() {
            return Ok(Cow::Borrowed(&s.get().inner));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let text = dict_text(d)?;
            return ClusterState::from_yaml("<dict>", &text, topology)
                .map(|(s, _)| Cow::Owned(s))
                .map_err(config_error);
        }
        match fspath(obj) {
            Some(path) => obj
                .py()
                .detach(|| ClusterState::load(&path, topology))
                .map(|(s, _)| Cow::Owned(s))
                .map_err(config_error),
            None => Err(type_error("state", "a hapy.State, a path or a dict", obj)),
        }
    }
}

impl PyState {
    /// A state straight from the live observer (already consistent with its
    /// topology).
    #[cfg(feature = "live")]
    fn observed(inner: ClusterState) -> Self {
        PyState {
            inner,
            warnings: Vec::new(),
        }
    }
}

#[pymethods]
impl PyState {
    /// Load an observed-state file (YAML or JSON) and check it against the
    /// topology.
    #[staticmethod]
    fn from_file(
        py: Python<'_>,
        path: PathBuf,
        topology: &Bound<'_, PyTopology>,
    ) -> PyResult<Self> {
        let topology = &topology.get().inner;
        py.detach(|| ClusterState::load(&path, topology))
            .map(Self::new)
            .map_err(config_error)
    }

    /// Parse an observed state from a YAML or JSON string.
    #[staticmethod]
    #[pyo3(signature = (text, topology, name = "<string>"))]
    fn from_yaml(text: &str, topology: &Bound<'_, PyTopology>, name: &str) -> PyResult<Self> {
        ClusterState::from_yaml(name, text, &topology.get().inner)
            .map(Self::new)
            .map_err(config_error)
    }

    /// Build an observed state from a dict shaped like the file (camelCase
    /// keys). Error positions refer to `json.dumps(data, indent=2)`.
    #[staticmethod]
    #[pyo3(signature = (data, topology, name = "<dict>"))]
    fn from_dict(
        data: &Bound<'_, PyDict>,
        topology: &Bound<'_, PyTopology>,
        name: &str,
    ) -> PyResult<Self> {
        Self::from_yaml(&dict_text(data)?, topology, name)
    }

    /// The state as a dict, in the file's shape (round-trips through
    /// `from_dict`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    /// When the state was observed (aware datetime, UTC).
    #[getter]
    fn observed_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime(py, self.inner.observed_at)
    }

    /// Consistency warnings, with file:line:column.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyState>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!("<State observed {}>", self.inner.observed_at)
    }
}

/// The built-in policies, built once: building one compiles its regexes (the
/// `alerts` rule's ignore list), which costs more than a whole verdict.
fn builtin_policy(name: &str) -> Option<&'static Policy> {
    static CACHE: OnceLock<Vec<Policy>> = OnceLock::new();
    CACHE
        .get_or_init(|| BUILTINS.iter().filter_map(|n| Policy::builtin(n)).collect())
        .iter()
        .find(|p| p.name == name)
}

/// A gate policy: which rules run, with which parameters.
#[pyclass(frozen, module = "hapy", name = "Policy")]
struct PyPolicy {
    inner: Policy,
}

impl PyPolicy {
    /// None (the action's built-in), a `Policy`, a built-in name or a path, or a dict.
    fn coerce<'a>(obj: Option<&'a Bound<'_, PyAny>>, action: Action) -> PyResult<Cow<'a, Policy>> {
        let Some(obj) = obj else {
            return Ok(Cow::Borrowed(builtin_policy(action.name()).ok_or_else(
                || Error::new_err(format!("no built-in policy for action {action}")),
            )?));
        };
        if let Ok(p) = obj.cast::<PyPolicy>() {
            return Ok(Cow::Borrowed(&p.get().inner));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            let spec = s.to_cow()?;
            let spec = spec.as_ref();
            if let Some(p) = builtin_policy(spec) {
                return Ok(Cow::Borrowed(p));
            }
            return Policy::named_or_file(spec)
                .map(Cow::Owned)
                .map_err(config_error);
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return Ok(Cow::Owned(Self::from_dict(d, "<dict>")?.inner));
        }
        match fspath(obj) {
            Some(path) => Ok(Cow::Owned(Self::from_file(obj.py(), path)?.inner)),
            None => Err(type_error(
                "policy",
                "None, a hapy.Policy, a built-in name, a path or a dict",
                obj,
            )),
        }
    }
}

#[pymethods]
impl PyPolicy {
    /// A built-in policy by name (see `hapy.policies()`).
    #[staticmethod]
    fn builtin(name: &str) -> PyResult<Self> {
        builtin_policy(name)
            .map(|p| PyPolicy { inner: p.clone() })
            .ok_or_else(|| {
                config_error(hacore::Error::UnknownPolicy(
                    name.to_string(),
                    BUILTINS.join(", "),
                ))
            })
    }

    /// Load a policy file (`extends`, `rules`, `disable`), resolved.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| Policy::load(&path))
            .map(|inner| PyPolicy { inner })
            .map_err(config_error)
    }

    /// Parse a policy from a YAML or JSON string.
    #[staticmethod]
    #[pyo3(signature = (text, name = "<string>"))]
    fn from_yaml(text: &str, name: &str) -> PyResult<Self> {
        Policy::from_yaml(name, text)
            .map(|inner| PyPolicy { inner })
            .map_err(config_error)
    }

    /// Build a policy from a dict shaped like a policy file.
    #[staticmethod]
    #[pyo3(signature = (data, name = "<dict>"))]
    fn from_dict(data: &Bound<'_, PyDict>, name: &str) -> PyResult<Self> {
        Self::from_yaml(&dict_text(data)?, name)
    }

    /// The resolved policy as a dict (every rule with its parameters).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    /// Policy name, as shown in verdicts.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Free text, if any.
    #[getter]
    fn description(&self) -> Option<&str> {
        self.inner.description.as_deref()
    }

    /// Ids of the enabled rules, in the order they run.
    #[getter]
    fn rules(&self) -> Vec<&'static str> {
        self.inner.rules.ids()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyPolicy>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Policy {:?}: {}>",
            self.inner.name,
            self.inner.rules.ids().join(", ")
        )
    }
}

/// One rule's conclusion.
#[pyclass(frozen, module = "hapy", name = "Finding")]
struct PyFinding {
    inner: hacore::Finding,
}

#[pymethods]
impl PyFinding {
    /// Rule id, such as `etcd-quorum`.
    #[getter]
    fn rule(&self) -> &str {
        &self.inner.rule
    }

    /// `pass`, `warn`, `unknown` or `deny`.
    #[getter]
    fn severity(&self) -> &'static str {
        self.inner.severity.as_str()
    }

    /// What the rule found, in one sentence.
    #[getter]
    fn message(&self) -> &str {
        &self.inner.message
    }

    /// What to do about it, when there is something to do.
    #[getter]
    fn remediation(&self) -> Option<&str> {
        self.inner.remediation.as_deref()
    }

    /// The finding as a dict (as in the CLI's JSON).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyFinding>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Finding {} {}: {}>",
            self.inner.severity.as_str(),
            self.inner.rule,
            self.inner.message
        )
    }
}

fn findings(it: impl Iterator<Item = hacore::Finding>) -> Vec<PyFinding> {
    it.map(|inner| PyFinding { inner }).collect()
}

/// The answer to "may I do ACTION to TARGET now?", with every reason.
#[pyclass(frozen, module = "hapy", name = "Verdict")]
struct PyVerdict {
    inner: hacore::Verdict,
}

#[pymethods]
impl PyVerdict {
    /// Whether the action may go ahead (decision is "allow").
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed()
    }

    /// `allow`, `deny` or `unknown` (unknown is never allow).
    #[getter]
    fn decision(&self) -> &'static str {
        self.inner.decision.as_str()
    }

    /// The CLI's exit code for this decision: 0 allow, 1 deny, 3 unknown.
    #[getter]
    fn exit_code(&self) -> i32 {
        self.inner.decision.exit_code()
    }

    /// The action asked about.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.name()
    }

    /// The target as given (a node or a hypervisor host).
    #[getter]
    fn target(&self) -> &str {
        &self.inner.target
    }

    /// The nodes the action affects.
    #[getter]
    fn affected(&self) -> Vec<String> {
        self.inner.affected.clone()
    }

    /// Name of the policy applied.
    #[getter]
    fn policy(&self) -> &str {
        &self.inner.policy
    }

    /// The time the verdict was evaluated for (aware datetime, UTC).
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime(py, self.inner.at)
    }

    /// When the state was observed (aware datetime, UTC).
    #[getter]
    fn observed_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime(py, self.inner.observed_at)
    }

    /// Every rule's findings, in policy order.
    #[getter]
    fn findings(&self) -> Vec<PyFinding> {
        findings(self.inner.findings.iter().cloned())
    }

    /// The findings that decide the outcome (deny and unknown).
    #[getter]
    fn blocking(&self) -> Vec<PyFinding> {
        findings(self.inner.blocking().cloned())
    }

    /// The verdict as a dict: hacore's serde output, the same shape as
    /// `hacli check -o json`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    /// The verdict as pretty JSON, as `hacli check -o json` prints it (less
    /// the final newline).
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyVerdict>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let blocking: Vec<&str> = self.inner.blocking().map(|f| f.rule.as_str()).collect();
        let mut s = format!(
            "<Verdict {}: {} {} (policy {})",
            self.inner.decision, self.inner.action, self.inner.target, self.inner.policy
        );
        if !blocking.is_empty() {
            s.push_str(": ");
            s.push_str(&blocking.join(", "));
        }
        s.push('>');
        s
    }
}

/// Evaluate ACTION on TARGET under a policy: the offline gate.
///
/// `topology` and `state` are loaded objects, paths or dicts; `policy` is
/// None (the action's built-in), a built-in name, a policy file path, a dict
/// or a `Policy`; `at` is an aware datetime, an RFC 3339 string or "now"
/// (default: now, so a state older than the policy's `state-fresh` maxAge is
/// unknown; give the time a saved state was observed at to replay it). The
/// GIL is released while rules run.
#[pyfunction]
#[pyo3(signature = (action, target, topology, state, policy = None, at = None, requester = None))]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    action: &str,
    target: &str,
    topology: &Bound<'_, PyAny>,
    state: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, PyAny>>,
    at: Option<&Bound<'_, PyAny>>,
    requester: Option<&str>,
) -> PyResult<PyVerdict> {
    let action: Action = action.parse().map_err(config_error)?;
    let topology = PyTopology::coerce(topology)?;
    let state = PyState::coerce(state, &topology)?;
    let policy = PyPolicy::coerce(policy, action)?;
    let now = match at {
        Some(t) if !t.is_none() => timestamp(t)?,
        _ => Timestamp::now(),
    };
    let request = Request {
        action,
        target,
        requester,
    };
    let (topology, state, policy) = (&*topology, &*state, &*policy);
    py.detach(|| hacore::evaluate(topology, state, policy, &request, now))
        .map(|inner| PyVerdict { inner })
        .map_err(config_error)
}

/// The cluster at a glance, as a dict (the shape of `hacli status -o json`):
/// etcd membership and quorum, node readiness, load balancer backends,
/// apiservers, and which nodes the `reboot` policy lets go down at `at` (now
/// by default: a stale state lets nothing go down).
#[pyfunction]
#[pyo3(signature = (topology, state, at = None))]
fn status<'py>(
    py: Python<'py>,
    topology: &Bound<'py, PyAny>,
    state: &Bound<'py, PyAny>,
    at: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let topology = PyTopology::coerce(topology)?;
    let state = PyState::coerce(state, &topology)?;
    let now = match at {
        Some(t) if !t.is_none() => timestamp(t)?,
        _ => Timestamp::now(),
    };
    let (t, s) = (&*topology, &*state);
    let status = py.detach(|| hacore::status::status(t, s, now));
    to_py(py, &status)
}

/// Names of the built-in policies.
#[pyfunction]
fn policies() -> Vec<&'static str> {
    BUILTINS.to_vec()
}

/// Names of the actions.
#[pyfunction]
fn actions() -> Vec<&'static str> {
    Action::ALL.iter().map(|a| a.name()).collect()
}

/// Votes needed to commit with `voters` voting members (0 for none).
#[pyfunction]
fn quorum(voters: usize) -> usize {
    hacore::quorum::quorum(voters)
}

/// How many voters may fail while the rest still form a quorum.
#[pyfunction]
fn tolerance(voters: usize) -> usize {
    hacore::quorum::tolerance(voters)
}

fn safety_name(s: Safety) -> &'static str {
    match s {
        Safety::Safe => "safe",
        Safety::Unsafe => "unsafe",
        Safety::Unknown => "unknown",
    }
}

/// The outcome of projecting a change onto a membership.
#[pyclass(frozen, module = "hapy", name = "Projection")]
struct PyProjection {
    inner: Projection,
}

#[pymethods]
impl PyProjection {
    /// Voters after the change.
    #[getter]
    fn voters(&self) -> usize {
        self.inner.voters
    }

    /// Quorum after the change.
    #[getter]
    fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// Healthy voters after the change, worst case.
    #[getter]
    fn healthy_min(&self) -> usize {
        self.inner.healthy_min
    }

    /// Healthy voters after the change, best case.
    #[getter]
    fn healthy_max(&self) -> usize {
        self.inner.healthy_max
    }

    /// `safe` (quorum holds even in the worst case), `unsafe` (lost even in
    /// the best case) or `unknown` (holds only if voters of unknown health
    /// are healthy).
    #[getter]
    fn safety(&self) -> &'static str {
        safety_name(self.inner.safety())
    }

    /// The projection as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = to_py(py, &self.inner)?;
        d.set_item("safety", safety_name(self.inner.safety()))?;
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyProjection>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "<Projection {}: {} voter(s), quorum {}, healthy {}..{}>",
            safety_name(p.safety()),
            p.voters,
            p.quorum,
            p.healthy_min,
            p.healthy_max
        )
    }
}

/// etcd voting membership with health, as far as it is known; projects
/// changes onto it (take voters down, remove them, add one).
#[pyclass(frozen, module = "hapy", name = "Membership")]
struct PyMembership {
    inner: Membership,
}

#[pymethods]
impl PyMembership {
    /// `healthy` defaults to every voter not listed as `unknown`.
    #[new]
    #[pyo3(signature = (voters, healthy = None, unknown = 0, learners = 0))]
    fn new(
        voters: usize,
        healthy: Option<usize>,
        unknown: usize,
        learners: usize,
    ) -> PyResult<Self> {
        if unknown > voters {
            return Err(PyValueError::new_err(format!(
                "unknown={unknown} exceeds voters={voters}"
            )));
        }
        let healthy = healthy.unwrap_or(voters - unknown);
        if healthy + unknown > voters {
            return Err(PyValueError::new_err(format!(
                "healthy={healthy} + unknown={unknown} exceeds voters={voters}"
            )));
        }
        Ok(PyMembership {
            inner: Membership {
                voters,
                healthy,
                unknown,
                learners,
            },
        })
    }

    /// Voting members.
    #[getter]
    fn voters(&self) -> usize {
        self.inner.voters
    }

    /// Voters known healthy.
    #[getter]
    fn healthy(&self) -> usize {
        self.inner.healthy
    }

    /// Voters whose health is not known.
    #[getter]
    fn unknown(&self) -> usize {
        self.inner.unknown
    }

    /// Non-voting learners.
    #[getter]
    fn learners(&self) -> usize {
        self.inner.learners
    }

    /// Voters known down.
    #[getter]
    fn unhealthy(&self) -> usize {
        self.inner.unhealthy()
    }

    /// Quorum of the current voters.
    #[getter]
    fn quorum(&self) -> usize {
        self.inner.quorum()
    }

    /// Failures the current voters tolerate.
    #[getter]
    fn tolerance(&self) -> usize {
        self.inner.tolerance()
    }

    /// Take voters down for a while (reboot, upgrade, shutdown): `healthy`
    /// healthy voters and `unknown` voters of unknown health.
    #[pyo3(signature = (healthy = 1, unknown = 0))]
    fn take_down(&self, healthy: usize, unknown: usize) -> PyResult<PyProjection> {
        self.check(healthy, unknown, 0)?;
        Ok(PyProjection {
            inner: self.inner.take_down(healthy, unknown),
        })
    }

    /// Remove voters for good (`etcdctl member remove`).
    #[pyo3(signature = (healthy = 0, unknown = 0, down = 0))]
    fn remove(&self, healthy: usize, unknown: usize, down: usize) -> PyResult<PyProjection> {
        self.check(healthy, unknown, down)?;
        Ok(PyProjection {
            inner: self.inner.remove(healthy, unknown, down),
        })
    }

    /// Add a voter that has not started yet (a join without learner mode).
    fn add_unstarted_voter(&self) -> PyProjection {
        PyProjection {
            inner: self.inner.add_unstarted_voter(),
        }
    }

    /// Promote a caught-up learner (or a started new voter) to voter.
    fn add_healthy_voter(&self) -> PyProjection {
        PyProjection {
            inner: self.inner.add_healthy_voter(),
        }
    }

    /// The membership as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyMembership>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let m = &self.inner;
        format!(
            "Membership(voters={}, healthy={}, unknown={}, learners={})",
            m.voters, m.healthy, m.unknown, m.learners
        )
    }
}

impl PyMembership {
    fn check(&self, healthy: usize, unknown: usize, down: usize) -> PyResult<()> {
        let m = &self.inner;
        for (what, n, have) in [
            ("healthy", healthy, m.healthy),
            ("unknown", unknown, m.unknown),
            ("down", down, m.unhealthy()),
        ] {
            if n > have {
                return Err(PyValueError::new_err(format!(
                    "{what}={n}: the membership has only {have} {what} voter(s)"
                )));
            }
        }
        Ok(())
    }
}

/// Native core of the `hapy` package; import `hapy`, not this module.
#[pymodule]
fn _hapy(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ObserveError", py.get_type::<ObserveError>())?;
    m.add_class::<PyTopology>()?;
    m.add_class::<PyState>()?;
    m.add_class::<PyPolicy>()?;
    m.add_class::<PyFinding>()?;
    m.add_class::<PyVerdict>()?;
    m.add_class::<PyMembership>()?;
    m.add_class::<PyProjection>()?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(policies, m)?)?;
    m.add_function(wrap_pyfunction!(actions, m)?)?;
    m.add_function(wrap_pyfunction!(quorum, m)?)?;
    m.add_function(wrap_pyfunction!(tolerance, m)?)?;
    m.add_function(wrap_pyfunction!(live::observe, m)?)?;
    m.add_function(wrap_pyfunction!(live::gate, m)?)?;
    m.add_class::<live::PyLockResult>()?;
    m.add_function(wrap_pyfunction!(live::lock_show, m)?)?;
    m.add_function(wrap_pyfunction!(live::lock_take, m)?)?;
    m.add_function(wrap_pyfunction!(live::lock_release, m)?)?;
    m.add_function(wrap_pyfunction!(disrupt::disrupt, m)?)?;
    m.add_function(wrap_pyfunction!(disrupt::roll, m)?)?;
    #[cfg(feature = "live")]
    for f in [
        wrap_pyfunction!(ops::plan, m)?,
        wrap_pyfunction!(ops::apply, m)?,
        wrap_pyfunction!(ops::remove_master, m)?,
        wrap_pyfunction!(ops::replace_master, m)?,
        wrap_pyfunction!(ops::simulate, m)?,
        wrap_pyfunction!(ops::lb, m)?,
        wrap_pyfunction!(ops::hypervisor, m)?,
        wrap_pyfunction!(ops::reconcile_config, m)?,
        wrap_pyfunction!(recovery::snapshot, m)?,
        wrap_pyfunction!(recovery::recover, m)?,
        wrap_pyfunction!(recovery::remediate, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add_class::<drill::PyDrillResult>()?;
    m.add_function(wrap_pyfunction!(drill::drill, m)?)?;
    #[cfg(feature = "live")]
    m.add_function(wrap_pyfunction!(init::topology_init, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
