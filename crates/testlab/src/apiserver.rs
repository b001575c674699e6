//! A Kubernetes API stand-in: HTTPS with the lab's CA, bearer-token auth,
//! real Kubernetes JSON (every object is checked against its `k8s-openapi`
//! type on the way in), `resourceVersion`, optimistic concurrency on update
//! (409 Conflict), create (409 AlreadyExists), JSON merge patch, label and
//! field selectors, discovery (`/api`, `/apis`, `/version`), `/readyz`, and
//! server-side Tables for `kubectl get` (the `table` submodule).
//! `resourceVersion=0` reads (which a real apiserver may serve from its
//! watch cache) are answered like consistent ones, and every request is
//! counted by verb, path and consistency ([`Store::request_counts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::LabError;
use crate::pki::Pair;

mod table;

type Check = fn(Value) -> Result<Value, String>;

fn typed<K: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Result<Value, String> {
    let k: K = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(k).map_err(|e| e.to_string())
}

/// A resource the stand-in serves.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural name (the URL segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short: &'static [&'static str],
    check: Check,
}

impl Resource {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

use k8s_openapi::api as k;

/// Every resource served.
pub const RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        check: typed::<k::core::v1::Namespace>,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short: &["no"],
        check: typed::<k::core::v1::Node>,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        check: typed::<k::core::v1::Pod>,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        check: typed::<k::core::v1::ConfigMap>,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
        check: typed::<k::core::v1::Secret>,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short: &["ds"],
        check: typed::<k::apps::v1::DaemonSet>,
    },
    Resource {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short: &["pdb"],
        check: typed::<k::policy::v1::PodDisruptionBudget>,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short: &[],
        check: typed::<k::batch::v1::Job>,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short: &["cj"],
        check: typed::<k::batch::v1::CronJob>,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short: &[],
        check: typed::<k::coordination::v1::Lease>,
    },
];

fn resource(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[derive(Debug, Default)]
struct Db {
    rv: u64,
    uid: u64,
    /// (qualified resource, namespace, name) -> object.
    objects: BTreeMap<(String, String, String), Value>,
    not_ready: BTreeSet<IpAddr>,
    requests: u64,
    /// Requests answered, by what they asked.
    counted: BTreeMap<RequestKey, Counted>,
}

/// What a request asked, as the stand-in counts it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The Kubernetes verb: `get`, `list`, `create`, `update`, `patch`,
    /// `delete`, or the HTTP method for anything else (`GET` on `/readyz`).
    pub verb: String,
    /// The URL path (no query).
    pub path: String,
    /// The `labelSelector` and `fieldSelector` asked, `label;field`
    /// (empty: none: a list of everything).
    pub selector: String,
    /// Whether the request carried credentials (an `Authorization`
    /// header); HAProxy's health checks do not.
    pub authenticated: bool,
    /// Whether the read may be served from the apiserver's watch cache
    /// (`resourceVersion=0`); false: a consistent read, which a real
    /// apiserver sends to etcd (or a write).
    pub cached: bool,
}

/// How many requests of one kind, and the bytes of their answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Requests.
    pub requests: u64,
    /// Bytes of the answers' bodies.
    pub bytes: u64,
}

