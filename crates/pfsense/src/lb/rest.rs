//! pfSense's REST API v2 (the pfrest package): the HAProxy backends,
//! servers and frontends, virtual IPs and DNS resolver host overrides.
//!
//! pfrest answers in an envelope `{code, status, response_id, message,
//! data}` whose `code` is the HTTP status. An object's `id` is its array
//! index and shifts after a delete, so every edit re-reads the ids it
//! needs right before it acts. Changes are written at once and applied
//! separately (the `.../apply` endpoints): an HAProxy change that the
//! apply refuses is taken back, so a configuration `haproxy -c` rejects
//! does not stay written.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::LbError;
use super::model::{Bind, Edit, Frontend, HostOverride, LbConfig, Pool, Server, Vip};

/// How to authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// `X-API-Key`.
    ApiKey(String),
    /// HTTP Basic (pfrest's default).
    Basic {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ApiKey(_) => f.write_str("ApiKey(***)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
        }
    }
}

impl Credentials {
    /// From `PFSENSE_API_KEY`, or `PFSENSE_USERNAME` and `PFSENSE_PASSWORD`.
    pub fn from_env() -> Option<Credentials> {
        if let Ok(k) = std::env::var("PFSENSE_API_KEY")
            && !k.is_empty()
        {
            return Some(Credentials::ApiKey(k));
        }
        match (
            std::env::var("PFSENSE_USERNAME"),
            std::env::var("PFSENSE_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) if !user.is_empty() => {
                Some(Credentials::Basic { user, password })
            }
            _ => None,
        }
    }
}

/// pfrest endpoints the edits use.
const BACKEND: &str = "services/haproxy/backend";
const FRONTEND: &str = "services/haproxy/frontend";
const HAPROXY_APPLY: &str = "services/haproxy/apply";
const VIP: &str = "firewall/virtual_ip";
const HOST: &str = "services/dns_resolver/host_override";

/// A pfrest client.
pub struct Rest {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "yes" } else { "" }.to_string(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}

