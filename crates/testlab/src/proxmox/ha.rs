//! The stand-in's HA configuration (`/cluster/ha/*`), as pve-ha-manager
//! keeps it: HA resources (`vm:ID`, with state and comment) and HA rules
//! (`node-affinity`, `resource-affinity` with `affinity` positive or
//! negative), each with a digest; `GET /cluster/ha/status/current` lists the
//! resources with the node their VM runs on.
//!
//! What pve-ha-manager says and does that a client meets: a resource id is
//! `vm:ID` (a bare VM id means `vm:ID`); creating one that exists answers
//! `resource ID 'vm:ID' already defined`, one whose VM does not exist
//! `unable to find VM ID`; reading or deleting a missing resource or rule
//! answers `no such resource`/`no such ha rule`; destroying a VM that is an
//! HA resource without `purge` is refused (`unable to remove VM ID - used in
//! HA resources and purge parameter not set.`), with `purge` the resource
//! leaves the HA configuration and every rule. The stand-in keeps the
//! configuration only: no CRM runs, nothing is relocated.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ApiResult, State, fail, truthy};

/// One HA resource.
#[derive(Debug, Clone)]
pub(super) struct Resource {
    state: String,
    comment: Option<String>,
    max_restart: u32,
    max_relocate: u32,
}

/// One HA rule.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    ty: String,
    resources: Vec<String>,
    affinity: Option<String>,
    nodes: Option<String>,
    strict: bool,
    comment: Option<String>,
    disable: bool,
}

/// The HA configuration.
#[derive(Debug, Clone, Default)]
pub(super) struct Ha {
    resources: BTreeMap<String, Resource>,
    rules: BTreeMap<String, Rule>,
    /// Bumped on every change: the digest of both files.
    generation: u64,
}

