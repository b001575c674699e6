//! The async API client and its typed helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::task::{TaskOutcome, Upid, outcome};

/// Characters escaped in a path segment (a node name, a UPID, a snapshot).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'%')
    .add(b'"')
    .add(b'<')
    .add(b'>');

/// What `sshkeys` expects: keys one per line, percent-encoded (space as
/// `%20`, as JavaScript's `encodeURIComponent`); the form encoding then
/// encodes the `%` again.
const SSHKEYS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Encode public keys for the `sshkeys` parameter (before form encoding).
pub fn encode_sshkeys(keys: &[String]) -> String {
    let joined: Vec<&str> = keys.iter().map(|k| k.trim()).collect();
    utf8_percent_encode(&joined.join("\n"), SSHKEYS).to_string()
}

/// A Proxmox VE API client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    token_id: String,
    poll_first: Duration,
    poll_cap: Duration,
    request_timeout: Duration,
    calls: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("token_id", &self.inner.token_id)
            .finish_non_exhaustive()
    }
}

/// Parameters of a request (query for GET/DELETE, form for POST/PUT).
pub type Params = Vec<(String, String)>;

fn p(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Whether a transport error is TLS refusing the server (a certificate that
/// does not verify): not worth another try.
fn tls_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r.to_string());
    }
    // io::Error::source() skips the error it wraps: look inside.
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(found) = tls_refusal(inner)
    {
        return Some(found);
    }
    e.source().and_then(tls_refusal)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn uint(v: &Value) -> Option<u64> {
    num(v).filter(|f| *f >= 0.0).map(|f| f as u64)
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A cluster node as `GET /nodes` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// Physical memory, bytes (online nodes).
    pub maxmem: Option<u64>,
    /// CPUs (online nodes).
    pub maxcpu: Option<f64>,
}

/// `GET /nodes/{node}/status`, the parts a planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Physical memory, bytes.
    pub memory_total: u64,
    /// Used memory, bytes.
    pub memory_used: u64,
    /// Logical CPUs.
    pub cpus: u32,
}

/// A VM as `GET /nodes/{node}/qemu` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuEntry {
    /// VM id.
    pub vmid: u32,
    /// Name.
    pub name: Option<String>,
    /// `running` or `stopped`.
    pub status: String,
    /// Configured memory, bytes.
    pub maxmem: Option<u64>,
    /// vCPUs.
    pub cpus: Option<f64>,
    /// A template.
    pub template: bool,
    /// The lock, if any.
    pub lock: Option<String>,
}

/// A VM as `GET /cluster/resources?type=vm` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterVm {
    /// VM id.
    pub vmid: u32,
    /// Name.
    pub name: Option<String>,
    /// Node it is on.
    pub node: String,
    /// `running` or `stopped`.
    pub status: String,
    /// Configured memory, bytes.
    pub maxmem: Option<u64>,
    /// vCPUs.
    pub maxcpu: Option<f64>,
    /// A template.
    pub template: bool,
    /// The lock, if any.
    pub lock: Option<String>,
    /// Its tags (`tags`, split on `;`, `,` and spaces).
    pub tags: Vec<String>,
}

/// `GET .../status/current`.
#[derive(Debug, Clone, PartialEq)]
pub struct VmStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// Name.
    pub name: Option<String>,
    /// The lock (`clone`, `backup`, `snapshot`...), if any.
    pub lock: Option<String>,
    /// Configured memory, bytes.
    pub maxmem: Option<u64>,
    /// vCPUs.
    pub cpus: Option<f64>,
    /// Largest disk, bytes.
    pub maxdisk: Option<u64>,
    /// A template.
    pub template: bool,
    /// Its tags (`tags`, split on `;`, `,` and spaces).
    pub tags: Vec<String>,
}

/// A Proxmox tag list (`a;b`, also `a,b` or `a b`) as its tags.
pub fn split_tags(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_str)
        .unwrap_or_default()
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// Set once stopped.
    pub exitstatus: Option<String>,
}

/// `POST /nodes/{node}/qemu/{vmid}/clone` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneParams {
    /// New VM id.
    pub newid: u32,
    /// New VM name.
    pub name: Option<String>,
    /// A full clone (not linked).
    pub full: bool,
    /// Target node (another node of the cluster).
    pub target: Option<String>,
    /// Target storage (full clones).
    pub storage: Option<String>,
}

