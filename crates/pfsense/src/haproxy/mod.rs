//! An async client for HAProxy's runtime API (the stats socket), on tokio.
//!
//! Each call connects (Unix socket or TCP), sends one command line and reads
//! the answer until HAProxy closes the connection (its non-interactive
//! mode: one command per connection). Every call takes a deadline: a paused
//! or silent HAProxy yields [`Error::Deadline`] naming the endpoint and the
//! command, never a hang.
//!
//! ```no_run
//! # async fn f() -> Result<(), pfsense::Error> {
//! use pfsense::{AdminState, RuntimeClient};
//! use tokio::time::{Duration, Instant};
//!
//! let lb = RuntimeClient::new("unix:/tmp/haproxy.socket".parse().unwrap());
//! let until = Instant::now() + Duration::from_secs(2);
//! let pool = lb.pool_state("k8s-apiserver", until).await?; // accepts k8s-apiserver_ipvANY
//! // Planned disruption of k8s-master-2: drain it, wait for its sessions to end.
//! let until = Instant::now() + Duration::from_secs(60);
//! lb.drain("k8s-apiserver", "k8s-master-2", until).await?;
//! // ... reboot it ...
//! lb.ready("k8s-apiserver", "k8s-master-2", until).await?;
//! # Ok(()) }
//! ```

mod stat;

use std::time::Duration;

use hacore::state::LbState;
use hacore::topology::RuntimeApi;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

pub use stat::{PFSENSE_SUFFIXES, PoolError, ServerStat, ServerStatus, Stats};

/// The most a single answer may hold (a `show stat` of a large pfSense is
/// a few hundred KiB).
const MAX_ANSWER: u64 = 16 << 20;

