//! `hacli lb`: the apiserver load balancer's pool, and one server at a
//! time: add, remove, drain, ready, maint (`haops::lb`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hacore::backend::Op;
use hacore::topology::{RuntimeApi, Topology};
use pfsense::AdminState;
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
    #[arg(long, alias = "ssh-known-hosts")]
    pub known_hosts: Option<PathBuf>,
    /// Private key for SSH, overriding `loadBalancer.manage.identityFile`.
    #[arg(long, alias = "identity")]
    pub ssh_identity: Option<PathBuf>,
    /// Record the SSH host key of a host seen for the first time (said on
    /// stderr) instead of refusing it. A changed key is always refused.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Deadline of the whole operation, waits included.
    #[arg(long, alias = "timeout", default_value = "60s", value_parser = crate::args::parse_duration)]
    pub deadline: Duration,
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

impl Common {
    fn reach(&self) -> haops::Reach {
        haops::Reach {
            lb_runtime_api: self.lb_runtime_api.clone(),
            ssh: haops::reach::SshReach {
                identity: self.ssh_identity.clone(),
                known_hosts: self.known_hosts.clone(),
                accept_new_host_key: self.accept_new_host_key,
            },
            ..haops::Reach::default()
        }
    }
}

/// Run. A load balancer's error is said with its causes: exit 1 refused
/// (not ours, still in use), 2 bad input or configuration, 3 no answer.
pub fn run(cmd: Command) -> anyhow::Result<Exit> {
    let c = match &cmd {
        Command::Show(c) => c,
        Command::AddServer(a) | Command::RemoveServer(a) => &a.common,
        Command::Drain(a) | Command::Ready(a) | Command::Maint(a) => &a.common,
    };
    let (topology, report) = Topology::load(&c.topology)?;
    crate::print_warnings(&report.warnings);
    let t = haops::lb::open(&topology, &c.reach(), c.deadline);
    let result = t.map_err(anyhow::Error::from).and_then(|t| match &cmd {
        Command::Show(c) => show(c, &t.show()?),
        Command::AddServer(a) => change(&t, a, true),
        Command::RemoveServer(a) => change(&t, a, false),
        Command::Drain(a) => state(&t, a, AdminState::Drain),
        Command::Ready(a) => state(&t, a, AdminState::Ready),
        Command::Maint(a) => state(&t, a, AdminState::Maint),
    });
    result.or_else(|e| {
        let e = e.downcast::<haops::Error>()?;
        eprintln!("error: {}", pfsense::lb::error_chain(&e));
        Ok(match e.exit_code() {
            1 => Exit::Deny,
            3 => Exit::Unknown,
            _ => Exit::Usage,
        })
    })
}

fn show(c: &Common, v: &haops::lb::PoolView) -> anyhow::Result<Exit> {
    match c.output {
        Output::Text => out!("{}", v.to_text()),
        o => crate::print_doc(o, "LoadBalancerPool", v)?,
    }
    if let (Output::Text, Some(e)) = (c.output, &v.stats_error) {
        eprintln!("warning: live status unknown: {e}");
    }
    Ok(if v.exists && v.stats_error.is_none() {
        Exit::Ok
    } else {
        Exit::Unknown
    })
}

fn change(t: &haops::lb::Target<'_>, a: &ServerArgs, add: bool) -> anyhow::Result<Exit> {
    use haops::lb::ServerChange::{Done, Preview};
    let c = t.change(&a.node, add, a.address, a.dry_run)?;
    if a.common.output.is_document() {
        crate::print_doc(a.common.output, "LoadBalancerChange", &c)?;
        return Ok(Exit::Ok);
    }
    match c {
        Preview { edit: None, op, .. } => outln!(
            "dry run: nothing to change, {} is already in place",
            Op::LoadBalancer(op)
        ),
        Preview {
            edit: Some(e),
            before,
            ..
        } => {
            outln!("dry run on {}: would {}", t.describe(), e.describe());
            outln!("before: {}", json!(before));
            outln!("change: {}", json!(e));
        }
        Done { changed: true, op } => outln!("done: {}", Op::LoadBalancer(op)),
        Done { changed: false, op } => outln!("already in place: {}", Op::LoadBalancer(op)),
    }
    Ok(Exit::Ok)
}

fn state(t: &haops::lb::Target<'_>, a: &ServerArgs, s: AdminState) -> anyhow::Result<Exit> {
    let (pool, node) = (t.pool(), &a.node);
    if a.dry_run {
        outln!(
            "dry run: would set {pool}/{node} to {} through HAProxy's runtime API",
            s.as_str()
        );
        return Ok(Exit::Ok);
    }
    t.set_state(node, s, &mut |e| {
        crate::progress::Progress::spinner().on_event(e)
    })?;
    match a.common.output {
        Output::Text => outln!("{pool}/{node}: {}", s.as_str()),
        o => crate::print_doc(
            o,
            "LoadBalancerServer",
            &json!({"server": node, "state": s.as_str()}),
        )?,
    }
    Ok(Exit::Ok)
}