/// An item in pfrest's typed fields: empty strings left out (pfrest
/// takes an absent field as its default), integer fields as integers.
fn typed(item: &Value) -> Value {
    const INTEGERS: &[&str] = &[
        "checkinter",
        "connection_timeout",
        "retries",
        "weight",
        "subnet_bits",
    ];
    let Value::Object(o) = item else {
        return item.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in o {
        match v {
            Value::String(s) if s.is_empty() => {}
            Value::String(s) if INTEGERS.contains(&k.as_str()) => {
                out.insert(k.clone(), s.parse::<i64>().map_or(v.clone(), |n| json!(n)));
            }
            Value::Array(a) => {
                out.insert(k.clone(), Value::Array(a.iter().map(typed).collect()));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// pfrest's server model has no `checkssl`: the check's TLS goes into
/// `advanced` (DOMAIN.md section 5).
fn rest_server(item: &Value) -> Value {
    let mut advanced = item["advanced"].as_str().unwrap_or("").to_string();
    if item["checkssl"] == json!("yes") && !advanced.contains("check-ssl") {
        advanced = format!("check-ssl verify none {advanced}")
            .trim()
            .to_string();
    }
    json!({
        "name": item["name"], "address": item["address"], "port": item["port"],
        "status": item["status"], "advanced": advanced,
    })
}

impl Rest {
    /// A client for `base` (such as `https://198.18.0.1`), verifying TLS
    /// against `ca_file` when given, the system roots otherwise. A plain
    /// `http://` base is refused unless `allow_plain_http` (the credentials
    /// would cross the network in clear). Redirects are never followed:
    /// the credentials (`X-API-Key`, Basic) go only to `base`.
    pub fn new(
        base: &str,
        credentials: Credentials,
        ca_file: Option<&Path>,
        allow_plain_http: bool,
    ) -> Result<Rest, LbError> {
        let base = base.trim_end_matches('/').to_string();
        let lower = base.to_ascii_lowercase();
        if lower.starts_with("http://") {
            if !allow_plain_http {
                return Err(LbError::Config(format!(
                    "{base}: plain HTTP: the pfSense API key or password would cross the network in clear; use https:// (with loadBalancer.manage.caFile), or set loadBalancer.manage.allowPlainHttp: true"
                )));
            }
        } else if !lower.starts_with("https://") {
            return Err(LbError::Config(format!(
                "{base}: not an http(s):// URL, such as https://10.0.20.1"
            )));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| LbError::Config(format!("{}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                LbError::Config(format!("{}: not a PEM CA bundle: {e}", ca.display()))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| LbError::Config(format!("{base}: {e}")))?;
        Ok(Rest {
            base,
            credentials,
            http,
        })
    }

    /// Where it talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        until: Instant,
    ) -> Result<Value, LbError> {
        let url = format!("{}/api/v2/{path}", self.base);
        let what = format!("{method} {url}");
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LbError::Timeout {
                what,
                deadline: Duration::ZERO,
            });
        }
        let mut rq = self
            .http
            .request(method.clone(), &url)
            .query(query)
            .timeout(left);
        rq = match &self.credentials {
            Credentials::ApiKey(k) => rq.header("X-API-Key", k),
            Credentials::Basic { user, password } => rq.basic_auth(user, Some(password)),
        };
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let resp = rq.send().await.map_err(|e| {
            if e.is_timeout() {
                LbError::Timeout {
                    what: what.clone(),
                    deadline: left,
                }
            } else {
                LbError::Rest {
                    what: what.clone(),
                    status: 0,
                    code: String::new(),
                    message: crate::lb::error_chain(&e),
                }
            }
        })?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("(no Location)")
                .to_string();
            return Err(LbError::Rest {
                what,
                status: status.as_u16(),
                code: String::new(),
                message: format!(
                    "redirected to {to}: not followed (the credentials are sent to {} only); set loadBalancer.manage.url to the API's own address",
                    self.base
                ),
            });
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body["data"].clone());
        }
        let code = body["response_id"].as_str().unwrap_or("").to_string();
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LbError::Auth {
                what,
                status: status.as_u16(),
                message: format!(
                    "{code} {message}: check PFSENSE_API_KEY (or PFSENSE_USERNAME and PFSENSE_PASSWORD)"
                ),
            },
            StatusCode::SERVICE_UNAVAILABLE => LbError::Busy {
                what,
                message: format!("{code} {message}"),
            },
            _ => LbError::Rest {
                what,
                status: status.as_u16(),
                code,
                message,
            },
        })
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        until: Instant,
    ) -> Result<Vec<Value>, LbError> {
        Ok(list(
            &self.call(Method::GET, path, query, None, until).await?,
        ))
    }

    /// The managed configuration.
    pub async fn read(&self, until: Instant) -> Result<LbConfig, LbError> {
        let (pools, frontends, vips, hosts, applied) = tokio::try_join!(
            self.get("services/haproxy/backends", &[], until),
            self.get("services/haproxy/frontends", &[], until),
            self.get("firewall/virtual_ips", &[], until),
            self.get("services/dns_resolver/host_overrides", &[], until),
            self.call(Method::GET, "services/haproxy/apply", &[], None, until),
        )?;
        Ok(LbConfig {
            pools: pools
                .iter()
                .map(|p| Pool {
                    name: text(&p["name"]),
                    check_type: text(&p["check_type"]),
                    monitor_uri: text(&p["monitor_uri"]),
                    checkinter: text(&p["checkinter"]),
                    servers: list(&p["servers"])
                        .iter()
                        .map(|s| Server {
                            name: text(&s["name"]),
                            address: text(&s["address"]),
                            port: text(&s["port"]),
                            status: text(&s["status"]),
                            checkssl: text(&s["checkssl"]),
                            advanced: text(&s["advanced"]),
                        })
                        .collect(),
                })
                .collect(),
            frontends: frontends
                .iter()
                .map(|f| Frontend {
                    name: text(&f["name"]),
                    descr: text(&f["descr"]),
                    status: text(&f["status"]),
                    kind: text(&f["type"]),
                    backend_serverpool: text(&f["backend_serverpool"]),
                    binds: list(&f["a_extaddr"])
                        .iter()
                        .map(|a| Bind {
                            extaddr: text(&a["extaddr"]),
                            extaddr_custom: text(&a["extaddr_custom"]),
                            extaddr_port: text(&a["extaddr_port"]),
                        })
                        .collect(),
                })
                .collect(),
            vips: vips
                .iter()
                .map(|v| Vip {
                    mode: text(&v["mode"]),
                    interface: text(&v["interface"]),
                    subnet: text(&v["subnet"]),
                    subnet_bits: text(&v["subnet_bits"]),
                    descr: text(&v["descr"]),
                })
                .collect(),
            hosts: hosts
                .iter()
                .map(|h| HostOverride {
                    host: text(&h["host"]),
                    domain: text(&h["domain"]),
                    ip: text(&h["ip"]),
                    descr: text(&h["descr"]),
                })
                .collect(),
            pending: applied["applied"] == json!(false),
        })
    }

    async fn id_of(
        &self,
        path: &str,
        key: &str,
        value: &str,
        query: &[(&str, String)],
        until: Instant,
    ) -> Result<Option<i64>, LbError> {
        let mut q = query.to_vec();
        q.push((key, value.to_string()));
        let items = self.get(path, &q, until).await?;
        Ok(items
            .iter()
            .find(|i| text(&i[key]) == value)
            .and_then(|i| i["id"].as_i64()))
    }

    async fn apply(&self, path: &str, until: Instant) -> Result<(), LbError> {
        self.call(Method::POST, path, &[], Some(json!({})), until)
            .await
            .map(|_| ())
    }

    /// Apply HAProxy changes written but not applied (a crash between a
    /// write and its apply).
    pub async fn apply_pending(&self, until: Instant) -> Result<(), LbError> {
        self.apply("services/haproxy/apply", until).await
    }

    /// POST one new item of `model` (such as `services/haproxy/frontend`).
    async fn post(&self, model: &str, body: &Value, until: Instant) -> Result<(), LbError> {
        self.call(Method::POST, model, &[], Some(typed(body)), until)
            .await
            .map(|_| ())
    }

    /// DELETE the item of `model` whose `key` is `value`, found by its id
    /// right before (ids shift). Ok(false) when there is none.
    async fn delete_where(
        &self,
        model: &str,
        key: &str,
        value: &str,
        until: Instant,
    ) -> Result<bool, LbError> {
        let plural = format!("{model}s");
        let Some(id) = self.id_of(&plural, key, value, &[], until).await? else {
            return Ok(false);
        };
        self.call(
            Method::DELETE,
            model,
            &[("id", id.to_string())],
            None,
            until,
        )
        .await?;
        Ok(true)
    }

    /// A pool created with its servers (pfrest takes them inline, and
    /// `advanced_backend` as text), HAProxy applied or the pool removed.
    async fn add_pool(&self, pool: &Value, until: Instant) -> Result<(), LbError> {
        let mut body = pool.clone();
        let servers: Vec<Value> = list(&pool["ha_servers"]["item"])
            .iter()
            .map(rest_server)
            .collect();
        body.as_object_mut().map(|o| o.remove("ha_servers"));
        body["servers"] = json!(servers);
        // pfrest takes `advanced_backend` as text and stores it
        // base64-encoded, as the package does.
        if let Some(b64) = pool["advanced_backend"].as_str().filter(|t| !t.is_empty()) {
            let plain = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    LbError::Refused(
                        "the pool's advanced_backend is not base64-encoded UTF-8".into(),
                    )
                })?;
            body["advanced_backend"] = json!(plain);
        }
        self.post(BACKEND, &body, until).await?;
        let name = pool["name"].as_str().unwrap_or("");
        self.apply_haproxy_or_undo(until, || async {
            self.delete_where(BACKEND, "name", name, until)
                .await
                .map(|_| ())
        })
        .await?;
        Ok(())
    }

    /// The DNS host override `host.domain` deleted; false when absent.
    async fn delete_host(&self, host: &str, domain: &str, until: Instant) -> Result<bool, LbError> {
        let items = self
            .get(&format!("{HOST}s"), &[("host", host.to_string())], until)
            .await?;
        let Some(id) = items
            .iter()
            .find(|i| text(&i["host"]) == host && text(&i["domain"]) == domain)
            .and_then(|i| i["id"].as_i64())
        else {
            return Ok(false);
        };
        self.call(Method::DELETE, HOST, &[("id", id.to_string())], None, until)
            .await?;
        self.apply("services/dns_resolver/apply", until).await?;
        Ok(true)
    }

    /// Carry one edit out and apply it. Ok(false) when nothing changed.
    pub async fn edit(&self, edit: &Edit, until: Instant) -> Result<bool, LbError> {
        match edit {
            Edit::AddPool { pool } => self.add_pool(pool, until).await?,
            Edit::DeletePool { pool } => {
                if !self.delete_where(BACKEND, "name", pool, until).await? {
                    return Ok(false);
                }
                self.apply(HAPROXY_APPLY, until).await?;
            }
            Edit::AddServer { pool, server } => {
                let Some(parent) = self
                    .id_of("services/haproxy/backends", "name", pool, &[], until)
                    .await?
                else {
                    return Err(LbError::Refused(format!("no pool named {pool}")));
                };
                let mut body = rest_server(server);
                body["parent_id"] = json!(parent);
                self.post("services/haproxy/backend/server", &body, until)
                    .await?;
                let name = server["name"].as_str().unwrap_or("");
                self.apply_haproxy_or_undo(until, || async {
                    self.remove_server(pool, name, until).await.map(|_| ())
                })
                .await?;
            }
            Edit::RemoveServer { pool, server } => {
                if !self.remove_server(pool, server, until).await? {
                    return Ok(false);
                }
                self.apply(HAPROXY_APPLY, until).await?;
            }
            Edit::AddFrontend { frontend } => {
                let mut body = frontend.clone();
                body["a_extaddr"] = json!(list(&frontend["a_extaddr"]["item"]));
                self.post(FRONTEND, &body, until).await?;
                let name = frontend["name"].as_str().unwrap_or("");
                self.apply_haproxy_or_undo(until, || async {
                    self.delete_where(FRONTEND, "name", name, until)
                        .await
                        .map(|_| ())
                })
                .await?;
            }
            Edit::DeleteFrontend { frontend } => {
                if !self.delete_where(FRONTEND, "name", frontend, until).await? {
                    return Ok(false);
                }
                self.apply(HAPROXY_APPLY, until).await?;
            }
            Edit::AddVip { vip } => {
                let mut body = vip.clone();
                body["type"] = json!("network");
                self.post(VIP, &body, until).await?;
                self.apply("firewall/virtual_ip/apply", until).await?;
            }
            Edit::DeleteVip { address } => {
                if !self.delete_where(VIP, "subnet", address, until).await? {
                    return Ok(false);
                }
                self.apply("firewall/virtual_ip/apply", until).await?;
            }
            Edit::AddHost { host } => {
                let mut body = host.clone();
                body["ip"] = json!(
                    text(&host["ip"])
                        .split(',')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                );
                body["aliases"] = json!([]);
                self.post(HOST, &body, until).await?;
                self.apply("services/dns_resolver/apply", until).await?;
            }
            Edit::DeleteHost { host, domain } => {
                if !self.delete_host(host, domain, until).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn remove_server(
        &self,
        pool: &str,
        server: &str,
        until: Instant,
    ) -> Result<bool, LbError> {
        let Some(parent) = self
            .id_of("services/haproxy/backends", "name", pool, &[], until)
            .await?
        else {
            return Ok(false);
        };
        let servers = self
            .get(
                "services/haproxy/backend/servers",
                &[("parent_id", parent.to_string())],
                until,
            )
            .await?;
        let Some(id) = servers
            .iter()
            .find(|s| text(&s["name"]) == server)
            .and_then(|s| s["id"].as_i64())
        else {
            return Ok(false);
        };
        self.call(
            Method::DELETE,
            "services/haproxy/backend/server",
            &[("parent_id", parent.to_string()), ("id", id.to_string())],
            None,
            until,
        )
        .await?;
        Ok(true)
    }

    /// Apply HAProxy's pending changes; when HAProxy refuses them, take the
    /// written change back (and apply that), then report the refusal.
    async fn apply_haproxy_or_undo<F, Fut>(&self, until: Instant, undo: F) -> Result<(), LbError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), LbError>>,
    {
        match self.apply("services/haproxy/apply", until).await {
            Ok(()) => Ok(()),
            Err(e @ (LbError::Rest { .. } | LbError::Invalid { .. })) => {
                undo().await?;
                let _ = self.apply("services/haproxy/apply", until).await;
                Err(LbError::Invalid {
                    what: self.base.clone(),
                    messages: format!("HAProxy refused the change, which was taken back: {e}"),
                })
            }
            Err(e) => Err(e),
        }
    }
}
