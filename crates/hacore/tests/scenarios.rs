//! Data-driven scenarios: topology + state + action -> verdict and rule ids.
//!
//! Each file under `tests/data/scenarios/` holds a topology and a state (a
//! path relative to the file, or inline), optional `set`/`remove` edits to
//! them (JSON pointers), and a list of cases. Each case names an action, a
//! target, optionally a policy (built-in name, path or inline), a time and a
//! requester, its own edits, and what to expect: the decision and the exact
//! sets of rule ids that deny and that are unknown (and, when given, warn);
//! or, with `refused`, that the state is refused as bad input against the
//! topology, with errors that say each given text and propose nothing
//! destructive.

use std::collections::BTreeSet;
use std::path::Path;

use hacore::gate::{Request, evaluate};
use hacore::{Action, ClusterState, Decision, Policy, Severity, Topology};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    topology: Value,
    state: Value,
    #[serde(default)]
    edit: Edit,
    cases: Vec<Case>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Edit {
    /// JSON pointer -> value, applied to the state.
    #[serde(default)]
    set: serde_json::Map<String, Value>,
    /// JSON pointers removed from the state.
    #[serde(default)]
    remove: Vec<String>,
    /// JSON pointer -> value, applied to the topology.
    #[serde(default)]
    topology: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    action: String,
    target: String,
    #[serde(default)]
    policy: Option<Value>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    requester: Option<String>,
    /// Another state for this case (path or inline).
    #[serde(default)]
    state: Option<Value>,
    #[serde(default)]
    edit: Edit,
    #[serde(default)]
    expect: Option<Expect>,
    /// The state is refused against the topology: texts its errors say.
    #[serde(default)]
    refused: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Decision,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    unknown: Vec<String>,
    #[serde(default)]
    warn: Option<Vec<String>>,
    /// Substrings that must appear in some finding's message or remediation.
    #[serde(default)]
    says: Vec<String>,
}

fn load_value(base: &Path, v: &Value) -> Result<Value, String> {
    match v {
        Value::String(rel) => {
            let path = base.join(rel);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        other => Ok(other.clone()),
    }
}

fn set(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let (parent, key) = pointer
        .rsplit_once('/')
        .ok_or(format!("bad pointer {pointer}"))?;
    let target = doc
        .pointer_mut(parent)
        .ok_or(format!("no {parent} for {pointer}"))?;
    match target {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
        }
        Value::Array(a) if key == "-" => a.push(value),
        Value::Array(a) => {
            let i: usize = key.parse().map_err(|_| format!("bad index in {pointer}"))?;
            *a.get_mut(i).ok_or(format!("no index {pointer}"))? = value;
        }
        _ => return Err(format!("{parent} is not a container")),
    }
    Ok(())
}

fn apply(
    doc: &mut Value,
    sets: &serde_json::Map<String, Value>,
    removes: &[String],
) -> Result<(), String> {
    for (p, v) in sets {
        set(doc, p, v.clone())?;
    }
    for p in removes {
        let (parent, key) = p.rsplit_once('/').ok_or(format!("bad pointer {p}"))?;
        match doc.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(key).ok_or(format!("nothing at {p}"))?;
            }
            Some(Value::Array(a)) => {
                let i: usize = key.parse().map_err(|_| format!("bad index in {p}"))?;
                if i >= a.len() {
                    return Err(format!("nothing at {p}"));
                }
                a.remove(i);
            }
            _ => return Err(format!("nothing at {p}")),
        }
    }
    Ok(())
}

fn ids(v: &hacore::Verdict, s: Severity) -> BTreeSet<String> {
    v.findings
        .iter()
        .filter(|f| f.severity == s)
        .map(|f| f.rule.clone())
        .collect()
}