/// The stand-in's object store; clone freely.
#[derive(Clone, Default)]
pub struct Store {
    db: Arc<Mutex<Db>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// A store error, as the API would answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// Kubernetes `reason`.
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message,
            "reason": self.reason, "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

fn meta(v: &Value, field: &str) -> Option<String> {
    v.get("metadata")?.get(field)?.as_str().map(str::to_string)
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Eviction API (`POST .../pods/NAME/eviction`): delete the pod
    /// unless a PodDisruptionBudget of its namespace that selects it allows
    /// no disruption (then 429, the Kubernetes message); an allowed
    /// eviction uses one of the budget's `status.disruptionsAllowed`, as
    /// the disruption controller would account for it.
    pub fn evict(&self, ns: &str, name: &str) -> Result<Value, ApiError> {
        let pods = resource("", "v1", "pods").expect("pods are served");
        let pdbs = resource("policy", "v1", "poddisruptionbudgets").expect("pdbs are served");
        let pod = self.get(pods, ns, name)?;
        let labels = labels_of(&pod);
        let list = self.list(pdbs, Some(ns), None, None)?;
        let mut budgets = Vec::new();
        for pdb in list["items"].as_array().into_iter().flatten() {
            if selector_matches(&pdb["spec"]["selector"], &labels) {
                if pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1 {
                    return Err(ApiError::new(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    ));
                }
                budgets.push(pdb.clone());
            }
        }
        for mut pdb in budgets {
            let n = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            pdb["status"]["disruptionsAllowed"] = json!(n - 1);
            let pname = meta(&pdb, "name").unwrap_or_default();
            self.update(pdbs, ns, &pname, pdb)?;
        }
        self.remove(pods, ns, name)
            .ok_or_else(|| not_found(pods, name))?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    /// Create an object (`apiVersion` and `kind` pick the resource).
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        let r = resource_of(&obj)?;
        let ns = meta(&obj, "namespace").unwrap_or_default();
        self.create_in(r, &ns, obj)
    }

    /// Create, or replace whatever is there (no concurrency check).
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        let r = resource_of(&obj)?;
        let ns = meta(&obj, "namespace").unwrap_or_default();
        let name = meta(&obj, "name").unwrap_or_default();
        match self.get(r, &ns, &name) {
            Ok(_) => {
                let mut obj = obj;
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                self.update(r, &ns, &name, obj)
            }
            Err(_) => self.create_in(r, &ns, obj),
        }
    }

    /// Delete an object; Ok(None) if it was not there.
    pub fn remove(&self, r: &Resource, ns: &str, name: &str) -> Option<Value> {
        let mut db = self.lock();
        let v = db
            .objects
            .remove(&(r.qualified(), ns.to_string(), name.to_string()));
        if v.is_some() {
            db.rv += 1;
        }
        v
    }

    /// Mark `/readyz` on one listener address as failing (or passing again).
    pub fn set_ready(&self, ip: IpAddr, ready: bool) {
        let mut db = self.lock();
        if ready {
            db.not_ready.remove(&ip);
        } else {
            db.not_ready.insert(ip);
        }
    }

    /// How many requests the stand-in has answered.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// The requests answered so far, by verb, path and whether the watch
    /// cache could serve them.
    pub fn request_counts(&self) -> BTreeMap<RequestKey, Counted> {
        self.lock().counted.clone()
    }

    /// Forget the counts of [`Store::request_counts`] (not [`Store::requests`]).
    pub fn reset_request_counts(&self) {
        self.lock().counted.clear();
    }

