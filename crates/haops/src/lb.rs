//! The apiserver load balancer one server at a time: its pool as it is
//! (configuration and live status), add or remove a server, drain, ready
//! or maint one (`pfsense::lb`: pfSense over SSH+PHP or REST, HAProxy's
//! runtime API). Each change is idempotent and says whether it was
//! already in place; a dry run shows the change and makes none.

use std::net::SocketAddr;
use std::time::Duration;

use hacore::Topology;
use hacore::backend::LbOp;
use pfsense::AdminState;
use pfsense::lb::model::{Edit, Pool};
use pfsense::lb::{LbBackend, LbOptions};
use serde::Serialize;

use crate::events::{Event, Events};
use crate::{Error, Reach};

/// The load balancer of `topology` (its `loadBalancer` section) and the
/// pool it names. `reach.ssh` overrides `loadBalancer.manage`'s
/// known_hosts and key; `timeout` bounds a whole operation, waits included.
pub struct Target<'a> {
    topology: &'a Topology,
    lb: LbBackend,
    pool: String,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("lb", &self.lb.describe())
            .field("pool", &self.pool)
            .finish()
    }
}

/// Reach the load balancer `topology` names.
pub fn open<'a>(
    topology: &'a Topology,
    reach: &Reach,
    timeout: Duration,
) -> Result<Target<'a>, Error> {
    let opts = LbOptions {
        timeout,
        known_hosts: reach.ssh.known_hosts.clone(),
        identity_file: reach.ssh.identity.clone(),
        ..reach.lb_options()
    };
    let lb = LbBackend::from_topology(topology, &opts)?;
    let pool = topology
        .load_balancer
        .pool
        .clone()
        .ok_or_else(|| Error::Setting {
            what: "loadBalancer.pool".into(),
            why: "the topology names no pool".into(),
        })?;
    Ok(Target { topology, lb, pool })
}

/// One server of the pool as configured, with its live status (None:
/// unknown).
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    /// Its name (the master's).
    pub server: String,
    /// `ADDRESS:PORT`.
    pub address: String,
    /// HAProxy's status (`UP`, `DOWN`, `DRAIN`, `MAINT`, ...).
    pub status: Option<String>,
    /// Current sessions.
    pub sessions: Option<u64>,
    /// The last health check.
    pub check: Option<String>,
}

/// The frontend on the control-plane endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct FrontendView {
    /// The endpoint.
    pub address: String,
    /// The frontend's name.
    pub name: String,
}

/// The pool as it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    /// How the load balancer is reached.
    pub load_balancer: String,
    /// The pool's name.
    pub pool: String,
    /// Whether the pool is configured.
    pub exists: bool,
    /// The frontend on the endpoint, if there is one yet.
    pub frontend: Option<FrontendView>,
    /// Its servers.
    pub servers: Vec<ServerView>,
    /// Changes written but not applied.
    pub pending_changes: bool,
    /// Why the live status is unknown.
    pub stats_error: Option<String>,
}

/// What adding or removing a server came to.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ServerChange {
    /// A dry run: the pool before, and the edit (None: already in place).
    Preview {
        /// Always true.
        #[serde(rename = "dryRun")]
        dry_run: bool,
        /// The pool as it is.
        before: Option<Pool>,
        /// The edit that would be made.
        edit: Option<Edit>,
        /// The operation.
        #[serde(skip)]
        op: LbOp,
    },
    /// Carried out.
    Done {
        /// Whether anything changed (false: already in place).
        changed: bool,
        /// The operation.
        op: LbOp,
    },
}

impl PoolView {
    /// The pool for people: a line for the pool, its frontend, then one
    /// row per server.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let absent = if self.exists { "" } else { " (not configured)" };
        let mut s = format!("{}: pool {}{absent}\n", self.load_balancer, self.pool);
        match &self.frontend {
            Some(f) => _ = writeln!(s, "  frontend {} on {}", f.name, f.address),
            None => s.push_str("  no frontend on the endpoint yet\n"),
        }
        if self.pending_changes {
            s.push_str("  changes are written but not applied\n");
        }
        let _ = writeln!(
            s,
            "  {:<20} {:<22} {:<12} {:>8}  CHECK",
            "SERVER", "ADDRESS", "STATUS", "SESSIONS"
        );
        for r in &self.servers {
            let sessions = r.sessions.map_or("?".to_string(), |n| n.to_string());
            let status = r.status.as_deref().unwrap_or("?");
            let check = r.check.as_deref().unwrap_or("");
            let _ = writeln!(
                s,
                "  {:<20} {:<22} {status:<12} {sessions:>8}  {check}",
                r.server, r.address
            );
        }
        s
    }
}

