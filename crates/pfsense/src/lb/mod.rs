//! The load-balancer backend: hacore's [`LoadBalancer`] trait over pfSense
//! (PHP over SSH, or the REST API) and over plain HAProxy on a Linux host
//! (its `haproxy.cfg` over SSH).
//!
//! Every operation is decided on a fresh read of the configuration
//! ([`model::is_done`], [`model::edit_for`]): what is in place is never
//! done again, and what is missing becomes exactly one edit of one item.
//! A busy configuration (pfrest's 503, a concurrent edit of `haproxy.cfg`)
//! is retried with backoff until the deadline; every call has one.
//!
//! ```no_run
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use hacore::backend::{LbOp, LoadBalancer};
//! let (topology, _) = hacore::topology::Topology::load("topology.yaml".as_ref())?;
//! let mut lb = pfsense::lb::LbBackend::from_topology(&topology, &pfsense::lb::LbOptions::default())?;
//! let op = LbOp::AddServer {
//!     pool: "k8s-apiserver".into(),
//!     server: "k8s-master-2".into(),
//!     address: "198.18.0.12:6443".parse()?,
//! };
//! if !lb.is_done(&op)? {
//!     lb.apply(&op)?;
//! }
//! # Ok(()) }
//! ```

pub mod linux;
pub mod model;
pub mod php;
pub mod rest;
pub mod runtime;

use std::path::PathBuf;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hacore::backend::{BackendError, LbOp, LoadBalancer};
use hacore::topology::{HealthCheck, LbKind, LbTransport, RuntimeApi, Topology};
use hacore::units::Dur;
use tokio::time::Instant;

use crate::haproxy::{AdminState, RuntimeClient, Stats};
use model::{Edit, LbConfig};

/// What went wrong managing the load balancer. Messages name the host or
/// endpoint; no credential ever reaches one.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The topology or the environment does not say how to reach it.
    #[error("{0}")]
    Config(String),
    /// SSH failed (connect, host key, authentication, the command).
    #[error(transparent)]
    Ssh(Box<ssh::SshError>),
    /// The REST API refused the credentials.
    #[error("{what}: HTTP {status}: {message}")]
    Auth {
        /// The request.
        what: String,
        /// 401 or 403.
        status: u16,
        /// pfrest's response id and message.
        message: String,
    },
    /// The REST API answered an error.
    #[error("{what}: HTTP {status} {code}: {message}")]
    Rest {
        /// The request.
        what: String,
        /// HTTP status (0: no answer).
        status: u16,
        /// pfrest's response id.
        code: String,
        /// Its message.
        message: String,
    },
    /// The configuration is locked or changed under us: retried.
    #[error("{what}: busy: {message}")]
    Busy {
        /// Where.
        what: String,
        /// What it said.
        message: String,
    },
    /// HAProxy refused the configuration; nothing was written.
    #[error("{what}: {messages}")]
    Invalid {
        /// Where.
        what: String,
        /// HAProxy's words.
        messages: String,
    },
    /// The operation would change what is not ours, or is not possible.
    #[error("{0}")]
    Refused(String),
    /// The answer could not be understood.
    #[error("{what}: {detail}")]
    Protocol {
        /// Where.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// No answer by the deadline.
    #[error("{what}: no answer within {deadline:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline.
        deadline: Duration,
    },
    /// HAProxy's runtime API failed.
    #[error(transparent)]
    Runtime(#[from] crate::haproxy::Error),
}

impl LbError {
    fn ssh(e: ssh::SshError) -> LbError {
        LbError::Ssh(Box::new(e))
    }

    fn from_code(what: String, code: &str, message: &str) -> LbError {
        match code {
            "HAPROXY_CONFIG_INVALID" => LbError::Invalid {
                what,
                messages: message.to_string(),
            },
            "LOCKED" | "MODEL_WRITE_CONFIG_LOCKED" => LbError::Busy {
                what,
                message: message.to_string(),
            },
            "" | "FAILED" => LbError::Protocol {
                what,
                detail: message.to_string(),
            },
            _ => LbError::Refused(format!("{what}: {message}")),
        }
    }