impl Ha {
    fn digest(&self) -> String {
        format!("{:040x}", 0x5eed_u64.wrapping_mul(self.generation + 1))
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    /// Whether VM `vmid` is an HA resource.
    pub(super) fn manages(&self, vmid: u32) -> bool {
        self.resources.contains_key(&format!("vm:{vmid}"))
    }

    /// A destroyed VM (with `purge`) leaves the resources and every rule.
    pub(super) fn purge(&mut self, vmid: u32) {
        let sid = format!("vm:{vmid}");
        if self.resources.remove(&sid).is_some() {
            self.changed();
        }
        for r in self.rules.values_mut() {
            r.resources.retain(|s| *s != sid);
        }
    }
}

/// `vm:ID` for `ID`, as pve-ha-manager reads a VM id.
fn sid(raw: &str) -> String {
    if raw.chars().all(|c| c.is_ascii_digit()) {
        format!("vm:{raw}")
    } else {
        raw.to_string()
    }
}

fn list(v: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .split([',', ';', ' '])
        .filter(|s| !s.is_empty())
        .map(sid)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn resource_entry(sid: &str, r: &Resource, digest: &str) -> Value {
    let mut e = json!({
        "sid": sid, "type": "vm", "state": r.state, "digest": digest,
        "max_restart": r.max_restart, "max_relocate": r.max_relocate,
    });
    if let Some(c) = &r.comment {
        e["comment"] = json!(c);
    }
    e
}

fn rule_entry(name: &str, r: &Rule, order: usize, digest: &str) -> Value {
    let mut e = json!({
        "rule": name, "type": r.ty, "resources": r.resources.join(","),
        "order": order, "digest": digest,
    });
    if let Some(a) = &r.affinity {
        e["affinity"] = json!(a);
    }
    if let Some(n) = &r.nodes {
        e["nodes"] = json!(n);
        e["strict"] = json!(u8::from(r.strict));
    }
    if let Some(c) = &r.comment {
        e["comment"] = json!(c);
    }
    if r.disable {
        e["disable"] = json!(1);
    }
    e
}

/// The `/cluster/ha/*` endpoints.
pub(super) fn dispatch(
    s: &mut State,
    method: &str,
    template: &str,
    p: &BTreeMap<String, String>,
) -> ApiResult {
    let digest = s.ha.digest();
    match (method, template) {
        ("GET", "/cluster/ha/resources") => Ok(Value::Array(
            s.ha.resources
                .iter()
                .map(|(sid, r)| resource_entry(sid, r, &digest))
                .collect(),
        )),
        ("POST", "/cluster/ha/resources") => {
            let id = sid(p.get("sid").map(String::as_str).unwrap_or_default());
            if s.ha.resources.contains_key(&id) {
                return Err(fail(500, format!("resource ID '{id}' already defined")));
            }
            let vmid: u32 = id
                .strip_prefix("vm:")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| fail(500, format!("unsupported resource type in '{id}'")))?;
            if !s.vms.contains_key(&vmid) {
                return Err(fail(500, format!("unable to find VM {vmid}")));
            }
            s.ha.resources.insert(
                id,
                Resource {
                    state: p.get("state").cloned().unwrap_or_else(|| "started".into()),
                    comment: p.get("comment").cloned(),
                    max_restart: p
                        .get("max_restart")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    max_relocate: p
                        .get("max_relocate")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                },
            );
            s.ha.changed();
            Ok(Value::Null)
        }
        ("GET", "/cluster/ha/resources/{sid}") => {
            let id = sid(&p["sid"]);
            match s.ha.resources.get(&id) {
                Some(r) => Ok(resource_entry(&id, r, &digest)),
                None => Err(fail(500, format!("no such resource '{id}'"))),
            }
        }
        ("PUT", "/cluster/ha/resources/{sid}") => {
            let id = sid(&p["sid"]);
            check_digest(p, &digest)?;
            let r =
                s.ha.resources
                    .get_mut(&id)
                    .ok_or_else(|| fail(500, format!("no such resource '{id}'")))?;
            if let Some(v) = p.get("state") {
                r.state = v.clone();
            }
            if let Some(v) = p.get("comment") {
                r.comment = Some(v.clone());
            }
            if p.get("delete").is_some_and(|d| d.contains("comment")) {
                r.comment = None;
            }
            s.ha.changed();
            Ok(Value::Null)
        }
        ("DELETE", "/cluster/ha/resources/{sid}") => {
            let id = sid(&p["sid"]);
            if s.ha.resources.remove(&id).is_none() {
                return Err(fail(
                    500,
                    format!("cannot delete service '{id}', not HA managed!"),
                ));
            }
            if p.get("purge").is_none_or(|v| truthy(Some(v))) {
                for r in s.ha.rules.values_mut() {
                    r.resources.retain(|x| *x != id);
                }
            }
            s.ha.changed();
            Ok(Value::Null)
        }
        ("GET", "/cluster/ha/rules") => {
            let ty = p.get("type");
            let res = p.get("resource").map(|r| sid(r));
            Ok(Value::Array(
                s.ha.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, r))| ty.is_none_or(|t| *t == r.ty))
                    .filter(|(_, (_, r))| res.as_ref().is_none_or(|x| r.resources.contains(x)))
                    .map(|(i, (name, r))| rule_entry(name, r, i + 1, &digest))
                    .collect(),
            ))
        }
        ("POST", "/cluster/ha/rules") => {
            let name = p["rule"].clone();
            if s.ha.rules.contains_key(&name) {
                return Err(fail(500, format!("ha rule '{name}' already defined")));
            }
            let rule = Rule {
                ty: p["type"].clone(),
                resources: list(&p["resources"]),
                affinity: p.get("affinity").cloned(),
                nodes: p.get("nodes").cloned(),
                strict: truthy(p.get("strict")),
                comment: p.get("comment").cloned(),
                disable: truthy(p.get("disable")),
            };
            check_rule(&rule)?;
            s.ha.rules.insert(name, rule);
            s.ha.changed();
            Ok(Value::Null)
        }
        ("GET", "/cluster/ha/rules/{rule}") => {
            let name = &p["rule"];
            let order = s.ha.rules.keys().position(|k| k == name).unwrap_or(0) + 1;
            match s.ha.rules.get(name) {
                Some(r) => Ok(rule_entry(name, r, order, &digest)),
                None => Err(fail(500, format!("no such ha rule '{name}'"))),
            }
        }
        ("PUT", "/cluster/ha/rules/{rule}") => {
            let name = p["rule"].clone();
            check_digest(p, &digest)?;
            let mut rule =
                s.ha.rules
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| fail(500, format!("no such ha rule '{name}'")))?;
            if p["type"] != rule.ty {
                return Err(fail(500, format!("rule '{name}' is of type '{}'", rule.ty)));
            }
            if let Some(v) = p.get("resources") {
                rule.resources = list(v);
            }
            if let Some(v) = p.get("affinity") {
                rule.affinity = Some(v.clone());
            }
            if let Some(v) = p.get("nodes") {
                rule.nodes = Some(v.clone());
            }
            if let Some(v) = p.get("comment") {
                rule.comment = Some(v.clone());
            }
            if p.contains_key("disable") {
                rule.disable = truthy(p.get("disable"));
            }
            check_rule(&rule)?;
            s.ha.rules.insert(name, rule);
            s.ha.changed();
            Ok(Value::Null)
        }
        ("DELETE", "/cluster/ha/rules/{rule}") => {
            let name = &p["rule"];
            if s.ha.rules.remove(name).is_none() {
                return Err(fail(500, format!("no such ha rule '{name}'")));
            }
            s.ha.changed();
            Ok(Value::Null)
        }
        ("GET", "/cluster/ha/status/current") => {
            let mut out = vec![
                json!({"id": "quorum", "type": "quorum", "node": s.nodes.first().map(|n| n.name.clone()).unwrap_or_default(), "status": "OK", "quorate": 1}),
            ];
            for (id, r) in &s.ha.resources {
                let vmid: u32 = id.trim_start_matches("vm:").parse().unwrap_or(0);
                let node = s.vms.get(&vmid).map(|v| v.node.clone()).unwrap_or_default();
                out.push(json!({"id": format!("service:{id}"), "sid": id, "type": "service", "node": node,
                    "state": r.state, "status": format!("{id} ({node}, {})", r.state),
                    "max_restart": r.max_restart, "max_relocate": r.max_relocate}));
            }
            Ok(Value::Array(out))
        }
        _ => Err(fail(
            501,
            format!("Method '{method} {template}' not implemented"),
        )),
    }
}

fn check_digest(
    p: &BTreeMap<String, String>,
    digest: &str,
) -> Result<(), (u16, String, BTreeMap<String, String>)> {
    match p.get("digest") {
        Some(d) if d != digest => Err(fail(
            500,
            "detected modified configuration - file changed by other user? Try again.",
        )),
        _ => Ok(()),
    }
}

/// What pve-ha-manager checks of a rule's own fields.
fn check_rule(r: &Rule) -> Result<(), (u16, String, BTreeMap<String, String>)> {
    let mut errors = BTreeMap::new();
    match r.ty.as_str() {
        "resource-affinity" => {
            if r.affinity.is_none() {
                errors.insert(
                    "affinity".into(),
                    "property is missing and it is not optional".into(),
                );
            }
            if r.resources.len() < 2 {
                errors.insert(
                    "resources".into(),
                    "rule must specify at least two resources for resource affinity".into(),
                );
            }
        }
        _ => {
            if r.nodes.is_none() {
                errors.insert(
                    "nodes".into(),
                    "property is missing and it is not optional".into(),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err((400, "Parameter verification failed.".into(), errors))
    }
}