    fn create_in(&self, r: &Resource, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let mut obj = (r.check)(with_type(r, obj)).map_err(|e| bad_request(r, &e))?;
        let mut db = self.lock();
        let m = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata is required"))?;
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match m.get("generateName").and_then(Value::as_str) {
                Some(g) => name = format!("{g}{:05x}", db.uid + 1),
                None => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            r.kind
                        ),
                    ));
                }
            }
        }
        if r.namespaced {
            let given = m.get("namespace").and_then(Value::as_str).unwrap_or("");
            if !given.is_empty() && given != ns {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        let key = (r.qualified(), ns.to_string(), name.clone());
        if db.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.qualified()),
            ));
        }
        db.rv += 1;
        db.uid += 1;
        m.insert("name".into(), json!(name));
        m.insert(
            "uid".into(),
            json!(format!("00000000-0000-4000-8000-{:012x}", db.uid)),
        );
        m.insert("resourceVersion".into(), json!(db.rv.to_string()));
        m.insert(
            "creationTimestamp".into(),
            json!(
                jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .unwrap_or_default()
                    .to_string()
            ),
        );
        db.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// Read one object.
    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&(r.qualified(), ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| not_found(r, name))
    }

    /// Replace an object; a non-empty `metadata.resourceVersion` must match.
    pub fn update(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let mut obj = (r.check)(with_type(r, obj)).map_err(|e| bad_request(r, &e))?;
        let mut db = self.lock();
        let key = (r.qualified(), ns.to_string(), name.to_string());
        let Some(old) = db.objects.get(&key) else {
            return Err(not_found(r, name));
        };
        let m = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata is required"))?;
        if m.get("name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        let given_rv = m
            .get("resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let old_rv = meta(old, "resourceVersion").unwrap_or_default();
        if !given_rv.is_empty() && given_rv != old_rv {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    r.qualified()
                ),
            ));
        }
        for keep in ["uid", "creationTimestamp"] {
            if let Some(v) = old["metadata"].get(keep) {
                m.insert(keep.into(), v.clone());
            }
        }
        if r.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        db.rv += 1;
        m.insert("resourceVersion".into(), json!(db.rv.to_string()));
        db.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// List objects of a resource (`ns` None: all namespaces), filtered.
    pub fn list(
        &self,
        r: &Resource,
        ns: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let labels = labels.map(LabelSelector::parse).transpose().map_err(|e| {
            ApiError::new(
                400,
                "BadRequest",
                format!("unable to parse requirement: {e}"),
            )
        })?;
        let fields = fields.map(FieldSelector::parse).transpose().map_err(|e| {
            ApiError::new(400, "BadRequest", format!("invalid field selector: {e}"))
        })?;
        let db = self.lock();
        let q = r.qualified();
        let items: Vec<Value> = db
            .objects
            .iter()
            .filter(|((res, n, _), _)| *res == q && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .filter(|v| labels.as_ref().is_none_or(|s| s.matches(v)))
            .filter(|v| fields.as_ref().is_none_or(|s| s.matches(v)))
            .cloned()
            .collect();
        Ok(json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": { "resourceVersion": db.rv.to_string() },
            "items": items,
        }))
    }
}

fn with_type(r: &Resource, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(r.api_version()));
        m.entry("kind").or_insert_with(|| json!(r.kind));
    }
    obj
}

fn resource_of(obj: &Value) -> Result<&'static Resource, ApiError> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
    RESOURCES
        .iter()
        .find(|r| r.group == g && r.version == v && r.kind == kind)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("no resource for apiVersion `{av}` kind `{kind}`"),
            )
        })
}

fn not_found(r: &Resource, name: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", r.qualified()),
    )
}

fn bad_request(r: &Resource, e: &str) -> ApiError {
    ApiError::new(400, "BadRequest", format!("invalid {} object: {e}", r.kind))
}

/// Whether a `LabelSelector` object (`matchLabels`, `matchExpressions`)
/// selects `labels`; an empty or missing selector selects everything.
fn selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    let ml = sel["matchLabels"].as_object().cloned().unwrap_or_default();
    let labels_ok = ml.iter().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).and_then(Value::as_str);
            match e["operator"].as_str().unwrap_or("") {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        });
    labels_ok && exprs_ok
}