/// What went wrong talking to HAProxy's runtime API. Every message names
/// the endpoint (`unix:/path` or `tcp:addr:port`) and, where one was sent,
/// the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting failed (no such socket, refused, permission).
    #[error("HAProxy runtime API {endpoint}: cannot connect (for `{command}`): {source}")]
    Connect {
        /// Where.
        endpoint: RuntimeApi,
        /// The command that was to be sent.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Sending the command or reading the answer failed.
    #[error("HAProxy runtime API {endpoint}: `{command}`: {source}")]
    Io {
        /// Where.
        endpoint: RuntimeApi,
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nothing (or not all of the answer) came before the deadline.
    #[error("HAProxy runtime API {endpoint}: `{command}`: no answer before the deadline")]
    Deadline {
        /// Where.
        endpoint: RuntimeApi,
        /// The command.
        command: String,
    },
    /// HAProxy answered with an error message (unknown backend or server,
    /// `Permission denied` at too low a socket level, ...).
    #[error("HAProxy runtime API {endpoint}: `{command}`: HAProxy answered: {answer}")]
    Refused {
        /// Where.
        endpoint: RuntimeApi,
        /// The command.
        command: String,
        /// HAProxy's answer, trimmed.
        answer: String,
    },
    /// The answer is not what the command prints.
    #[error("HAProxy runtime API {endpoint}: `{command}`: unexpected answer: {reason}")]
    Malformed {
        /// Where.
        endpoint: RuntimeApi,
        /// The command.
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool is not a backend of this HAProxy.
    #[error("HAProxy runtime API {endpoint}: no backend `{pool}` (nor {pool}_ipvANY/_ipv4/_ipv6, as pfSense names them); backends: {}", list(.backends))]
    NoPool {
        /// Where.
        endpoint: RuntimeApi,
        /// The pool asked for.
        pool: String,
        /// The backends that exist.
        backends: Vec<String>,
    },
    /// More than one pfSense-suffixed backend matches the pool.
    #[error("HAProxy runtime API {endpoint}: pool `{pool}` is ambiguous: {}; name the backend exactly", .matches.join(", "))]
    AmbiguousPool {
        /// Where.
        endpoint: RuntimeApi,
        /// The pool asked for.
        pool: String,
        /// The backends matching it.
        matches: Vec<String>,
    },
    /// The server is not in the pool.
    #[error("HAProxy runtime API {endpoint}: backend `{backend}` has no server `{server}`; its servers: {}", list(.servers))]
    NoServer {
        /// Where.
        endpoint: RuntimeApi,
        /// The backend's runtime name.
        backend: String,
        /// The server asked for.
        server: String,
        /// The servers it has.
        servers: Vec<String>,
    },
    /// A server's status cannot be used (unknown text, or `no check`).
    #[error("HAProxy runtime API {endpoint}: server {backend}/{server}: {reason}")]
    Status {
        /// Where.
        endpoint: RuntimeApi,
        /// The backend's runtime name.
        backend: String,
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// A name or command that cannot be sent as one runtime-API command.
    #[error("{what} `{value}` cannot be sent to the HAProxy runtime API: {reason}")]
    BadInput {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A wait did not see the wanted state before the deadline.
    #[error(
        "HAProxy runtime API {endpoint}: {backend}/{server} did not become {wanted} before the deadline (last seen: {last})"
    )]
    WaitDeadline {
        /// Where.
        endpoint: RuntimeApi,
        /// The backend's runtime name.
        backend: String,
        /// The server.
        server: String,
        /// What was waited for.
        wanted: Want,
        /// The last status and sessions seen, or the last error.
        last: String,
    },
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A server's administrative state, as `set server BE/SRV state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Back in service (checks decide UP or DOWN).
    Ready,
    /// No new connections; existing ones finish.
    Drain,
    /// Maintenance: no traffic at all, checks stopped.
    Maint,
}

impl AdminState {
    /// The word the runtime API takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl std::fmt::Display for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`RuntimeClient::wait_server`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// This exact status (`Up` does not accept `UP x/y`).
    Status(ServerStatus),
    /// No current sessions (`scur` 0): a drained server is idle.
    Idle,
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Status(ServerStatus::Up) => f.write_str("UP"),
            Want::Status(ServerStatus::Down) => f.write_str("DOWN"),
            Want::Status(ServerStatus::Maint) => f.write_str("MAINT"),
            Want::Status(ServerStatus::Drain) => f.write_str("DRAIN"),
            Want::Status(ServerStatus::Nolb) => f.write_str("NOLB"),
            Want::Status(s) => write!(f, "{s:?}"),
            Want::Idle => f.write_str("idle (0 sessions)"),
        }
    }
}

impl Want {
    /// Whether `s` is what is wanted.
    pub fn met(self, s: &ServerStat) -> bool {
        match self {
            Want::Status(want) => s.status == Some(want),
            Want::Idle => s.sessions == Some(0),
        }
    }
}

/// How often the waits poll `show stat`.
pub const POLL: Duration = Duration::from_millis(100);

/// A client for one HAProxy runtime API endpoint. Cheap to clone; holds no
/// connection (HAProxy closes each after one command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeClient {
    api: RuntimeApi,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadInput {
            what,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == '/' || c == '#')
    {
        return bad("names may not hold whitespace, `;`, `/` or `#`");
    }
    Ok(())
}