fn check(path: &Path) -> datatest_stable::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let sc: Scenario =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap();
    let topo0 = load_value(base, &sc.topology)?;
    let state0 = load_value(base, &sc.state)?;
    let mut failures = Vec::new();
    for case in &sc.cases {
        let run = || -> Result<(), String> {
            let mut topo = topo0.clone();
            let mut state = match &case.state {
                Some(v) => load_value(base, v)?,
                None => state0.clone(),
            };
            for e in [&sc.edit, &case.edit] {
                apply(&mut topo, &e.topology, &[])?;
                apply(&mut state, &e.set, &e.remove)?;
            }
            let topology: Topology =
                serde_json::from_value(topo).map_err(|e| format!("topology: {e}"))?;
            let report = topology.validate();
            if !report.errors.is_empty() {
                return Err(format!("topology invalid: {:?}", report.errors));
            }
            let state: ClusterState =
                serde_json::from_value(state).map_err(|e| format!("state: {e}"))?;
            let errs: Vec<_> = state
                .validate(&topology)
                .into_iter()
                .filter(|d| d.level == hacore::source::Level::Error)
                .collect();
            if !case.refused.is_empty() {
                if errs.is_empty() {
                    return Err("the state was accepted; expected it refused".into());
                }
                let all: Vec<String> = errs
                    .iter()
                    .map(|d| format!("{}: {}", d.path, d.message))
                    .collect();
                let all = all.join("\n");
                for s in &case.refused {
                    if !all.contains(s.as_str()) {
                        return Err(format!("the refusal does not say {s:?}:\n{all}"));
                    }
                }
                for destructive in ["member remove", "kubeadm reset", "kubectl delete"] {
                    if all.contains(destructive) {
                        return Err(format!("the refusal proposes `{destructive}`:\n{all}"));
                    }
                }
                return Ok(());
            }
            if !errs.is_empty() {
                return Err(format!("state invalid: {errs:?}"));
            }
            let Some(expect) = &case.expect else {
                return Err("a case needs `expect` or `refused`".into());
            };
            let action: Action = case.action.parse().map_err(|e| format!("{e}"))?;
            let policy = match &case.policy {
                None => Policy::for_action(action),
                Some(Value::String(s)) => match Policy::builtin(s) {
                    Some(p) => p,
                    None => Policy::load(&base.join(s)).map_err(|e| e.to_string())?,
                },
                Some(v) => {
                    let yaml = serde_json::to_string(v).unwrap();
                    Policy::from_yaml("inline policy", &yaml).map_err(|e| e.to_string())?
                }
            };
            let now = match &case.at {
                Some(t) => t.parse().map_err(|e| format!("at: {e}"))?,
                None => state.observed_at,
            };
            let req = Request {
                action,
                target: &case.target,
                requester: case.requester.as_deref(),
            };
            let v = evaluate(&topology, &state, &policy, &req, now).map_err(|e| e.to_string())?;
            let mut problems = Vec::new();
            if v.decision != expect.decision {
                problems.push(format!(
                    "decision {} (expected {})",
                    v.decision, expect.decision
                ));
            }
            let want_deny: BTreeSet<String> = expect.deny.iter().cloned().collect();
            let want_unknown: BTreeSet<String> = expect.unknown.iter().cloned().collect();
            if ids(&v, Severity::Deny) != want_deny {
                problems.push(format!(
                    "deny {:?} (expected {want_deny:?})",
                    ids(&v, Severity::Deny)
                ));
            }
            if ids(&v, Severity::Unknown) != want_unknown {
                problems.push(format!(
                    "unknown {:?} (expected {want_unknown:?})",
                    ids(&v, Severity::Unknown)
                ));
            }
            if let Some(w) = &expect.warn {
                let want: BTreeSet<String> = w.iter().cloned().collect();
                if ids(&v, Severity::Warn) != want {
                    problems.push(format!(
                        "warn {:?} (expected {want:?})",
                        ids(&v, Severity::Warn)
                    ));
                }
            }
            for s in &expect.says {
                let found = v.findings.iter().any(|f| {
                    f.message.contains(s.as_str())
                        || f.remediation
                            .as_deref()
                            .is_some_and(|r| r.contains(s.as_str()))
                });
                if !found {
                    problems.push(format!("no finding says {s:?}"));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                let detail: Vec<String> = v
                    .findings
                    .iter()
                    .map(|f| format!("    {} {}: {}", f.severity, f.rule, f.message))
                    .collect();
                Err(format!("{}\n{}", problems.join("; "), detail.join("\n")))
            }
        };
        if let Err(e) = run() {
            failures.push(format!("case `{}`: {e}", case.name));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        // The harness prints errors with Debug; print them readably first.
        eprintln!("{}:\n{}", path.display(), failures.join("\n"));
        Err(format!(
            "{} of {} case(s) failed (see above)",
            failures.len(),
            sc.cases.len()
        )
        .into())
    }
}

datatest_stable::harness! {
    { test = check, root = "tests/data/scenarios", pattern = r"\.yaml$" },
}