/// `metadata.labels` of an object.
fn labels_of(v: &Value) -> Map<String, Value> {
    v.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

#[derive(Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`a=b,c!=d,e in (f,g),!h,i`).
#[derive(Debug)]
pub struct LabelSelector(Vec<Req>);

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("`{s}`: expected (v1,v2)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parse.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_top(s) {
            let r = if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Req::In(k.trim().into(), set_values(v)?)
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(term.to_string())
            } else {
                return Err(format!("`{term}`"));
            };
            reqs.push(r);
        }
        Ok(LabelSelector(reqs))
    }

    fn matches(&self, v: &Value) -> bool {
        let labels = labels_of(v);
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, val) => get(k) == Some(val),
            Req::Ne(k, val) => get(k) != Some(val),
            Req::In(k, vals) => get(k).is_some_and(|x| vals.iter().any(|v| v == x)),
            Req::NotIn(k, vals) => get(k).is_none_or(|x| vals.iter().all(|v| v != x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=y`).
#[derive(Debug)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("`{term}`: expected field=value or field!=value"));
            };
            out.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    fn matches(&self, v: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(v);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            (got == *want) == *eq
        })
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(_)) => {
            *target = json!({});
            merge_patch(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

#[derive(Clone)]
struct Ctx {
    store: Store,
    token: Arc<String>,
    local: IpAddr,
}

fn json_response(code: u16, v: &Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn err_response(e: ApiError) -> Response {
    json_response(e.code, &e.status())
}

fn discovery(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "shortNames": r.short,
                "verbs": ["create", "delete", "get", "list", "patch", "update"],
            })
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })
}

fn groups() -> Value {
    let mut names: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    names.dedup();
    let groups: Vec<Value> = names
        .into_iter()
        .map(|g| {
            let gv = json!({ "groupVersion": format!("{g}/v1"), "version": "v1" });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(pct_decode(k), pct_decode(v));
    }
    out
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(x) => {
                    out.push(x);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answer, and count the request by verb, path and consistency.
async fn handle(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = query(&uri);
    let path = uri.path().trim_end_matches('/').to_string();
    let authenticated = headers.contains_key(http::header::AUTHORIZATION);
    let selector = match (q.get("labelSelector"), q.get("fieldSelector")) {
        (None, None) => String::new(),
        (l, f) => format!(
            "{};{}",
            l.map(String::as_str).unwrap_or(""),
            f.map(String::as_str).unwrap_or("")
        ),
    };
    let store = ctx.store.clone();
    let resp = answer(ctx, method.clone(), uri, headers, body).await;
    let bytes = axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .unwrap_or_else(|| axum::body::HttpBody::size_hint(resp.body()).lower());
    let cached = method == Method::GET && q.get("resourceVersion").is_some_and(|rv| rv == "0");
    let verb = match method {
        Method::GET if is_collection(&path) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                "watch".to_string()
            } else {
                "list".to_string()
            }
        }
        Method::GET if path.starts_with("/api/") || path.starts_with("/apis/") => "get".into(),
        Method::POST if path.starts_with("/api/") || path.starts_with("/apis/") => "create".into(),
        Method::PUT => "update".into(),
        Method::PATCH => "patch".into(),
        Method::DELETE => "delete".into(),
        m => m.to_string(),
    };
    let mut db = store.lock();
    db.requests += 1;
    let c = db
        .counted
        .entry(RequestKey {
            verb,
            path,
            selector,
            authenticated,
            cached,
        })
        .or_default();
    c.requests += 1;
    c.bytes += bytes;
    resp
}

/// `resourceVersion` and `resourceVersionMatch` on a list, as the
/// apiserver validates them: `0` (or none) may be served from the watch
/// cache or must be consistent; the stand-in always answers its current
/// state, which both allow.
fn list_version_match(q: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let invalid = |m: String| {
        Err(ApiError::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {m}"),
        ))
    };
    match q.get("resourceVersionMatch").map(String::as_str) {
        None | Some("") => Ok(()),
        Some(_) if rv.is_empty() => invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
        ),
        Some("Exact") if rv == "0" => invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
        ),
        Some("Exact" | "NotOlderThan") => Ok(()),
        Some(m) => invalid(format!(
            "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
        )),
    }
}

/// Whether a path names a collection of a served resource (a list), not
/// one object.
fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return false,
    };
    match rest {
        [p] => RESOURCES.iter().any(|r| r.plural == *p),
        ["namespaces", _, p] => RESOURCES.iter().any(|r| r.plural == *p),
        _ => false,
    }
}

/// The API's answer to one request: the public endpoints, then (with the
/// token) discovery, the Eviction API, and the objects of one resource.
async fn answer(ctx: Ctx, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(resp) = public(&ctx, &segs) {
        return resp;
    }
    let authorized = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| t == ctx.token.as_str());
    if !authorized {
        return err_response(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let (group, version, rest) = match api_path(&ctx, &segs) {
        ApiPath::Objects(group, version, rest) => (group, version, rest),
        ApiPath::Answered(resp) => return resp,
    };
    // The Eviction API: the pods/eviction subresource.
    if group.is_empty()
        && let ["namespaces", ns, "pods", name, "eviction"] = rest
    {
        return eviction(&ctx, &method, ns, name);
    }
    let req = ObjectRequest {
        ctx: &ctx,
        method: &method,
        headers: &headers,
        body: &body,
        q: query(&uri),
    };
    objects(&req, group, version, rest)
}

/// The endpoints anyone may read (system:public-info-viewer).
fn public(ctx: &Ctx, segs: &[&str]) -> Option<Response> {
    match segs {
        ["readyz"] | ["livez"] | ["healthz"] => {
            let ready = !ctx.store.lock().not_ready.contains(&ctx.local);
            Some(if ready {
                (StatusCode::OK, "ok").into_response()
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]etcd failed: reason withheld\nreadyz check failed",
                )
                    .into_response()
            })
        }
        ["version"] => Some(json_response(
            200,
            &json!({
                "major": "1", "minor": "32", "gitVersion": "v1.32.0-hacli-testlab",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
                "platform": "linux/amd64",
            }),
        )),
        _ => None,
    }
}

/// What the API answers for a path it does not serve.
fn path_not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Where a path leads, after the public endpoints.
enum ApiPath<'a> {
    /// Discovery, or a path the API does not serve: the answer.
    Answered(Response),
    /// The objects of a group and version: the rest of the path.
    Objects(&'a str, &'a str, &'a [&'a str]),
}

/// Discovery answered (`/api`, `/apis`, `/api/v1`, `/apis/G/V`), or the
/// group, version and the rest of an object's path.
fn api_path<'a>(ctx: &Ctx, segs: &'a [&'a str]) -> ApiPath<'a> {
    match segs {
        ["api"] => ApiPath::Answered(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:443", ctx.local)}]}),
        )),
        ["apis"] => ApiPath::Answered(json_response(200, &groups())),
        ["api", "v1"] => ApiPath::Answered(json_response(200, &discovery("", "v1"))),
        ["apis", g, v] => ApiPath::Answered(
            if RESOURCES.iter().any(|r| r.group == *g && r.version == *v) {
                json_response(200, &discovery(g, v))
            } else {
                err_response(path_not_found())
            },
        ),
        ["api", "v1", rest @ ..] => ApiPath::Objects("", "v1", rest),
        ["apis", g, v, rest @ ..] => ApiPath::Objects(g, v, rest),
        _ => ApiPath::Answered(err_response(path_not_found())),
    }
}

/// `POST .../namespaces/NS/pods/NAME/eviction`.
fn eviction(ctx: &Ctx, method: &Method, ns: &str, name: &str) -> Response {
    if *method != Method::POST {
        return err_response(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on pods/eviction"),
        ));
    }
    match ctx.store.evict(ns, name) {
        Ok(v) => json_response(201, &v),
        Err(e) => err_response(e),
    }
}

/// A request for the objects of one resource, as its handlers see it.
struct ObjectRequest<'a> {
    ctx: &'a Ctx,
    method: &'a Method,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    q: BTreeMap<String, String>,
}

impl ObjectRequest<'_> {
    fn parse_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::new(400, "BadRequest", format!("request body is not JSON: {e}")))
    }
}

/// The objects of one resource: `rest` is `[plural]`, `[plural, name]`,
/// `[namespaces, ns, plural]` or `[namespaces, ns, plural, name]`.
fn objects(req: &ObjectRequest<'_>, group: &str, version: &str, rest: &[&str]) -> Response {
    let (ns, plural, name): (Option<&str>, &str, Option<&str>) = match rest {
        [p] => (None, p, None),
        ["namespaces", n] if group.is_empty() => (None, "namespaces", Some(n)),
        [p, n] => (None, p, Some(n)),
        ["namespaces", ns, p] => (Some(ns), p, None),
        ["namespaces", ns, p, n] => (Some(ns), p, Some(n)),
        _ => return err_response(path_not_found()),
    };
    let Some(r) = resource(group, version, plural) else {
        return err_response(path_not_found());
    };
    if r.namespaced && name.is_some() && ns.is_none() {
        return err_response(path_not_found());
    }
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    if !req.body.is_empty() && !content_type.contains("json") {
        return err_response(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json; got {content_type}"
            ),
        ));
    }
    // `kubectl get` asks for server-side Tables.
    let table_version = if *req.method == Method::GET {
        table::requested(req.headers)
    } else {
        None
    };
    let include = match table::Include::parse(req.q.get("includeObject").map(String::as_str)) {
        Ok(i) => i,
        Err(e) => return err_response(ApiError::new(400, "BadRequest", e)),
    };
    let result = verb(req, r, ns, name);
    match (result, table_version) {
        (Ok((code, v)), Some(version)) => {
            json_response(code, &as_table(r, version, name.is_some(), v, include))
        }
        (Ok((code, v)), None) => json_response(code, &v),
        (Err(e), _) => err_response(e),
    }
}

/// List, get, create, update, patch or delete, by method and whether the
/// path names an object.
fn verb(
    req: &ObjectRequest<'_>,
    r: &'static Resource,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<(u16, Value), ApiError> {
    let store = &req.ctx.store;
    let ns_str = if r.namespaced { ns.unwrap_or("") } else { "" };
    let q = &req.q;
    match (req.method.clone(), name) {
        (Method::GET, None) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "watch is not supported by the test lab",
                ))
            } else if let Err(e) = list_version_match(q) {
                Err(e)
            } else {
                store
                    .list(
                        r,
                        ns,
                        q.get("labelSelector").map(String::as_str),
                        q.get("fieldSelector").map(String::as_str),
                    )
                    .map(|v| (200, v))
            }
        }
        (Method::GET, Some(n)) => store.get(r, ns_str, n).map(|v| (200, v)),
        (Method::POST, None) => req
            .parse_body()
            .and_then(|b| store.create_in(r, ns_str, b))
            .map(|v| (201, v)),
        (Method::PUT, Some(n)) => req
            .parse_body()
            .and_then(|b| store.update(r, ns_str, n, b))
            .map(|v| (200, v)),
        (Method::PATCH, Some(n)) => patch(req, r, ns_str, n),
        (Method::DELETE, Some(n)) => store
            .remove(r, ns_str, n)
            .map(|v| (200, v))
            .ok_or_else(|| not_found(r, n)),
        (method, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}

/// A merge patch (JSON or strategic: the lab applies both as merge patches).
fn patch(
    req: &ObjectRequest<'_>,
    r: &'static Resource,
    ns_str: &str,
    n: &str,
) -> Result<(u16, Value), ApiError> {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !(ct.starts_with("application/merge-patch+json")
        || ct.starts_with("application/strategic-merge-patch+json"))
    {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the test lab applies merge patches only, not `{ct}`"),
        ));
    }
    let store = &req.ctx.store;
    req.parse_body()
        .and_then(|p| {
            let mut cur = store.get(r, ns_str, n)?;
            merge_patch(&mut cur, &p);
            store.update(r, ns_str, n, cur)
        })
        .map(|v| (200, v))
}

/// An answer as the server-side Table `kubectl get` asked for.
fn as_table(
    r: &Resource,
    version: &'static str,
    one: bool,
    v: Value,
    include: table::Include,
) -> Value {
    let (items, rv) = if one {
        let rv = meta(&v, "resourceVersion").unwrap_or_default();
        (vec![v], rv)
    } else {
        let rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        (items, rv)
    };
    table::table(r, version, &items, &rv, include, jiff::Timestamp::now())
}

/// The running stand-in.
#[derive(Debug)]
pub struct ApiServer {
    /// The object store behind it.
    pub store: Store,
    /// Port it listens on, on every address in `addrs`.
    pub port: u16,
    /// Addresses it listens on.
    pub addrs: Vec<IpAddr>,
    /// Per address: whether its "process" runs (see [`ApiServer::kill`]).
    alive: Vec<tokio::sync::watch::Sender<bool>>,
}

/// Bind `port` (0: a free one) on every address; retried with a new port
/// when one address has it taken.
fn bind_all(ips: &[IpAddr]) -> Result<(u16, Vec<std::net::TcpListener>), LabError> {
    let mut last = None;
    for _ in 0..20 {
        let first = std::net::TcpListener::bind(SocketAddr::new(ips[0], 0))
            .map_err(|e| LabError::Bind(ips[0].to_string(), e))?;
        let port = first
            .local_addr()
            .map_err(|e| LabError::Bind(ips[0].to_string(), e))?
            .port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match std::net::TcpListener::bind(SocketAddr::new(*ip, port)) {
                Ok(l) => all.push(l),
                Err(e) => {
                    last = Some(LabError::Bind(format!("{ip}:{port}"), e));
                    break;
                }
            }
        }
        if all.len() == ips.len() {
            return Ok((port, all));
        }
    }
    Err(last.unwrap_or_else(|| LabError::Pki("no port".into())))
}

impl ApiServer {
    /// Serve on one port on every address in `ips`, on `rt`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        ips: &[IpAddr],
        pair: &Pair,
        token: &str,
        store: Store,
    ) -> Result<ApiServer, LabError> {
        let acceptor = crate::pki::acceptor(pair, &[b"h2", b"http/1.1"], "apiserver")?;
        let (port, listeners) = bind_all(ips)?;
        let token = Arc::new(token.to_string());
        let mut alive = Vec::new();
        for (ip, l) in ips.iter().zip(listeners) {
            l.set_nonblocking(true)
                .map_err(|e| LabError::Bind(ip.to_string(), e))?;
            let ctx = Ctx {
                store: store.clone(),
                token: token.clone(),
                local: *ip,
            };
            let app = Router::new().fallback(handle).with_state(ctx);
            let acceptor = acceptor.clone();
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(l)
                .map_err(|e| LabError::Bind(ip.to_string(), e))?;
            let (up, mut up_rx) = tokio::sync::watch::channel(true);
            alive.push(up);
            let addr = SocketAddr::new(*ip, port);
            rt.spawn(async move {
                let mut listener = Some(listener);
                let mut watching = true;
                loop {
                    // Killed: the port is closed (connections are refused)
                    // until revived, when it is bound again.
                    if !*up_rx.borrow_and_update() {
                        listener = None;
                        if up_rx.wait_for(|up| *up).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let l = match &listener {
                        Some(l) => l,
                        None => match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => listener.insert(l),
                            Err(_) => {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                continue;
                            }
                        },
                    };
                    // Without its handle (ApiServer dropped) nothing can
                    // kill it: just serve.
                    let accepted = if watching {
                        tokio::select! {
                            a = l.accept() => a,
                            changed = up_rx.changed() => {
                                watching = changed.is_ok();
                                continue;
                            }
                        }
                    } else {
                        l.accept().await
                    };
                    let Ok((tcp, _)) = accepted else {
                        continue;
                    };
                    let mut conn_up = up_rx.clone();
                    // As Go's net/http (the real apiserver) does: without it,
                    // Nagle holds an HTTP/2 DATA frame behind the HEADERS
                    // frame until the client's delayed ACK, 40 ms later.
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let serve = async {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let svc = hyper_util::service::TowerToHyperService::new(app);
                            let _ = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                        };
                        // A killed process's connections die with it.
                        let killed = async {
                            if conn_up.wait_for(|up| !*up).await.is_err() {
                                // The handle is gone: nothing kills it.
                                std::future::pending::<()>().await;
                            }
                        };
                        tokio::select! {
                            () = serve => {}
                            () = killed => {}
                        }
                    });
                }
            });
        }
        Ok(ApiServer {
            store,
            port,
            addrs: ips.to_vec(),
            alive,
        })
    }

    /// Kill the apiserver on `ip` as a crash or a powered-off VM would:
    /// its port is closed (new connections are refused) and its open
    /// connections are dropped. [`ApiServer::revive`] starts it again.
    /// False when it does not listen on `ip`.
    pub fn kill(&self, ip: IpAddr) -> bool {
        self.set_alive(ip, false)
    }

    /// Start the apiserver on `ip` again after [`ApiServer::kill`].
    pub fn revive(&self, ip: IpAddr) -> bool {
        self.set_alive(ip, true)
    }

    fn set_alive(&self, ip: IpAddr, up: bool) -> bool {
        match self.addrs.iter().position(|a| *a == ip) {
            Some(i) => {
                self.alive[i].send_replace(up);
                true
            }
            None => false,
        }
    }

    /// The resource definition for a plural name, e.g. `leases`.
    pub fn resource(plural: &str) -> &'static Resource {
        RESOURCES
            .iter()
            .find(|r| r.plural == plural)
            .unwrap_or_else(|| panic!("the lab serves no resource `{plural}`"))
    }
}