impl Target<'_> {
    /// How the load balancer is reached.
    pub fn describe(&self) -> String {
        self.lb.describe()
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The pool: configuration and live status (a status that cannot be
    /// read is in [`PoolView::stats_error`]).
    pub fn show(&self) -> Result<PoolView, Error> {
        let cfg = self.lb.read()?;
        let stats = self.lb.stats();
        let configured = cfg.pool(&self.pool);
        let servers = configured
            .map(|p| p.servers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let live = stats.as_ref().ok().and_then(|st| {
                    st.pool(&self.pool)
                        .ok()
                        .and_then(|rows| rows.into_iter().find(|r| r.server == s.name).cloned())
                });
                ServerView {
                    server: s.name.clone(),
                    address: format!("{}:{}", s.address, s.port),
                    status: live.as_ref().map(|l| l.status_text.clone()),
                    sessions: live.as_ref().and_then(|l| l.sessions),
                    check: live.as_ref().and_then(|l| l.check_status.clone()),
                }
            })
            .collect();
        let frontend = self.topology.load_balancer.frontend.and_then(|f| {
            cfg.frontend_on(f).map(|fe| FrontendView {
                address: f.to_string(),
                name: fe.name.clone(),
            })
        });
        Ok(PoolView {
            load_balancer: self.lb.describe(),
            pool: self.pool.clone(),
            exists: configured.is_some(),
            frontend,
            servers,
            pending_changes: cfg.pending,
            stats_error: stats.as_ref().err().map(|e| pfsense::lb::error_chain(e)),
        })
    }

    /// The operation that adds `node`'s server (at `address`, else the
    /// node's address and the endpoint's port) or removes it.
    fn server_op(&self, node: &str, add: bool, address: Option<SocketAddr>) -> Result<LbOp, Error> {
        if !add {
            return Ok(LbOp::RemoveServer {
                pool: self.pool.clone(),
                server: node.into(),
            });
        }
        let address = match address {
            Some(a) => a,
            None => {
                let n = self.topology.node(node).ok_or_else(|| Error::Setting {
                    what: format!("node {node}"),
                    why: "no node of that name in the topology".into(),
                })?;
                SocketAddr::new(n.address, self.topology.control_plane_endpoint.port)
            }
        };
        Ok(LbOp::AddServer {
            pool: self.pool.clone(),
            server: node.into(),
            address,
        })
    }

    /// Add `node`'s server (at `address`, else the node's address and the
    /// endpoint's port) or remove it, leaving every other server alone; a
    /// dry run shows the change and makes none.
    pub fn change(
        &self,
        node: &str,
        add: bool,
        address: Option<SocketAddr>,
        dry_run: bool,
    ) -> Result<ServerChange, Error> {
        let op = self.server_op(node, add, address)?;
        if dry_run {
            let (cfg, edit) = self.lb.plan(&op)?;
            return Ok(ServerChange::Preview {
                dry_run,
                before: cfg.pool(&self.pool).cloned(),
                edit,
                op,
            });
        }
        let changed = self.lb.apply_op(&op)?;
        Ok(ServerChange::Done { changed, op })
    }

    /// Set `node`'s server to `state` through HAProxy's runtime API
    /// (drain waits until its sessions end, within the timeout).
    pub fn set_state(
        &self,
        node: &str,
        state: AdminState,
        events: Events<'_>,
    ) -> Result<(), Error> {
        events(Event::Note(format!(
            "setting {}/{node} to {} ...",
            self.pool,
            state.as_str()
        )));
        Ok(self.lb.set_server_state(&self.pool, node, state)?)
    }
}