    fn into_backend(self, what: &str) -> BackendError {
        match self {
            LbError::Timeout { deadline, .. } => BackendError::Timeout {
                what: what.to_string(),
                deadline: Dur(jiff::SignedDuration::try_from(deadline).unwrap_or_default()),
            },
            other => BackendError::Failed {
                what: what.to_string(),
                message: error_chain(&other),
            },
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// How the backend connects.
#[derive(Debug, Clone)]
pub struct LbOptions {
    /// Deadline of one operation, waits included.
    pub timeout: Duration,
    /// Record an unknown SSH host key (said loudly) instead of refusing.
    pub accept_new_host_key: bool,
    /// Override of the topology's `loadBalancer.runtimeApi`.
    pub runtime_api: Option<RuntimeApi>,
    /// Override of `loadBalancer.manage.knownHosts`.
    pub known_hosts: Option<PathBuf>,
    /// Override of `loadBalancer.manage.identityFile`.
    pub identity_file: Option<PathBuf>,
    /// Credentials for the REST API, instead of the environment's.
    pub rest_credentials: Option<rest::Credentials>,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions {
            timeout: Duration::from_secs(60),
            accept_new_host_key: false,
            runtime_api: None,
            known_hosts: None,
            identity_file: None,
            rest_credentials: None,
        }
    }
}

/// The transport to the configuration.
#[derive(Debug)]
pub enum Transport {
    /// pfSense, PHP over SSH.
    PfsenseSsh(php::PhpSsh),
    /// pfSense, REST API v2.
    PfsenseRest(rest::Rest),
    /// HAProxy's configuration file on a Linux host.
    Haproxy(linux::LinuxHaproxy),
}

impl Transport {
    /// Where it talks to, for messages.
    pub fn describe(&self) -> String {
        match self {
            Transport::PfsenseSsh(t) => format!("pfSense {} over SSH", t.target_name()),
            Transport::PfsenseRest(t) => format!("pfSense REST API {}", t.base()),
            Transport::Haproxy(t) => format!("HAProxy on {} over SSH", t.target_name()),
        }
    }

    /// Read the managed configuration.
    pub async fn read(&self, until: Instant) -> Result<LbConfig, LbError> {
        match self {
            Transport::PfsenseSsh(t) => t.read(until).await,
            Transport::PfsenseRest(t) => t.read(until).await,
            Transport::Haproxy(t) => t.read(until).await,
        }
    }

    /// Carry one edit out (no check that it is needed: see
    /// [`model::edit_for`]). Ok(false) when nothing changed.
    pub async fn edit(&self, e: &Edit, until: Instant) -> Result<bool, LbError> {
        match self {
            Transport::PfsenseSsh(t) => t.edit(e, until).await,
            Transport::PfsenseRest(t) => t.edit(e, until).await,
            Transport::Haproxy(t) => t.edit(e, until).await,
        }
    }

    async fn apply_pending(&self, until: Instant) -> Result<(), LbError> {
        match self {
            Transport::PfsenseSsh(t) => t.apply_pending(until).await,
            Transport::PfsenseRest(t) => t.apply_pending(until).await,
            // A plain HAProxy has no written-but-not-applied state.
            Transport::Haproxy(_) => Ok(()),
        }
    }
}

/// The load-balancer backend.
#[derive(Debug)]
pub struct LbBackend {
    rt: tokio::runtime::Runtime,
    transport: Transport,
    runtime: Option<RuntimeClient>,
    health_check: HealthCheck,
    timeout: Duration,
    runtime_memory: runtime::RuntimeMemory,
}

fn home_path(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The SSH settings the topology's `loadBalancer.manage` gives.
fn ssh_config(m: &hacore::topology::LbManage, opts: &LbOptions) -> Result<ssh::Config, LbError> {
    let host = m.host.clone().ok_or_else(|| {
        LbError::Config(
            "loadBalancer.manage.host: `transport: ssh` needs the host to log in to".into(),
        )
    })?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let known_hosts = opts
        .known_hosts
        .clone()
        .or_else(|| m.known_hosts.clone())
        .map(|p| home_path(&p))
        .unwrap_or_else(|| home.join(".ssh/known_hosts"));
    let keys = match opts
        .identity_file
        .clone()
        .or_else(|| m.identity_file.clone())
    {
        Some(k) => vec![home_path(&k)],
        None => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .filter(|p| p.exists())
            .collect(),
    };
    let user = m.user.clone().unwrap_or_else(|| "root".into());
    Ok(ssh::Config::new(host.clone(), host, user)
        .port(m.port.unwrap_or(22))
        .keys(keys)
        .agent(std::env::var_os("SSH_AUTH_SOCK").is_some())
        .passphrase_env("HACLI_SSH_PASSPHRASE")
        .known_hosts(known_hosts)
        .host_key_policy(if opts.accept_new_host_key {
            ssh::HostKeyPolicy::AcceptNew
        } else {
            ssh::HostKeyPolicy::Strict
        })
        .connect_timeout(opts.timeout.min(Duration::from_secs(15))))
}

impl LbBackend {
    /// The backend the topology's `loadBalancer` describes. Credentials
    /// for the REST API come from the environment.
    pub fn from_topology(topology: &Topology, opts: &LbOptions) -> Result<LbBackend, LbError> {
        let lb = &topology.load_balancer;
        let Some(m) = &lb.manage else {
            return Err(LbError::Config(
                "loadBalancer.manage is not set: say how hacli reaches the load balancer (transport: ssh or rest, host or url)".into(),
            ));
        };
        let transport = match (lb.kind, m.transport) {
            (LbKind::None, _) => {
                return Err(LbError::Config(
                    "loadBalancer.kind is none: there is no load balancer to manage".into(),
                ));
            }
            (LbKind::PfsenseHaproxy, LbTransport::Ssh) => {
                Transport::PfsenseSsh(php::PhpSsh::new(ssh_config(m, opts)?))
            }
            (LbKind::Haproxy, LbTransport::Ssh) => Transport::Haproxy(linux::LinuxHaproxy::new(
                ssh_config(m, opts)?,
                m.config_path
                    .as_ref()
                    .map_or("/etc/haproxy/haproxy.cfg".to_string(), |p| {
                        p.display().to_string()
                    }),
                m.reload_command
                    .clone()
                    .unwrap_or_else(|| "systemctl reload haproxy".into()),
            )),
            (LbKind::PfsenseHaproxy, LbTransport::Rest) => {
                let url = m
                    .url
                    .clone()
                    .or_else(|| std::env::var("PFSENSE_URL").ok())
                    .ok_or_else(|| LbError::Config("loadBalancer.manage.url (or PFSENSE_URL): the pfSense REST API's base URL".into()))?;
                let creds = opts.rest_credentials.clone().or_else(rest::Credentials::from_env).ok_or_else(|| {
                    LbError::Config(format!(
                        "{url}: set PFSENSE_API_KEY, or PFSENSE_USERNAME and PFSENSE_PASSWORD, for the pfSense REST API"
                    ))
                })?;
                Transport::PfsenseRest(rest::Rest::new(
                    &url,
                    creds,
                    m.ca_file.as_deref(),
                    m.allow_plain_http,
                )?)
            }
            (LbKind::Haproxy, LbTransport::Rest) => {
                return Err(LbError::Config(
                    "loadBalancer.manage.transport: rest is pfSense's REST API; plain HAProxy is managed over ssh".into(),
                ));
            }
        };
        Self::new(
            transport,
            opts.runtime_api.clone().or_else(|| lb.runtime_api.clone()),
            lb.health_check.clone(),
            opts.timeout,
        )
    }

    /// A backend over `transport`; `runtime`: HAProxy's runtime API, to
    /// observe servers (pfSense over SSH reads its local socket without it).
    pub fn new(
        transport: Transport,
        runtime: Option<RuntimeApi>,
        health_check: HealthCheck,
        timeout: Duration,
    ) -> Result<LbBackend, LbError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LbError::Config(format!("cannot start the async runtime: {e}")))?;
        Ok(LbBackend {
            rt,
            transport,
            runtime: runtime.map(RuntimeClient::new),
            health_check,
            timeout,
            runtime_memory: runtime::RuntimeMemory::default(),
        })
    }

    fn runtime_client(&self) -> Result<&RuntimeClient, LbError> {
        self.runtime.as_ref().ok_or_else(|| {
            LbError::Config(
                "set loadBalancer.runtimeApi (or --lb-runtime-api) at level admin to drain, ready or maint a server".into(),
            )
        })
    }

    /// Where it talks to.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// The transport, for one-off edits.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Run a future on the backend's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn until(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// The managed configuration now.
    pub fn read(&self) -> Result<LbConfig, LbError> {
        let until = self.until();
        self.rt.block_on(self.transport.read(until))
    }

    /// HAProxy's `show stat` now.
    pub fn stats(&self) -> Result<Stats, LbError> {
        let until = self.until();
        self.rt.block_on(self.stats_by(until))
    }

    async fn stats_by(&self, until: Instant) -> Result<Stats, LbError> {
        if let Some(rc) = &self.runtime {
            return Ok(rc.show_stat(until).await?);
        }
        match &self.transport {
            Transport::PfsenseSsh(t) => {
                let text = t.stat(until).await?;
                Stats::parse(&text).map_err(|e| LbError::Protocol { what: format!("{}: show stat", t.target_name()), detail: e })
            }
            _ => Err(LbError::Config(
                "set loadBalancer.runtimeApi (or --lb-runtime-api) so hacli can read HAProxy's servers".into(),
            )),
        }
    }

    /// The edit `op` needs now (`None`: in place), without making it.
    pub fn plan(&self, op: &LbOp) -> Result<(LbConfig, Option<Edit>), LbError> {
        let cfg = self.read()?;
        let e = model::edit_for(op, &cfg, &self.health_check).map_err(|r| LbError::Refused(r.0))?;
        Ok((cfg, e))
    }

    /// Set a server's administrative state through the runtime API and
    /// wait for it (drain: until its sessions reach 0).
    pub fn set_server_state(
        &self,
        pool: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), LbError> {
        let Some(rc) = &self.runtime else {
            return Err(LbError::Config(
                "set loadBalancer.runtimeApi (or --lb-runtime-api) at level admin to drain, ready or maint a server".into(),
            ));
        };
        let until = self.until();
        self.rt.block_on(async {
            match state {
                AdminState::Drain => rc.drain(pool, server, until).await.map(|_| ()),
                AdminState::Ready => rc.ready(pool, server, until).await.map(|_| ()),
                AdminState::Maint => rc
                    .set_server_state(pool, server, state, until)
                    .await
                    .map(|_| ()),
            }
        })?;
        Ok(())
    }

    async fn servers_up(
        &self,
        pool: &str,
        servers: &[String],
        until: Instant,
    ) -> Result<Vec<String>, LbError> {
        let stats = self.stats_by(until).await?;
        let rows = stats
            .pool(pool)
            .map_err(|e| LbError::Refused(format!("pool {pool}: {e:?}")))?;
        Ok(servers
            .iter()
            .filter(|s| {
                !rows
                    .iter()
                    .any(|r| &r.server == *s && r.status == Some(crate::haproxy::ServerStatus::Up))
            })
            .cloned()
            .collect())
    }

    async fn apply_async(&self, op: &LbOp) -> Result<bool, LbError> {
        let until = self.until();
        if let LbOp::VerifyServersUp { pool, servers } = op {
            loop {
                let down = self.servers_up(pool, servers, until).await;
                match down {
                    // A check: nothing changes.
                    Ok(d) if d.is_empty() => return Ok(false),
                    Ok(_) | Err(LbError::Runtime(_))
                        if Instant::now() + Duration::from_millis(250) < until =>
                    {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Ok(d) => {
                        return Err(LbError::Timeout {
                            what: format!("{} not UP in pool {pool}", d.join(", ")),
                            deadline: self.timeout,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let attempt = || async {
            let cfg = self.transport.read(until).await?;
            if cfg.pending
                && model::is_done(
                    op,
                    &LbConfig {
                        pending: false,
                        ..cfg.clone()
                    },
                ) == Some(true)
            {
                // Written before a crash, never applied: apply it now.
                self.transport.apply_pending(until).await?;
                return Ok(true);
            }
            match model::edit_for(op, &cfg, &self.health_check)
                .map_err(|r| LbError::Refused(r.0))?
            {
                None => Ok(false),
                Some(e) => self.transport.edit(&e, until).await,
            }
        };
        let changed = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, LbError::Busy { .. }) && Instant::now() < until)
            .await?;
        let cfg = self.transport.read(until).await?;
        if model::is_done(op, &cfg) == Some(false) {
            return Err(LbError::Protocol {
                what: self.transport.describe(),
                detail: "the change was made but is not in place when read back".into(),
            });
        }
        Ok(changed)
    }

    /// Carry `op` out; Ok(false) when it was already in place.
    pub fn apply_op(&self, op: &LbOp) -> Result<bool, LbError> {
        self.rt.block_on(self.apply_async(op))
    }
}

impl LoadBalancer for LbBackend {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        let what = format!(
            "{}: {}",
            self.transport.describe(),
            hacore::backend::Op::LoadBalancer(op.clone())
        );
        let until = self.until();
        if runtime::handles(op) {
            let rc = self.runtime_client().map_err(|e| e.into_backend(&what))?;
            return self
                .rt
                .block_on(runtime::is_done(rc, &self.runtime_memory, op, until))
                .map_err(|e| LbError::from(e).into_backend(&what));
        }
        self.rt
            .block_on(async {
                match op {
                    // A check: a server just added comes UP after `rise`
                    // checks, so wait for it within the deadline (false
                    // when it is not UP by then).
                    LbOp::VerifyServersUp { .. } => match self.apply_async(op).await {
                        Ok(_) => Ok(true),
                        Err(LbError::Timeout { .. }) => Ok(false),
                        Err(e) => Err(e),
                    },
                    _ => {
                        let cfg = self.transport.read(until).await?;
                        Ok(model::is_done(op, &cfg).unwrap_or(false))
                    }
                }
            })
            .map_err(|e: LbError| e.into_backend(&what))
    }

    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        let what = format!(
            "{}: {}",
            self.transport.describe(),
            hacore::backend::Op::LoadBalancer(op.clone())
        );
        if runtime::handles(op) {
            let until = self.until();
            let up = runtime::up_within(&self.health_check);
            let rc = self
                .runtime_client()
                .map_err(|e| e.into_backend(&what))?
                .clone();
            return self
                .rt
                .block_on(runtime::apply(&rc, &mut self.runtime_memory, op, up, until))
                .map_err(|e| LbError::from(e).into_backend(&what));
        }
        self.apply_op(op)
            .map(|_| ())
            .map_err(|e| e.into_backend(&what))
    }
}

/// The load balancer a planned disruption drains and restores (`hacli
/// disrupt|roll`, `hapy.disrupt|roll` with the live backend): the
/// topology's `loadBalancer.manage` settings, else HAProxy's runtime API
/// (`opts.runtime_api`, else the topology's `loadBalancer.runtimeApi`);
/// None when neither says how to reach it.
pub fn for_disruption(
    topology: &Topology,
    opts: &LbOptions,
) -> Result<Option<Box<dyn LoadBalancer>>, LbError> {
    let runtime_api = opts
        .runtime_api
        .clone()
        .or_else(|| topology.load_balancer.runtime_api.clone());
    Ok(if topology.load_balancer.manage.is_some() {
        Some(Box::new(LbBackend::from_topology(topology, opts)?))
    } else if let Some(api) = runtime_api {
        Some(Box::new(runtime::RuntimeLb::new(
            api,
            topology.load_balancer.health_check.clone(),
            Duration::from_secs(60),
        )?))
    } else {
        None
    })
}
