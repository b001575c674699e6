//! Server-side printing: `kubectl get` asks for `meta.k8s.io` Tables
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...`) and prints
//! the columns the server chose. The stand-in answers as a real API server
//! does for nodes (NAME, STATUS, ROLES, AGE, VERSION; wide: INTERNAL-IP,
//! EXTERNAL-IP, OS-IMAGE, KERNEL-VERSION, CONTAINER-RUNTIME), pods (NAME,
//! READY, STATUS, RESTARTS, AGE; wide: IP, NODE, NOMINATED NODE, READINESS
//! GATES) and leases (NAME, HOLDER, AGE), and with the generic table (NAME,
//! CREATED AT) for the other resources.
//!
//! Each row carries the object as `includeObject` asks: `Metadata` (the
//! default) a `PartialObjectMetadata`, `Object` the whole object, `None`
//! nothing. `kubectl get -A` reads the namespace column from it.

use axum::http::HeaderMap;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::Resource;

/// The Table version asked for in `Accept`, if any: `v1` or `v1beta1`.
pub(super) fn requested(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    // The first acceptable media type wins, as on a real server.
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        if kind == "application/json" && param("as") == Some("Table") {
            if param("g") != Some("meta.k8s.io") {
                continue;
            }
            match param("v") {
                Some("v1") => return Some("v1"),
                Some("v1beta1") => return Some("v1beta1"),
                _ => continue,
            }
        }
        if kind == "application/json" || kind == "*/*" || kind == "application/*" {
            return None;
        }
    }
    None
}

/// What each row carries (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// From the query parameter; `Metadata` when absent.
    pub(super) fn parse(v: Option<&str>) -> Result<Include, String> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(format!(
                "includeObject: unsupported value \"{other}\": supported values are \"None\", \"Metadata\", \"Object\""
            )),
        }
    }
}

/// One column: name, OpenAPI type, format, description, priority (0 shown
/// always, 1 only with `-o wide`).
type Column = (&'static str, &'static str, &'static str, &'static str, u8);

const NAME: Column = (
    "Name",
    "string",
    "name",
    "The object's name, unique within its namespace (or the cluster, for cluster-scoped resources).",
    0,
);
const AGE: Column = (
    "Age",
    "string",
    "",
    "How long ago the object was created (metadata.creationTimestamp).",
    0,
);

const NODE: &[Column] = &[
    NAME,
    ("Status", "string", "", "The status of the node", 0),
    ("Roles", "string", "", "The roles of the node", 0),
    AGE,
    (
        "Version",
        "string",
        "",
        "The kubelet version the node reports (status.nodeInfo.kubeletVersion).",
        0,
    ),
    (
        "Internal-IP",
        "string",
        "",
        "The node's first InternalIP address.",
        1,
    ),
    (
        "External-IP",
        "string",
        "",
        "The node's first ExternalIP address.",
        1,
    ),
    (
        "OS-Image",
        "string",
        "",
        "The operating system the node reports.",
        1,
    ),
    (
        "Kernel-Version",
        "string",
        "",
        "The kernel version the node reports.",
        1,
    ),
    (
        "Container-Runtime",
        "string",
        "",
        "The container runtime and its version.",
        1,
    ),
];

const POD: &[Column] = &[
    NAME,
    (
        "Ready",
        "string",
        "",
        "The aggregate readiness state of this pod for accepting traffic.",
        0,
    ),
    (
        "Status",
        "string",
        "",
        "The aggregate status of the containers in this pod.",
        0,
    ),
    (
        "Restarts",
        "string",
        "",
        "How many times the pod's containers have restarted.",
        0,
    ),
    AGE,
    ("IP", "string", "", "The pod's IP address.", 1),
    ("Node", "string", "", "The node the pod is bound to.", 1),
    (
        "Nominated Node",
        "string",
        "",
        "The node the scheduler nominated for a preempting pod.",
        1,
    ),
    (
        "Readiness Gates",
        "string",
        "",
        "Readiness gates that are true, of those the pod declares.",
        1,
    ),
];

const LEASE: &[Column] = &[
    NAME,
    (
        "Holder",
        "string",
        "",
        "The identity of the current holder of the lease (spec.holderIdentity).",
        0,
    ),
    AGE,
];

const GENERIC: &[Column] = &[
    NAME,
    (
        "Created At",
        "date",
        "",
        "When the object was created (metadata.creationTimestamp).",
        0,
    ),
];

fn columns(r: &Resource) -> &'static [Column] {
    match (r.group, r.plural) {
        ("", "nodes") => NODE,
        ("", "pods") => POD,
        ("coordination.k8s.io", "leases") => LEASE,
        _ => GENERIC,
    }
}

/// The Table for `items` of resource `r`.
pub(super) fn table(
    r: &Resource,
    version: &str,
    items: &[Value],
    resource_version: &str,
    include: Include,
    now: Timestamp,
) -> Value {
    let defs: Vec<Value> = columns(r)
        .iter()
        .map(|(name, ty, format, description, priority)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    let api_version = format!("meta.k8s.io/{version}");
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": cells(r, obj, now) });
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": api_version,
                        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                    });
                }
                Include::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": defs,
        "rows": rows,
    })
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn age(obj: &Value, now: Timestamp) -> String {
    match s(obj, &["metadata", "creationTimestamp"]).and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => human_duration((now - t).as_secs()),
        None => "<unknown>".into(),
    }
}

fn cells(r: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = s(obj, &["metadata", "name"]).unwrap_or("").to_string();
    match (r.group, r.plural) {
        ("", "nodes") => {
            let info = |k: &str| {
                s(obj, &["status", "nodeInfo", k])
                    .filter(|v| !v.is_empty())
                    .unwrap_or("<unknown>")
                    .to_string()
            };
            vec![
                json!(name),
                json!(node_status(obj)),
                json!(node_roles(obj)),
                json!(age(obj, now)),
                json!(s(obj, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or("")),
                json!(node_address(obj, "InternalIP")),
                json!(node_address(obj, "ExternalIP")),
                json!(info("osImage")),
                json!(info("kernelVersion")),
                json!(info("containerRuntimeVersion")),
            ]
        }
        ("", "pods") => {
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: u64 = statuses
                .iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
                .sum();
            let none =
                |v: Option<&str>| v.filter(|v| !v.is_empty()).unwrap_or("<none>").to_string();
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(pod_status(obj, &statuses)),
                json!(restarts.to_string()),
                json!(age(obj, now)),
                json!(none(s(obj, &["status", "podIP"]))),
                json!(none(s(obj, &["spec", "nodeName"]))),
                json!(none(s(obj, &["status", "nominatedNodeName"]))),
                json!("<none>"),
            ]
        }
        ("coordination.k8s.io", "leases") => vec![
            json!(name),
            json!(s(obj, &["spec", "holderIdentity"]).unwrap_or("")),
            json!(age(obj, now)),
        ],
        _ => vec![
            json!(name),
            json!(s(obj, &["metadata", "creationTimestamp"]).unwrap_or("")),
        ],
    }
}

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, with
/// `,SchedulingDisabled` for a cordoned node.
fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut out = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        out.push_str(",SchedulingDisabled");
    }
    out
}

/// Roles from `node-role.kubernetes.io/ROLE` labels and the older
/// `kubernetes.io/role`, sorted; `<none>` without any.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|x| x.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_string()
}

/// The pod's phase, or its reason, or a container's waiting or terminated
/// reason; `Terminating` once it is being deleted.
fn pod_status(pod: &Value, statuses: &[Value]) -> String {
    let mut reason = s(pod, &["status", "reason"])
        .filter(|r| !r.is_empty())
        .or_else(|| s(pod, &["status", "phase"]))
        .unwrap_or("Unknown")
        .to_string();
    for c in statuses.iter().rev() {
        if let Some(r) = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    reason
}

/// A duration as `kubectl get` shows ages: seconds up to 2 minutes, then
/// minutes (with seconds below 10 minutes), hours (with minutes below 8
/// hours), days (with hours below 8 days), years (with days below 8 years).
pub(super) fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        return with_rest(mins, "m", secs % 60, "s");
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return with_rest(hours, "h", mins % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_rest(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_rest(n: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{n}{unit}")
    } else {
        format!("{n}{unit}{rest}{rest_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 7, "3h7m"),
            (47 * 3600, "47h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn accept_picks_the_first_acceptable_type() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::ACCEPT, v.parse().unwrap());
            requested(&m)
        };
        assert_eq!(
            h(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Some("v1")
        );
        assert_eq!(
            h("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("v1beta1")
        );
        assert_eq!(h("application/json"), None);
        assert_eq!(
            h("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
        assert_eq!(
            h("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"),
            None
        );
    }
}
