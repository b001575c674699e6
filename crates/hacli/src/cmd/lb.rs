//! `hacli lb`: the apiserver load balancer's pool, and one server at a
//! time: add, remove, drain, ready, maint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::backend::LbOp;
use hacore::topology::{RuntimeApi, Topology};
use pfsense::AdminState;
use pfsense::lb::{LbBackend, LbError, LbOptions};
use serde_json::json;

use crate::{Exit, Output};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The pool: each server's address, status, sessions and last check.
    Show(Common),
    /// Add NODE's apiserver to the pool (the node's address and the
    /// endpoint's port unless --address), leaving every other server alone.
    AddServer(ServerArgs),
    /// Remove NODE's server from the pool.
    RemoveServer(ServerArgs),
    /// Stop sending NODE new connections and wait until its sessions end.
    Drain(ServerArgs),
    /// Put NODE's server back into service.
    Ready(ServerArgs),
    /// Put NODE's server in maintenance (no traffic, no checks).
    Maint(ServerArgs),
}

/// How to reach the load balancer.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Topology file (its `loadBalancer` section says how to reach it).
    #[arg(long, short = 't', env = "HACLI_TOPOLOGY")]
    pub topology: PathBuf,
    /// HAProxy's runtime API, overriding `loadBalancer.runtimeApi`.
    #[arg(long, env = "HACLI_LB_RUNTIME_API")]
    pub lb_runtime_api: Option<RuntimeApi>,
    /// known_hosts file for SSH, overriding `loadBalancer.manage.knownHosts`.
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Private key for SSH, overriding `loadBalancer.manage.identityFile`.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Record the SSH host key of a host seen for the first time (said on
    /// stderr) instead of refusing it. A changed key is always refused.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Deadline of the whole operation, waits included.
    #[arg(long, default_value = "60s", value_parser = crate::args::parse_duration)]
    pub timeout: Duration,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// A server of the pool.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The master (its name is the server's name).
    pub node: String,
    /// The server's address, instead of the node's address and the
    /// endpoint's port.
    #[arg(long)]
    pub address: Option<SocketAddr>,
    /// Show the change (the items before and after) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

fn open(c: &Common) -> anyhow::Result<(Topology, LbBackend)> {
    let (topology, report) = Topology::load(&c.topology)?;
    crate::print_warnings(&report.warnings);
    let opts = LbOptions {
        timeout: c.timeout,
        accept_new_host_key: c.accept_new_host_key,
        runtime_api: c.lb_runtime_api.clone(),
        known_hosts: c.known_hosts.clone(),
        identity_file: c.identity.clone(),
        rest_credentials: None,
    };
    let lb = LbBackend::from_topology(&topology, &opts)
        .with_context(|| format!("{}: loadBalancer", c.topology.display()))?;
    Ok((topology, lb))
}

fn pool(t: &Topology) -> anyhow::Result<String> {
    t.load_balancer
        .pool
        .clone()
        .context("loadBalancer.pool: the topology names no pool")
}

/// Exit code for a load-balancer error: 1 refused (not ours, still in
/// use), 2 bad input or configuration, 3 no answer.
fn exit_for(e: &LbError) -> Exit {
    match e {
        LbError::Refused(_) => Exit::Deny,
        LbError::Config(_) | LbError::Auth { .. } | LbError::Invalid { .. } => Exit::Usage,
        _ => Exit::Unknown,
    }
}

fn fail(e: LbError) -> anyhow::Result<Exit> {
    eprintln!("error: {}", pfsense::lb::error_chain(&e));
    Ok(exit_for(&e))
}

/// Run.
pub fn run(cmd: Command) -> anyhow::Result<Exit> {
    match cmd {
        Command::Show(c) => show(&c),
        Command::AddServer(a) => change(&a, true),
        Command::RemoveServer(a) => change(&a, false),
        Command::Drain(a) => state(&a, AdminState::Drain),
        Command::Ready(a) => state(&a, AdminState::Ready),
        Command::Maint(a) => state(&a, AdminState::Maint),
    }
}

fn show(c: &Common) -> anyhow::Result<Exit> {
    let (t, lb) = open(c)?;
    let name = pool(&t)?;
    let cfg = match lb.read() {
        Ok(cfg) => cfg,
        Err(e) => return fail(e),
    };
    let stats = lb.stats();
    let configured = cfg.pool(&name);
    let mut rows = Vec::new();
    for s in configured.map(|p| p.servers.as_slice()).unwrap_or_default() {
        let live = stats.as_ref().ok().and_then(|st| {
            st.pool(&name)
                .ok()
                .and_then(|rows| rows.into_iter().find(|r| r.server == s.name).cloned())
        });
        rows.push(json!({
            "server": s.name,
            "address": format!("{}:{}", s.address, s.port),
            "status": live.as_ref().map(|l| l.status_text.clone()),
            "sessions": live.as_ref().and_then(|l| l.sessions),
            "check": live.as_ref().and_then(|l| l.check_status.clone()),
        }));
    }
    let frontend = t
        .load_balancer
        .frontend
        .and_then(|f| cfg.frontend_on(f).map(|fe| (f, fe.name.clone())));
    let stats_error = stats.as_ref().err().map(|e| pfsense::lb::error_chain(e));
    match c.output {
        Output::Json => crate::print_json(&json!({
            "loadBalancer": lb.describe(),
            "pool": name,
            "exists": configured.is_some(),
            "frontend": frontend.as_ref().map(|(f, n)| json!({"address": f.to_string(), "name": n})),
            "servers": rows,
            "pendingChanges": cfg.pending,
            "statsError": stats_error,
        }))?,
        Output::Text => {
            outln!(
                "{}: pool {name}{}",
                lb.describe(),
                if configured.is_none() {
                    " (not configured)"
                } else {
                    ""
                }
            );
            match &frontend {
                Some((f, n)) => outln!("  frontend {n} on {f}"),
                None => outln!("  no frontend on the endpoint yet"),
            }
            if cfg.pending {
                outln!("  changes are written but not applied");
            }
            outln!(
                "  {:<20} {:<22} {:<12} {:>8}  CHECK",
                "SERVER",
                "ADDRESS",
                "STATUS",
                "SESSIONS"
            );
            for r in &rows {
                outln!(
                    "  {:<20} {:<22} {:<12} {:>8}  {}",
                    r["server"].as_str().unwrap_or(""),
                    r["address"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or("?"),
                    r["sessions"]
                        .as_u64()
                        .map_or("?".to_string(), |s| s.to_string()),
                    r["check"].as_str().unwrap_or("")
                );
            }
            if let Some(e) = &stats_error {
                eprintln!("warning: live status unknown: {e}");
            }
        }
    }
    Ok(if configured.is_some() && stats.is_ok() {
        Exit::Ok
    } else {
        Exit::Unknown
    })
}

fn change(a: &ServerArgs, add: bool) -> anyhow::Result<Exit> {
    let (t, lb) = open(&a.common)?;
    let name = pool(&t)?;
    let op = if add {
        let address = match a.address {
            Some(x) => x,
            None => {
                let node = t.node(&a.node).with_context(|| {
                    format!("{}: no node named {}", a.common.topology.display(), a.node)
                })?;
                SocketAddr::new(node.address, t.control_plane_endpoint.port)
            }
        };
        LbOp::AddServer {
            pool: name.clone(),
            server: a.node.clone(),
            address,
        }
    } else {
        LbOp::RemoveServer {
            pool: name.clone(),
            server: a.node.clone(),
        }
    };
    if a.dry_run {
        let (cfg, edit) = match lb.plan(&op) {
            Ok(x) => x,
            Err(e) => return fail(e),
        };
        let before = cfg.pool(&name).cloned();
        match a.common.output {
            Output::Json => {
                crate::print_json(&json!({"dryRun": true, "before": before, "edit": edit}))?
            }
            Output::Text => match &edit {
                None => outln!(
                    "dry run: nothing to change, {} is already in place",
                    hacore::backend::Op::LoadBalancer(op)
                ),
                Some(e) => {
                    outln!("dry run on {}: would {}", lb.describe(), e.describe());
                    outln!("before: {}", serde_json::to_string(&before)?);
                    outln!("change: {}", serde_json::to_string(e)?);
                }
            },
        }
        return Ok(Exit::Ok);
    }
    match lb.apply_op(&op) {
        Ok(changed) => {
            match a.common.output {
                Output::Json => crate::print_json(&json!({"changed": changed, "op": op}))?,
                Output::Text if changed => {
                    outln!("done: {}", hacore::backend::Op::LoadBalancer(op))
                }
                Output::Text => outln!(
                    "already in place: {}",
                    hacore::backend::Op::LoadBalancer(op)
                ),
            }
            Ok(Exit::Ok)
        }
        Err(e) => fail(e),
    }
}

fn state(a: &ServerArgs, s: AdminState) -> anyhow::Result<Exit> {
    let (t, lb) = open(&a.common)?;
    let name = pool(&t)?;
    if a.dry_run {
        outln!(
            "dry run: would set {name}/{} to {} through HAProxy's runtime API",
            a.node,
            s.as_str()
        );
        return Ok(Exit::Ok);
    }
    eprintln!("setting {name}/{} to {} ...", a.node, s.as_str());
    match lb.set_server_state(&name, &a.node, s) {
        Ok(()) => {
            match a.common.output {
                Output::Json => crate::print_json(&json!({"server": a.node, "state": s.as_str()}))?,
                Output::Text => outln!("{name}/{}: {}", a.node, s.as_str()),
            }
            Ok(Exit::Ok)
        }
        Err(e) => fail(e),
    }
}