impl Client {
    /// A client for `cfg`. Prints `cfg`'s warnings (e.g. insecure TLS) to stderr once.
    pub fn new(cfg: &Config) -> Result<Client, Error> {
        for w in &cfg.warnings {
            eprintln!("warning: {w}");
        }
        let tls = crate::tls::client_config(&cfg.tls)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .https_only(true)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent(concat!("hacli-proxmox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                method: "-".into(),
                endpoint: cfg.base.clone(),
                detail: chain(&e),
            })?;
        let mut auth = HeaderValue::from_str(&cfg.token.header()).map_err(|_| {
            Error::Config(crate::config::ConfigError::BadToken(format!(
                "API token `{}`: not a valid header value",
                cfg.token.id()
            )))
        })?;
        auth.set_sensitive(true);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: cfg.base.clone(),
                auth,
                token_id: cfg.token.id().to_string(),
                poll_first: cfg.poll_first,
                poll_cap: cfg.poll_cap,
                request_timeout: cfg.request_timeout,
                calls: AtomicU64::new(0),
            }),
        })
    }

    /// `https://HOST:PORT/api2/json`.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// How many HTTP requests this client (and its clones) sent.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// One request; `data` of the answer. Only GETs are retried on connection
    /// errors (three tries); nothing is retried after Proxmox answered.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: &Params,
    ) -> Result<Value, Error> {
        let idempotent = method == Method::GET;
        let mut attempt = 0u32;
        loop {
            match self.request_once(method.clone(), path, params).await {
                Err(Error::Transport { .. }) if idempotent && attempt < 2 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn request_once(
        &self,
        method: Method,
        path: &str,
        params: &Params,
    ) -> Result<Value, Error> {
        let i = &self.inner;
        i.calls.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", i.base);
        let mut rb = i
            .http
            .request(method.clone(), &url)
            .header(AUTHORIZATION, i.auth.clone());
        rb = if method == Method::GET || method == Method::DELETE {
            if params.is_empty() {
                rb
            } else {
                rb.query(params)
            }
        } else {
            rb.form(params)
        };
        let transport = |e: reqwest::Error| {
            if let Some(detail) = tls_refusal(&e) {
                return Error::Tls {
                    method: method.to_string(),
                    endpoint: path.to_string(),
                    detail,
                };
            }
            Error::Transport {
                method: method.to_string(),
                endpoint: path.to_string(),
                detail: if e.is_timeout() {
                    format!("no answer within {}s", i.request_timeout.as_secs_f64())
                } else {
                    chain(&e)
                },
            }
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).to_string())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let body = resp.bytes().await.map_err(transport)?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            let Some(mut v) = json else {
                return Err(Error::Decode {
                    method: method.to_string(),
                    endpoint: path.to_string(),
                    detail: "the body is not JSON".into(),
                });
            };
            return Ok(v.get_mut("data").map(Value::take).unwrap_or(Value::Null));
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| reason.trim().to_string());
        let errors: BTreeMap<String, String> = json
            .as_ref()
            .and_then(|j| j.get("errors"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), string(v).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if status.as_u16() == 401 {
            return Err(Error::Unauthorized {
                method: method.to_string(),
                endpoint: path.to_string(),
                message,
                token_id: i.token_id.clone(),
            });
        }
        Err(Error::Api {
            method: method.to_string(),
            endpoint: path.to_string(),
            status: status.as_u16(),
            message,
            errors,
        })
    }

    async fn get(&self, path: &str, params: Params) -> Result<Value, Error> {
        self.request(Method::GET, path, &params).await
    }

    fn decode_err(path: &str, detail: impl Into<String>) -> Error {
        Error::Decode {
            method: "GET".into(),
            endpoint: path.to_string(),
            detail: detail.into(),
        }
    }

    fn upid(method: &str, path: &str, v: Value) -> Result<Upid, Error> {
        let s = v.as_str().ok_or_else(|| Error::Decode {
            method: method.into(),
            endpoint: path.into(),
            detail: format!("expected a UPID, got {v}"),
        })?;
        s.parse()
    }

    fn vm_path(node: &str, vmid: u32) -> String {
        format!("/nodes/{}/qemu/{vmid}", utf8_percent_encode(node, SEGMENT))
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<String, Error> {
        let v = self.get("/version", vec![]).await?;
        Ok(v.get("version").and_then(string).unwrap_or_default())
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, Error> {
        let v = self.get("/nodes", vec![]).await?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::decode_err("/nodes", "expected a list"))?;
        arr.iter()
            .map(|n| {
                Ok(NodeEntry {
                    node: n
                        .get("node")
                        .and_then(string)
                        .ok_or_else(|| Self::decode_err("/nodes", "an entry without `node`"))?,
                    status: n.get("status").and_then(string).unwrap_or_default(),
                    maxmem: n.get("maxmem").and_then(uint),
                    maxcpu: n.get("maxcpu").and_then(num),
                })
            })
            .collect()
    }

    /// `GET /nodes/{node}/status`: memory.total/used and cpuinfo.cpus.
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, Error> {
        let path = format!("/nodes/{}/status", utf8_percent_encode(node, SEGMENT));
        let v = self.get(&path, vec![]).await?;
        let total = v.pointer("/memory/total").and_then(uint);
        let used = v.pointer("/memory/used").and_then(uint);
        let cpus = v.pointer("/cpuinfo/cpus").and_then(uint);
        match (total, used, cpus) {
            (Some(t), Some(u), Some(c)) => Ok(NodeStatus {
                memory_total: t,
                memory_used: u,
                cpus: c as u32,
            }),
            _ => Err(Self::decode_err(
                &path,
                "memory.total, memory.used or cpuinfo.cpus missing",
            )),
        }
    }

    fn qemu_entry(path: &str, v: &Value) -> Result<QemuEntry, Error> {
        Ok(QemuEntry {
            vmid: v
                .get("vmid")
                .and_then(uint)
                .ok_or_else(|| Self::decode_err(path, "an entry without `vmid`"))?
                as u32,
            name: v.get("name").and_then(string),
            status: v.get("status").and_then(string).unwrap_or_default(),
            maxmem: v.get("maxmem").and_then(uint),
            cpus: v.get("cpus").and_then(num),
            template: v.get("template").and_then(num).unwrap_or(0.0) != 0.0,
            lock: v.get("lock").and_then(string).filter(|s| !s.is_empty()),
        })
    }

    /// `GET /nodes/{node}/qemu`.
    pub async fn qemu_list(&self, node: &str) -> Result<Vec<QemuEntry>, Error> {
        let path = format!("/nodes/{}/qemu", utf8_percent_encode(node, SEGMENT));
        let v = self.get(&path, vec![]).await?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::decode_err(&path, "expected a list"))?;
        arr.iter().map(|e| Self::qemu_entry(&path, e)).collect()
    }

    /// `GET /cluster/resources?type=vm`: every VM of the cluster, QEMU only.
    pub async fn cluster_vms(&self) -> Result<Vec<ClusterVm>, Error> {
        let path = "/cluster/resources";
        let v = self.get(path, vec![p("type", "vm")]).await?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::decode_err(path, "expected a list"))?;
        let mut out = Vec::new();
        for e in arr {
            if e.get("type").and_then(Value::as_str) != Some("qemu") {
                continue;
            }
            out.push(ClusterVm {
                vmid: e
                    .get("vmid")
                    .and_then(uint)
                    .ok_or_else(|| Self::decode_err(path, "an entry without `vmid`"))?
                    as u32,
                name: e.get("name").and_then(string),
                node: e.get("node").and_then(string).unwrap_or_default(),
                status: e.get("status").and_then(string).unwrap_or_default(),
                maxmem: e.get("maxmem").and_then(uint),
                maxcpu: e.get("maxcpu").and_then(num),
                template: e.get("template").and_then(num).unwrap_or(0.0) != 0.0,
                lock: e.get("lock").and_then(string).filter(|s| !s.is_empty()),
                tags: split_tags(e.get("tags")),
            });
        }
        Ok(out)
    }

    /// `GET /cluster/nextid[?vmid=N]`: the next free id, or whether N is free
    /// (`Ok(N)`; taken: an API error `VM N already exists`).
    pub async fn nextid(&self, vmid: Option<u32>) -> Result<u32, Error> {
        let params = vmid.map(|v| vec![p("vmid", v)]).unwrap_or_default();
        let v = self.get("/cluster/nextid", params).await?;
        uint(&v)
            .map(|n| n as u32)
            .ok_or_else(|| Self::decode_err("/cluster/nextid", format!("not an id: {v}")))
    }

    /// `POST /nodes/{node}/qemu/{vmid}/clone` -> the clone's task.
    pub async fn clone_vm(&self, node: &str, vmid: u32, c: &CloneParams) -> Result<Upid, Error> {
        let path = format!("{}/clone", Self::vm_path(node, vmid));
        let mut params = vec![p("newid", c.newid)];
        if let Some(n) = &c.name {
            params.push(p("name", n));
        }
        if c.full {
            params.push(p("full", 1));
        }
        if let Some(t) = &c.target {
            params.push(p("target", t));
        }
        if let Some(s) = &c.storage {
            params.push(p("storage", s));
        }
        let v = self.request(Method::POST, &path, &params).await?;
        Self::upid("POST", &path, v)
    }

    /// `GET .../config` (pending changes applied, as Proxmox shows them).
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<Map<String, Value>, Error> {
        let path = format!("{}/config", Self::vm_path(node, vmid));
        match self.get(&path, vec![]).await? {
            Value::Object(m) => Ok(m),
            other => Err(Self::decode_err(
                &path,
                format!("expected an object, got {other}"),
            )),
        }
    }

    /// `PUT .../config` (synchronous).
    pub async fn put_config(&self, node: &str, vmid: u32, params: &Params) -> Result<(), Error> {
        let path = format!("{}/config", Self::vm_path(node, vmid));
        self.request(Method::PUT, &path, params).await.map(|_| ())
    }

    /// `POST .../config` (asynchronous) -> its task, if Proxmox started one.
    pub async fn post_config(
        &self,
        node: &str,
        vmid: u32,
        params: &Params,
    ) -> Result<Option<Upid>, Error> {
        let path = format!("{}/config", Self::vm_path(node, vmid));
        match self.request(Method::POST, &path, params).await? {
            Value::Null => Ok(None),
            v => Self::upid("POST", &path, v).map(Some),
        }
    }

    /// `PUT .../resize` (`size`: `+NG` or absolute like `32G`) -> its task, if any.
    pub async fn resize(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>, Error> {
        let path = format!("{}/resize", Self::vm_path(node, vmid));
        let params = vec![p("disk", disk), p("size", size)];
        match self.request(Method::PUT, &path, &params).await? {
            Value::Null => Ok(None),
            v => Self::upid("PUT", &path, v).map(Some),
        }
    }

    async fn power(
        &self,
        node: &str,
        vmid: u32,
        what: &str,
        params: Params,
    ) -> Result<Upid, Error> {
        let path = format!("{}/status/{what}", Self::vm_path(node, vmid));
        let v = self.request(Method::POST, &path, &params).await?;
        Self::upid("POST", &path, v)
    }

    /// `POST .../status/start` -> its task.
    pub async fn start(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        self.power(node, vmid, "start", vec![]).await
    }

    /// `POST .../status/stop` (hard stop) -> its task.
    pub async fn stop(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        self.power(node, vmid, "stop", vec![]).await
    }

    /// `POST .../status/shutdown` (ACPI, `timeout` seconds) -> its task.
    pub async fn shutdown(&self, node: &str, vmid: u32, timeout_s: u32) -> Result<Upid, Error> {
        self.power(node, vmid, "shutdown", vec![p("timeout", timeout_s)])
            .await
    }

    /// `GET .../status/current`.
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, Error> {
        let path = format!("{}/status/current", Self::vm_path(node, vmid));
        let v = self.get(&path, vec![]).await?;
        Ok(VmStatus {
            status: v.get("status").and_then(string).unwrap_or_default(),
            name: v.get("name").and_then(string),
            lock: v.get("lock").and_then(string).filter(|s| !s.is_empty()),
            maxmem: v.get("maxmem").and_then(uint),
            cpus: v.get("cpus").and_then(num),
            maxdisk: v.get("maxdisk").and_then(uint),
            template: v.get("template").and_then(num).unwrap_or(0.0) != 0.0,
            tags: split_tags(v.get("tags")),
        })
    }

    /// `POST .../snapshot` -> its task.
    pub async fn snapshot(&self, node: &str, vmid: u32, snapname: &str) -> Result<Upid, Error> {
        let path = format!("{}/snapshot", Self::vm_path(node, vmid));
        let v = self
            .request(Method::POST, &path, &vec![p("snapname", snapname)])
            .await?;
        Self::upid("POST", &path, v)
    }

    /// `GET .../snapshot`: snapshot names (without `current`).
    pub async fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<String>, Error> {
        let path = format!("{}/snapshot", Self::vm_path(node, vmid));
        let v = self.get(&path, vec![]).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("name").and_then(string))
            .filter(|n| n != "current")
            .collect())
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}[?purge=1]` -> its task.
    pub async fn delete_vm(&self, node: &str, vmid: u32, purge: bool) -> Result<Upid, Error> {
        let path = Self::vm_path(node, vmid);
        let params = if purge { vec![p("purge", 1)] } else { vec![] };
        let v = self.request(Method::DELETE, &path, &params).await?;
        Self::upid("DELETE", &path, v)
    }

    /// `PUT .../cloudinit`: regenerate the cloud-init drive.
    pub async fn cloudinit_regenerate(&self, node: &str, vmid: u32) -> Result<(), Error> {
        let path = format!("{}/cloudinit", Self::vm_path(node, vmid));
        self.request(Method::PUT, &path, &vec![]).await.map(|_| ())
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, Error> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            utf8_percent_encode(&upid.node, SEGMENT),
            utf8_percent_encode(upid.as_str(), SEGMENT)
        );
        let v = self.get(&path, vec![]).await?;
        Ok(TaskStatus {
            status: v
                .get("status")
                .and_then(string)
                .ok_or_else(|| Self::decode_err(&path, "no `status`"))?,
            exitstatus: v.get("exitstatus").and_then(string),
        })
    }

    fn next_interval(&self, cur: Duration) -> Duration {
        (cur * 2).min(self.inner.poll_cap)
    }

    /// Poll a task until it stops, by `deadline`: `OK` and `WARNINGS: n` are
    /// success, anything else a [`Error::TaskFailed`] with Proxmox's text. A
    /// task not yet visible (400) is asked again.
    pub async fn wait_task(&self, upid: &Upid, deadline: Instant) -> Result<TaskOutcome, Error> {
        let mut interval = self.inner.poll_first;
        loop {
            match self.task_status(upid).await {
                Ok(st) if st.status == "stopped" => {
                    let ex = st.exitstatus.unwrap_or_else(|| "unknown".into());
                    return outcome(upid, &ex);
                }
                Ok(_) => {}
                Err(Error::Api { status: 400, .. }) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("task {upid}"),
                    deadline: deadline.saturating_duration_since(now),
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = self.next_interval(interval);
        }
    }

    /// Wait until the VM has no `lock` in `status/current`, by `deadline`.
    pub async fn wait_unlocked(
        &self,
        node: &str,
        vmid: u32,
        deadline: Instant,
    ) -> Result<VmStatus, Error> {
        let mut interval = self.inner.poll_first;
        loop {
            let st = self.vm_status(node, vmid).await?;
            let Some(lock) = &st.lock else {
                return Ok(st);
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("VM {vmid} on {node} is still locked ({lock})"),
                    deadline: Duration::ZERO,
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = self.next_interval(interval);
        }
    }

    /// Run `call`; while Proxmox refuses it with `VM is locked`, wait until
    /// the VM is unlocked and run it again (a refused call had no effect).
    pub async fn unlocked<T, F, Fut>(
        &self,
        node: &str,
        vmid: u32,
        deadline: Instant,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        loop {
            match call().await {
                Err(e) if e.is_locked() && Instant::now() < deadline => {
                    self.wait_unlocked(node, vmid, deadline).await?;
                }
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshkeys_are_percent_encoded_once_here() {
        let keys = vec![
            "ssh-ed25519 AAAAC3Nz+a/b= user@host".to_string(),
            "ssh-rsa AAAAB3 other".to_string(),
        ];
        let enc = encode_sshkeys(&keys);
        assert_eq!(
            enc,
            "ssh-ed25519%20AAAAC3Nz%2Ba%2Fb%3D%20user%40host%0Assh-rsa%20AAAAB3%20other"
        );
        // and form encoding encodes each `%` again
        let form = serde_json::json!(enc);
        assert!(form.as_str().unwrap().contains("%20"));
    }
}