impl RuntimeClient {
    /// A client for `api`.
    pub fn new(api: RuntimeApi) -> RuntimeClient {
        RuntimeClient { api }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &RuntimeApi {
        &self.api
    }

    async fn connect(&self, command: &str) -> Result<Box<dyn Stream>, Error> {
        let connect = |source| Error::Connect {
            endpoint: self.api.clone(),
            command: command.to_string(),
            source,
        };
        Ok(match &self.api {
            RuntimeApi::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect)?,
            ),
            RuntimeApi::Tcp(addr) => Box::new(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect)?,
            ),
        })
    }

    /// Send one command line and return HAProxy's whole answer, read until
    /// it closes the connection, all before `until`. The command may not
    /// hold a newline or `;` (HAProxy would run it as several).
    pub async fn command(&self, command: &str, until: Instant) -> Result<String, Error> {
        if command.trim().is_empty() || command.contains(['\n', '\r', ';']) {
            return Err(Error::BadInput {
                what: "command",
                value: command.to_string(),
                reason: "one non-empty command line, without `;`",
            });
        }
        let exchange = async {
            let mut s = self.connect(command).await?;
            let io = |source| Error::Io {
                endpoint: self.api.clone(),
                command: command.to_string(),
                source,
            };
            s.write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(io)?;
            s.flush().await.map_err(io)?;
            let mut buf = Vec::new();
            (&mut s)
                .take(MAX_ANSWER)
                .read_to_end(&mut buf)
                .await
                .map_err(io)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        timeout_at(until, exchange).await.unwrap_or_else(|_| {
            Err(Error::Deadline {
                endpoint: self.api.clone(),
                command: command.to_string(),
            })
        })
    }

    /// `show stat`, parsed.
    pub async fn show_stat(&self, until: Instant) -> Result<Stats, Error> {
        const CMD: &str = "show stat";
        let text = self.command(CMD, until).await?;
        if !text.trim_start().starts_with('#') && !text.trim().is_empty() {
            return Err(Error::Refused {
                endpoint: self.api.clone(),
                command: CMD.into(),
                answer: text.trim().to_string(),
            });
        }
        Stats::parse(&text).map_err(|reason| Error::Malformed {
            endpoint: self.api.clone(),
            command: CMD.into(),
            reason,
        })
    }

    fn pool_error(&self, stats: &Stats, pool: &str, e: PoolError) -> Error {
        match e {
            PoolError::Missing => Error::NoPool {
                endpoint: self.api.clone(),
                pool: pool.to_string(),
                backends: stats.backends.clone(),
            },
            PoolError::Ambiguous(matches) => Error::AmbiguousPool {
                endpoint: self.api.clone(),
                pool: pool.to_string(),
                matches,
            },
            PoolError::Server { server, reason } => Error::Status {
                endpoint: self.api.clone(),
                backend: stats.resolve(pool).unwrap_or(pool).to_string(),
                server,
                reason,
            },
        }
    }

    /// The servers of `pool` (its name, or pfSense's `pool_ipvANY`, ...).
    pub async fn servers(&self, pool: &str, until: Instant) -> Result<Vec<ServerStat>, Error> {
        let stats = self.show_stat(until).await?;
        stats
            .pool(pool)
            .map(|v| v.into_iter().cloned().collect())
            .map_err(|e| self.pool_error(&stats, pool, e))
    }

    /// One server of `pool`.
    pub async fn server(
        &self,
        pool: &str,
        server: &str,
        until: Instant,
    ) -> Result<ServerStat, Error> {
        let stats = self.show_stat(until).await?;
        let rows = stats
            .pool(pool)
            .map_err(|e| self.pool_error(&stats, pool, e))?;
        rows.iter()
            .find(|s| s.server == server)
            .map(|s| (*s).clone())
            .ok_or_else(|| Error::NoServer {
                endpoint: self.api.clone(),
                backend: stats.resolve(pool).unwrap_or(pool).to_string(),
                server: server.to_string(),
                servers: rows.iter().map(|s| s.server.clone()).collect(),
            })
    }

    /// `pool` as hacore's observed load-balancer state (see
    /// [`ServerStatus::backend_status`] for how statuses map).
    pub async fn pool_state(&self, pool: &str, until: Instant) -> Result<LbState, Error> {
        let stats = self.show_stat(until).await?;
        stats
            .lb_state(pool)
            .map_err(|e| self.pool_error(&stats, pool, e))
    }

    /// `set server BACKEND/SERVER state ready|drain|maint`, with the pool's
    /// runtime backend name looked up first. Needs a socket at `level
    /// admin`. Returns once HAProxy accepted it (see
    /// [`RuntimeClient::wait_server`] to wait for the effect).
    pub async fn set_server_state(
        &self,
        pool: &str,
        server: &str,
        state: AdminState,
        until: Instant,
    ) -> Result<(), Error> {
        check_name("pool", pool)?;
        check_name("server", server)?;
        let current = self.server(pool, server, until).await?;
        let command = format!("set server {}/{server} state {state}", current.backend);
        let answer = self.command(&command, until).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(Error::Refused {
                endpoint: self.api.clone(),
                command,
                answer: answer.trim().to_string(),
            })
        }
    }

    /// Poll `show stat` every `poll` until `server` of `pool` is as
    /// wanted; returns what was seen then. A server or pool that
    /// disappears is an error at once; the deadline is
    /// [`Error::WaitDeadline`] with the last status seen.
    pub async fn wait_server(
        &self,
        pool: &str,
        server: &str,
        want: Want,
        poll: Duration,
        until: Instant,
    ) -> Result<ServerStat, Error> {
        let mut last = String::from("nothing");
        let mut backend = pool.to_string();
        loop {
            match self.server(pool, server, until).await {
                Ok(s) if want.met(&s) => return Ok(s),
                Ok(s) => {
                    backend = s.backend.clone();
                    last = format!(
                        "{}, {} session(s)",
                        s.status_text,
                        s.sessions.map_or("?".into(), |n| n.to_string())
                    );
                }
                Err(
                    e @ (Error::NoPool { .. } | Error::NoServer { .. } | Error::BadInput { .. }),
                ) => {
                    return Err(e);
                }
                Err(Error::Deadline { .. }) => break,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() + poll >= until {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        Err(Error::WaitDeadline {
            endpoint: self.api.clone(),
            backend,
            server: server.to_string(),
            wanted: want,
            last,
        })
    }

    /// `server`'s administrative state, from `show servers state BACKEND`
    /// (`srv_admin_state`: bit 0x01 forced maint, 0x20 maint from
    /// resolution, 0x08 forced drain; maint wins over drain).
    pub async fn admin_state(
        &self,
        pool: &str,
        server: &str,
        until: Instant,
    ) -> Result<AdminState, Error> {
        check_name("pool", pool)?;
        check_name("server", server)?;
        let current = self.server(pool, server, until).await?;
        let command = format!("show servers state {}", current.backend);
        let text = self.command(&command, until).await?;
        let malformed = |reason: String| Error::Malformed {
            endpoint: self.api.clone(),
            command: command.clone(),
            reason,
        };
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let _version = lines.next();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix('#'))
            .ok_or_else(|| malformed("no `#` header line".into()))?
            .split_whitespace()
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| malformed(format!("no `{name}` column")))
        };
        let (name_col, admin_col) = (col("srv_name")?, col("srv_admin_state")?);
        for line in lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(name_col) != Some(&server) {
                continue;
            }
            let bits: u32 = f
                .get(admin_col)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| malformed(format!("{server}: srv_admin_state not a number")))?;
            return Ok(if bits & 0x21 != 0 {
                AdminState::Maint
            } else if bits & 0x08 != 0 {
                AdminState::Drain
            } else {
                AdminState::Ready
            });
        }
        Err(malformed(format!("no row for server {server}")))
    }

    /// Before a planned disruption: set `server` to drain, then wait until
    /// it has no sessions left (DOMAIN: drain, wait for sessions
    /// to reach 0 or a bound, then disrupt).
    pub async fn drain(
        &self,
        pool: &str,
        server: &str,
        until: Instant,
    ) -> Result<ServerStat, Error> {
        // HAProxy applies the state before it answers: from here on the
        // server takes no new connections; wait for the open ones to end.
        self.set_server_state(pool, server, AdminState::Drain, until)
            .await?;
        self.wait_server(pool, server, Want::Idle, POLL, until)
            .await
    }

    /// After a planned disruption: set `server` ready, then wait until its
    /// checks pass and it is UP.
    pub async fn ready(
        &self,
        pool: &str,
        server: &str,
        until: Instant,
    ) -> Result<ServerStat, Error> {
        self.set_server_state(pool, server, AdminState::Ready, until)
            .await?;
        self.wait_server(pool, server, Want::Status(ServerStatus::Up), POLL, until)
            .await
    }
}
