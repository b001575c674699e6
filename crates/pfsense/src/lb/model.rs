//! The pieces of a load balancer's configuration that the backend manages,
//! read the same way from every transport, and the pure decisions made on
//! them: is an operation's effect in place, and which one edit brings it.
//!
//! Items are in pfSense's own shapes (the HAProxy package's
//! `installedpackages/haproxy` pools and frontends, `virtualip/vip`,
//! `unbound/hosts`); plain HAProxy's marked section is read into the same
//! shapes.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use hacore::backend::LbOp;
use hacore::topology::{CheckKind, DEFAULT_CONNECT_TIMEOUT, HealthCheck};
use hacore::units::Dur;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What marks a frontend as created by hacli (in its description).
pub const OURS: &str = "managed by hacli";

/// The managed part of a load balancer's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbConfig {
    /// Backend pools (pfSense: `ha_pools/item`).
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Frontends (pfSense: `ha_backends/item`).
    #[serde(default)]
    pub frontends: Vec<Frontend>,
    /// Virtual IPs (pfSense: `virtualip/vip`; Linux: the host's addresses).
    #[serde(default)]
    pub vips: Vec<Vip>,
    /// DNS host overrides (pfSense: `unbound/hosts`).
    #[serde(default)]
    pub hosts: Vec<HostOverride>,
    /// Changes written but not applied (pfSense's
    /// `/var/run/haproxy.conf.dirty`, pfrest's pending changes).
    #[serde(default)]
    pub pending: bool,
}

/// A backend pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// `HTTP`, `Basic`, `none`, ...
    #[serde(default)]
    pub check_type: String,
    /// The HTTP check's path.
    #[serde(default)]
    pub monitor_uri: String,
    /// Check interval, ms.
    #[serde(default)]
    pub checkinter: String,
    /// Servers.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// A server of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Port.
    #[serde(default)]
    pub port: String,
    /// `active`, `backup`, `disabled`, `inactive`.
    #[serde(default)]
    pub status: String,
    /// `yes`: TLS for the health check only.
    #[serde(default)]
    pub checkssl: String,
    /// Text appended to the server line.
    #[serde(default)]
    pub advanced: String,
}

impl Server {
    fn socket(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.address.parse().ok()?;
        Some(SocketAddr::new(ip, self.port.parse().ok()?))
    }
}

/// A frontend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub descr: String,
    /// `active` or `disabled`.
    #[serde(default)]
    pub status: String,
    /// `tcp`, `http`, `https`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The pool it sends to.
    #[serde(default)]
    pub backend_serverpool: String,
    /// Where it listens.
    #[serde(default)]
    pub binds: Vec<Bind>,
}

impl Frontend {
    /// Whether it listens on `addr`.
    pub fn binds_to(&self, addr: SocketAddr) -> bool {
        self.binds.iter().any(|b| b.socket() == Some(addr))
    }

    /// Whether hacli created it.
    pub fn is_ours(&self) -> bool {
        self.descr.contains(OURS)
    }
}

/// One listening address of a frontend (`a_extaddr/item`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// `custom` (then `extaddr_custom`), `<ip>_ipv4`, `lan_ipv4`, ...
    #[serde(default)]
    pub extaddr: String,
    /// The address, for `custom`.
    #[serde(default)]
    pub extaddr_custom: String,
    /// Port.
    #[serde(default)]
    pub extaddr_port: String,
}

impl Bind {
    /// The address and port, when they are literal.
    pub fn socket(&self) -> Option<SocketAddr> {
        let ip = if self.extaddr == "custom" {
            self.extaddr_custom.parse().ok()?
        } else {
            self.extaddr
                .strip_suffix("_ipv4")
                .or_else(|| self.extaddr.strip_suffix("_ipv6"))?
                .parse()
                .ok()?
        };
        Some(SocketAddr::new(ip, self.extaddr_port.parse().ok()?))
    }
}

/// A virtual IP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    /// `ipalias`, `carp`, `proxyarp`, `other`.
    #[serde(default)]
    pub mode: String,
    /// The interface.
    #[serde(default)]
    pub interface: String,
    /// The address.
    pub subnet: String,
    /// The prefix length.
    #[serde(default)]
    pub subnet_bits: String,
    /// Description.
    #[serde(default)]
    pub descr: String,
}

/// A DNS resolver host override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOverride {
    /// The first label.
    pub host: String,
    /// The rest of the name.
    pub domain: String,
    /// Addresses, comma-separated.
    #[serde(default)]
    pub ip: String,
    /// Description.
    #[serde(default)]
    pub descr: String,
}

impl HostOverride {
    /// `host.domain`.
    pub fn fqdn(&self) -> String {
        if self.domain.is_empty() {
            self.host.clone()
        } else {
            format!("{}.{}", self.host, self.domain)
        }
    }

    fn answers(&self, address: IpAddr) -> bool {
        self.ip
            .split(',')
            .any(|a| a.trim().parse::<IpAddr>() == Ok(address))
    }
}

/// Split a fully qualified name into pfSense's host and domain.
pub fn split_name(name: &str) -> (String, String) {
    let name = name.trim_end_matches('.');
    match name.split_once('.') {
        Some((h, d)) => (h.to_string(), d.to_string()),
        None => (name.to_string(), String::new()),
    }
}

impl LbConfig {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The frontend listening on `addr`.
    pub fn frontend_on(&self, addr: SocketAddr) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.binds_to(addr))
    }

    fn vip(&self, address: IpAddr) -> Option<&Vip> {
        self.vips
            .iter()
            .find(|v| v.subnet.parse::<IpAddr>() == Ok(address))
    }

    fn host(&self, name: &str) -> Option<&HostOverride> {
        let (h, d) = split_name(name);
        self.hosts.iter().find(|o| o.host == h && o.domain == d)
    }
}

/// One change to the configuration: exactly one item is added or removed.
/// Items are in pfSense's `config.xml` shapes (JSON objects), so a
/// transport writes them as they are.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Edit {
    /// Add a pool (with its servers).
    AddPool {
        /// The pool item.
        pool: Value,
    },
    /// Delete a pool no frontend uses.
    DeletePool {
        /// Name.
        pool: String,
    },
    /// Add one server to a pool.
    AddServer {
        /// Pool name.
        pool: String,
        /// The server item.
        server: Value,
    },
    /// Remove one server from a pool.
    RemoveServer {
        /// Pool name.
        pool: String,
        /// Server name.
        server: String,
    },
    /// Add a frontend.
    AddFrontend {
        /// The frontend item.
        frontend: Value,
    },
    /// Delete a frontend by name.
    DeleteFrontend {
        /// Name.
        frontend: String,
    },
    /// Add a virtual IP.
    AddVip {
        /// The `virtualip/vip` item.
        vip: Value,
    },
    /// Delete the virtual IP with this address.
    DeleteVip {
        /// The address.
        address: String,
    },
    /// Add a DNS host override.
    AddHost {
        /// The `unbound/hosts` item.
        host: Value,
    },
    /// Delete a DNS host override.
    DeleteHost {
        /// First label.
        host: String,
        /// Domain.
        domain: String,
    },
}

impl Edit {
    /// A one-line description, for journals, dry runs and `write_config`.
    pub fn describe(&self) -> String {
        match self {
            Edit::AddPool { pool } => format!("add pool {}", pool["name"].as_str().unwrap_or("?")),
            Edit::DeletePool { pool } => format!("delete pool {pool}"),
            Edit::AddServer { pool, server } => format!(
                "add server {} ({}:{}) to pool {pool}",
                server["name"].as_str().unwrap_or("?"),
                server["address"].as_str().unwrap_or("?"),
                server["port"].as_str().unwrap_or("?")
            ),
            Edit::RemoveServer { pool, server } => {
                format!("remove server {server} from pool {pool}")
            }
            Edit::AddFrontend { frontend } => {
                format!("add frontend {}", frontend["name"].as_str().unwrap_or("?"))
            }
            Edit::DeleteFrontend { frontend } => format!("delete frontend {frontend}"),
            Edit::AddVip { vip } => format!(
                "add virtual IP {}/{} on {}",
                vip["subnet"].as_str().unwrap_or("?"),
                vip["subnet_bits"].as_str().unwrap_or("?"),
                vip["interface"].as_str().unwrap_or("?")
            ),
            Edit::DeleteVip { address } => format!("delete virtual IP {address}"),
            Edit::AddHost { host } => format!(
                "add DNS host override {}.{} -> {}",
                host["host"].as_str().unwrap_or("?"),
                host["domain"].as_str().unwrap_or("?"),
                host["ip"].as_str().unwrap_or("?")
            ),
            Edit::DeleteHost { host, domain } => {
                format!("delete DNS host override {host}.{domain}")
            }
        }
    }

    /// Whether it changes HAProxy's own configuration (pools, frontends).
    pub fn is_haproxy(&self) -> bool {
        matches!(
            self,
            Edit::AddPool { .. }
                | Edit::DeletePool { .. }
                | Edit::AddServer { .. }
                | Edit::RemoveServer { .. }
                | Edit::AddFrontend { .. }
                | Edit::DeleteFrontend { .. }
        )
    }
}

/// Why an operation cannot be carried out on this configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether the effect of `op` is in place in `cfg`. Checks that need the
/// running HAProxy (`VerifyServersUp`) are not decided here: `None`.
pub fn is_done(op: &LbOp, cfg: &LbConfig) -> Option<bool> {
    let applied = !cfg.pending;
    Some(match op {
        LbOp::CreateVip {
            address, prefix, ..
        } => cfg
            .vip(*address)
            .is_some_and(|v| v.subnet_bits.is_empty() || v.subnet_bits == prefix.to_string()),
        LbOp::DeleteVip { address } => cfg.vip(*address).is_none(),
        LbOp::CreateDnsRecord { name, address } => {
            cfg.host(name).is_some_and(|o| o.answers(*address))
        }
        LbOp::DeleteDnsRecord { name } => cfg.host(name).is_none(),
        LbOp::CreatePool { pool, servers, .. } => {
            applied
                && cfg.pool(pool).is_some_and(|p| {
                    servers.iter().all(|(n, a)| {
                        p.servers
                            .iter()
                            .any(|s| &s.name == n && s.socket() == Some(*a))
                    })
                })
        }
        LbOp::DeletePool { pool } => applied && cfg.pool(pool).is_none(),
        LbOp::CreateFrontend { frontend, pool } => {
            applied
                && cfg
                    .frontend_on(*frontend)
                    .is_some_and(|f| &f.backend_serverpool == pool && f.status != "disabled")
        }
        LbOp::DeleteFrontend { frontend } => applied && cfg.frontend_on(*frontend).is_none(),
        LbOp::AddServer {
            pool,
            server,
            address,
        } => {
            applied
                && cfg.pool(pool).is_some_and(|p| {
                    p.servers
                        .iter()
                        .any(|s| &s.name == server && s.socket() == Some(*address))
                })
        }
        LbOp::RemoveServer { pool, server } => {
            applied
                && !cfg
                    .pool(pool)
                    .is_some_and(|p| p.servers.iter().any(|s| &s.name == server))
        }
        LbOp::VerifyServersUp { .. } => return None,
        // Runtime-API operations (see super::runtime): not configuration.
        LbOp::SetServerState { .. } | LbOp::WaitServerIdle { .. } => return None,
    })
}

/// The pfSense package's `check_type` for a health check.
fn check_type(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Https | CheckKind::Http => "HTTP",
        CheckKind::Tcp => "Basic",
        CheckKind::None => "none",
    }
}

/// HAProxy's `fastinter` for the apiserver pool's servers: the pause
/// between checks once one has failed (and while a server comes back).
/// HAProxy starts a check `inter` after the previous one *ended*, and a
/// check of a powered-off master ends only at its connect timeout
/// (min(`timeout connect`, `inter`) once `timeout check` is set), so
/// without it every failed check costs inter + that timeout and the master
/// is DOWN after about fall × (inter + timeout). With `fastinter` = inter
/// − timeout (at least inter / 2) each failed check costs about `inter`,
/// and the master is DOWN after about fall × inter.
pub fn fastinter(hc: &HealthCheck) -> Dur {
    let inter = hc.interval.0;
    let check_connect = connect_timeout(hc).0.min(inter);
    Dur((inter - check_connect).max(inter / 2))
}

/// A server item as pfSense's HAProxy package stores it, checked the way
/// DOMAIN.md's apiserver recipe says: TLS for the check only
/// (`checkssl`), never `ssl` (the pool passes TLS through), fall, rise
/// and [`fastinter`] in `advanced` (the package has no fields for them).
pub fn server_item(name: &str, address: SocketAddr, hc: &HealthCheck) -> Value {
    let https = hc.kind == CheckKind::Https;
    let advanced = if hc.kind == CheckKind::None {
        format!("fall {} rise {}", hc.fall, hc.rise)
    } else {
        format!(
            "fall {} rise {} fastinter {}",
            hc.fall,
            hc.rise,
            millis(fastinter(hc))
        )
    };
    json!({
        "name": name,
        "address": address.ip().to_string(),
        "port": address.port().to_string(),
        "status": "active",
        "weight": "",
        "ssl": "",
        "checkssl": if https { "yes" } else { "" },
        "sslserververify": "",
        "advanced": advanced,
    })
}

/// How many times HAProxy retries a connection that failed to connect
/// (pool `retries`): with `option redispatch 1` every retry goes to
/// another server, so 3 outlasts two dead masters of three.
pub const RETRIES: u32 = 3;

/// The pool's `timeout connect`: the topology's `connectTimeout`, 1 s by
/// default ([`DEFAULT_CONNECT_TIMEOUT`]).
pub fn connect_timeout(hc: &HealthCheck) -> Dur {
    hc.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

fn millis(d: Dur) -> String {
    d.0.as_millis().max(1).to_string()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The lines hacli puts in the apiserver pool's backend section
/// (pfSense: the pool's `advanced_backend`) so that a dead master costs
/// a client little and is found fast:
/// - `option redispatch 1`: every retry of a failed connect goes to
///   another server (plain `option redispatch` moves only the last of
///   the `retries`, after `retries × timeout connect`, too late for a
///   client's deadline). In TCP mode only the connect is retried, never
///   a request: nothing is sent twice.
/// - `timeout check` = the check interval: once a check's connect is up,
///   the TLS handshake and `GET /readyz` get one interval; and with it set
///   HAProxy gives the check's connect min(`timeout connect`, `inter`)
///   instead of the whole `inter`, so a check of a powered-off master
///   fails after `timeout connect`, and the master is DOWN after about
///   fall × (inter + timeout connect) rather than fall × 2 × inter.
pub fn failover_lines(hc: &HealthCheck) -> Vec<String> {
    let mut lines = vec!["option redispatch 1".to_string()];
    if hc.kind != CheckKind::None {
        lines.push(format!("timeout check {}", millis(hc.interval)));
    }
    lines
}

/// The edit that carries `op` out on `cfg`, `None` when its effect is
/// already in place (or it only checks). Refuses what would touch an item
/// that is not ours or leave a dangling reference.
pub fn edit_for(op: &LbOp, cfg: &LbConfig, hc: &HealthCheck) -> Result<Option<Edit>, Refused> {
    if is_done(op, cfg) != Some(false) {
        return Ok(None);
    }
    Ok(Some(match op {
        LbOp::CreateVip {
            address,
            prefix,
            interface,
            description,
        } => create_vip(cfg, *address, *prefix, interface, description)?,
        LbOp::DeleteVip { address } => delete_vip(cfg, *address)?,
        LbOp::CreateDnsRecord { name, address } => create_dns_record(cfg, name, *address)?,
        LbOp::DeleteDnsRecord { name } => delete_dns_record(cfg, name)?,
        LbOp::CreatePool {
            pool,
            check,
            path,
            interval,
            fall,
            rise,
            servers,
        } => {
            let hc = HealthCheck {
                kind: *check,
                path: path.clone(),
                interval: *interval,
                fall: *fall,
                rise: *rise,
                connect_timeout: hc.connect_timeout,
            };
            create_pool(cfg, pool, hc, servers)?
        }
        LbOp::DeletePool { pool } => {
            if let Some(f) = cfg.frontends.iter().find(|f| &f.backend_serverpool == pool) {
                return Err(Refused(format!(
                    "pool {pool} is still used by frontend {}: delete the frontend first",
                    f.name
                )));
            }
            Edit::DeletePool { pool: pool.clone() }
        }
        LbOp::CreateFrontend { frontend, pool } => create_frontend(cfg, *frontend, pool)?,
        LbOp::DeleteFrontend { frontend } => {
            let Some(f) = cfg.frontend_on(*frontend) else {
                return Ok(None);
            };
            if !f.is_ours() {
                return Err(Refused(format!(
                    "frontend {} on {frontend} was not created by hacli: delete it by hand",
                    f.name
                )));
            }
            Edit::DeleteFrontend {
                frontend: f.name.clone(),
            }
        }
        LbOp::AddServer {
            pool,
            server,
            address,
        } => add_server(cfg, pool, server, *address, hc)?,
        LbOp::RemoveServer { pool, server } => Edit::RemoveServer {
            pool: pool.clone(),
            server: server.clone(),
        },
        LbOp::VerifyServersUp { .. } => return Ok(None),
        LbOp::SetServerState { .. } | LbOp::WaitServerIdle { .. } => return Ok(None),
    }))
}

/// A virtual IP of ours, unless one is there already.
fn create_vip(
    cfg: &LbConfig,
    address: IpAddr,
    prefix: u8,
    interface: &str,
    description: &str,
) -> Result<Edit, Refused> {
    if let Some(v) = cfg.vip(address) {
        return Err(Refused(format!(
            "virtual IP {address} already exists with prefix /{} on {}: remove it or match the topology's network",
            v.subnet_bits, v.interface
        )));
    }
    Ok(Edit::AddVip {
        vip: json!({
            "mode": "ipalias",
            "interface": interface,
            "type": "single",
            "subnet": address.to_string(),
            "subnet_bits": prefix.to_string(),
            "descr": format!("{description} ({OURS})"),
        }),
    })
}

/// A virtual IP removed: only one hacli created (its description, or
/// on Linux its address label, carries the mark).
fn delete_vip(cfg: &LbConfig, address: IpAddr) -> Result<Edit, Refused> {
    // Only a VIP hacli created (its description, or on Linux its
    // address label, carries the mark).
    if let Some(v) = cfg.vip(address)
        && !v.descr.contains(OURS)
    {
        return Err(Refused(format!(
            "virtual IP {address}/{} on {} ({}) was not created by hacli: not deleting it",
            v.subnet_bits,
            v.interface,
            if v.descr.is_empty() {
                "no description"
            } else {
                v.descr.as_str()
            }
        )));
    }
    Ok(Edit::DeleteVip {
        address: address.to_string(),
    })
}

/// A DNS host override of ours, unless the name has one.
fn create_dns_record(cfg: &LbConfig, name: &str, address: IpAddr) -> Result<Edit, Refused> {
    if let Some(o) = cfg.host(name) {
        return Err(Refused(format!(
            "a DNS host override for {name} already answers {}: change it by hand or remove it",
            o.ip
        )));
    }
    let (host, domain) = split_name(name);
    Ok(Edit::AddHost {
        host: json!({
            "host": host,
            "domain": domain,
            "ip": address.to_string(),
            "descr": format!("Kubernetes API ({OURS})"),
            "aliases": "",
        }),
    })
}

/// A DNS host override removed: only one hacli created.
fn delete_dns_record(cfg: &LbConfig, name: &str) -> Result<Edit, Refused> {
    if let Some(o) = cfg.host(name)
        && !o.descr.contains(OURS)
    {
        return Err(Refused(format!(
            "the DNS host override {name} -> {} ({}) was not created by hacli: not deleting it",
            o.ip,
            if o.descr.is_empty() {
                "no description"
            } else {
                o.descr.as_str()
            }
        )));
    }
    let (host, domain) = split_name(name);
    Ok(Edit::DeleteHost { host, domain })
}

/// A pool of ours with its servers, each checked by `hc`, unless the
/// name is taken.
fn create_pool(
    cfg: &LbConfig,
    pool: &str,
    hc: HealthCheck,
    servers: &[(String, SocketAddr)],
) -> Result<Edit, Refused> {
    if cfg.pool(pool).is_some() {
        return Err(Refused(format!(
            "pool {pool} already exists with other servers: add or remove servers one at a time (hacli lb add-server), or pick another pool name"
        )));
    }

    let items: Vec<Value> = servers
        .iter()
        .map(|(n, a)| server_item(n, *a, &hc))
        .collect();
    let http = matches!(hc.kind, CheckKind::Https | CheckKind::Http);
    Ok(Edit::AddPool {
        pool: json!({
            "name": pool,
            "balance": "roundrobin",
            "check_type": check_type(hc.kind),
            "httpcheck_method": if http { "GET" } else { "" },
            "monitor_uri": if http { hc.path.clone().unwrap_or_else(|| "/readyz".into()) } else { String::new() },
            "monitor_httpversion": if http { "HTTP/1.0" } else { "" },
            "checkinter": hc.interval.0.as_millis().to_string(),
            "connection_timeout": millis(connect_timeout(&hc)),
            "retries": RETRIES.to_string(),
            "advanced_backend": b64(&failover_lines(&hc).join("\n")),
            "ha_servers": { "item": items },
        }),
    })
}

/// A frontend of ours on `frontend` to `pool`: the address must be free
/// and the pool there.
fn create_frontend(cfg: &LbConfig, frontend: SocketAddr, pool: &str) -> Result<Edit, Refused> {
    if let Some(f) = cfg.frontend_on(frontend) {
        return Err(Refused(format!(
            "frontend {} already listens on {frontend} (pool {}): it is not ours to change",
            f.name, f.backend_serverpool
        )));
    }
    if cfg.pool(pool).is_none() {
        return Err(Refused(format!(
            "no pool named {pool}: create the pool first"
        )));
    }
    let name = frontend_name(pool, cfg);
    Ok(Edit::AddFrontend {
        frontend: json!({
            "name": name,
            "descr": format!("Kubernetes API ({OURS})"),
            "status": "active",
            "type": "tcp",
            "backend_serverpool": pool,
            "a_extaddr": { "item": [{
                "extaddr": "custom",
                "extaddr_custom": frontend.ip().to_string(),
                "extaddr_port": frontend.port().to_string(),
                "extaddr_ssl": "",
            }]},
        }),
    })
}

/// A server added to `pool`, checked like its siblings.
fn add_server(
    cfg: &LbConfig,
    pool: &str,
    server: &str,
    address: SocketAddr,
    hc: &HealthCheck,
) -> Result<Edit, Refused> {
    let Some(p) = cfg.pool(pool) else {
        return Err(Refused(format!("no pool named {pool}")));
    };
    if let Some(s) = p.servers.iter().find(|s| s.name == server) {
        return Err(Refused(format!(
            "pool {pool} already has a server {server} at {}:{}: remove it first",
            s.address, s.port
        )));
    }
    // A new server is checked like its siblings.
    let mut item = server_item(server, address, hc);
    if let Some(sib) = p.servers.first() {
        item["checkssl"] = json!(sib.checkssl);
        item["advanced"] = json!(sib.advanced);
    }
    Ok(Edit::AddServer {
        pool: pool.to_string(),
        server: item,
    })
}

/// The frontend's name: the pool's, unless a frontend already has it.
fn frontend_name(pool: &str, cfg: &LbConfig) -> String {
    if cfg.frontends.iter().any(|f| f.name == pool) {
        format!("{pool}-vip")
    } else {
        pool.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::units::Dur;

    fn cfg() -> LbConfig {
        serde_json::from_value(json!({
            "pools": [
                {"name": "mail", "check_type": "Basic", "servers": [
                    {"name": "mx1", "address": "198.18.0.20", "port": "25", "advanced": "send-proxy-v2"}]},
                {"name": "api", "check_type": "HTTP", "monitor_uri": "/readyz", "servers": [
                    {"name": "m1", "address": "198.18.0.10", "port": "6443", "checkssl": "yes", "advanced": "fall 3 rise 2"}]}
            ],
            "frontends": [
                {"name": "smtp", "descr": "mail", "status": "active", "type": "tcp", "backend_serverpool": "mail",
                 "binds": [{"extaddr": "custom", "extaddr_custom": "198.18.0.2", "extaddr_port": "25"}]}
            ],
            "vips": [{"mode": "ipalias", "interface": "lan", "subnet": "198.18.0.2", "subnet_bits": "24"}],
            "hosts": [],
            "pending": false
        }))
        .unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_server_copies_its_siblings_check_and_is_done_once_present() {
        let mut c = cfg();
        let op = LbOp::AddServer {
            pool: "api".into(),
            server: "m2".into(),
            address: sa("198.18.0.11:6443"),
        };
        assert_eq!(is_done(&op, &c), Some(false));
        let Some(Edit::AddServer { server, .. }) =
            edit_for(&op, &c, &HealthCheck::default()).unwrap()
        else {
            panic!("expected an AddServer edit")
        };
        assert_eq!(server["checkssl"], "yes");
        assert_eq!(server["advanced"], "fall 3 rise 2");
        c.pools[1]
            .servers
            .push(serde_json::from_value(server).unwrap());
        assert_eq!(is_done(&op, &c), Some(true));
        assert_eq!(edit_for(&op, &c, &HealthCheck::default()).unwrap(), None);
        // Pending (written, not applied) is not done.
        c.pending = true;
        assert_eq!(is_done(&op, &c), Some(false));
    }

    #[test]
    fn refuses_what_is_not_ours_or_still_referenced() {
        let c = cfg();
        let hc = HealthCheck::default();
        let e = edit_for(
            &LbOp::DeletePool {
                pool: "mail".into(),
            },
            &c,
            &hc,
        )
        .unwrap_err();
        assert!(e.0.contains("still used by frontend smtp"), "{e}");
        let e = edit_for(
            &LbOp::DeleteFrontend {
                frontend: sa("198.18.0.2:25"),
            },
            &c,
            &hc,
        )
        .unwrap_err();
        assert!(e.0.contains("not created by hacli"), "{e}");
        let e = edit_for(
            &LbOp::CreateFrontend {
                frontend: sa("198.18.0.2:25"),
                pool: "api".into(),
            },
            &c,
            &hc,
        )
        .unwrap_err();
        assert!(e.0.contains("already listens"), "{e}");
        let e = edit_for(
            &LbOp::AddServer {
                pool: "nope".into(),
                server: "x".into(),
                address: sa("198.18.0.9:1"),
            },
            &c,
            &hc,
        )
        .unwrap_err();
        assert!(e.0.contains("no pool named nope"), "{e}");
    }

    #[test]
    fn pool_item_follows_the_apiserver_recipe() {
        let op = LbOp::CreatePool {
            pool: "k8s".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: Dur::secs(2),
            fall: 3,
            rise: 2,
            servers: vec![("m1".into(), sa("198.18.0.10:6443"))],
        };
        let Some(Edit::AddPool { pool }) = edit_for(&op, &cfg(), &HealthCheck::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(pool["check_type"], "HTTP");
        assert_eq!(pool["monitor_uri"], "/readyz");
        assert_eq!(pool["monitor_httpversion"], "HTTP/1.0");
        assert_eq!(pool["checkinter"], "2000");
        // Fail over fast: a short connect, retries on other servers, a
        // check bounded by its interval.
        assert_eq!(pool["connection_timeout"], "1000");
        assert_eq!(pool["retries"], "3");
        let adv = base64::engine::general_purpose::STANDARD
            .decode(pool["advanced_backend"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(adv).unwrap(),
            "option redispatch 1\ntimeout check 2000"
        );
        let s = &pool["ha_servers"]["item"][0];
        assert_eq!(s["checkssl"], "yes");
        assert_eq!(s["ssl"], "");
        // A failed check of a dead master costs its 1 s connect, so the
        // next one comes 1 s later: one check per 2 s interval.
        assert_eq!(s["advanced"], "fall 3 rise 2 fastinter 1000");
    }

    #[test]
    fn the_topology_sets_the_connect_timeout_and_the_check_its_interval() {
        let op = LbOp::CreatePool {
            pool: "k8s".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "200ms".parse().unwrap(),
            fall: 2,
            rise: 1,
            servers: vec![("m1".into(), sa("198.18.0.10:6443"))],
        };
        let hc = HealthCheck {
            connect_timeout: Some("1500ms".parse().unwrap()),
            ..HealthCheck::default()
        };
        let Some(Edit::AddPool { pool }) = edit_for(&op, &cfg(), &hc).unwrap() else {
            panic!()
        };
        assert_eq!(pool["connection_timeout"], "1500");
        let adv = base64::engine::general_purpose::STANDARD
            .decode(pool["advanced_backend"].as_str().unwrap())
            .unwrap();
        assert_eq!(adv, b"option redispatch 1\ntimeout check 200");
        // The check's connect is bounded by the 200 ms interval: half of
        // it between failed checks.
        let s = &pool["ha_servers"]["item"][0];
        assert_eq!(s["advanced"], "fall 2 rise 1 fastinter 100");
        // Without a check there is no check to bound; redispatch stays.
        let hc = HealthCheck {
            kind: CheckKind::None,
            ..HealthCheck::default()
        };
        assert_eq!(failover_lines(&hc), ["option redispatch 1"]);
    }

    #[test]
    fn vip_and_dns_records() {
        let mut c = cfg();
        let vip: IpAddr = "198.18.0.99".parse().unwrap();
        let op = LbOp::CreateVip {
            address: vip,
            prefix: 24,
            interface: "lan".into(),
            description: "x".into(),
        };
        assert_eq!(is_done(&op, &c), Some(false));
        c.vips.push(Vip {
            subnet: vip.to_string(),
            subnet_bits: "24".into(),
            ..Vip::default()
        });
        assert_eq!(is_done(&op, &c), Some(true));
        let dns = LbOp::CreateDnsRecord {
            name: "k8s-api.lab.lan".into(),
            address: vip,
        };
        let Some(Edit::AddHost { host }) = edit_for(&dns, &c, &HealthCheck::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (host["host"].as_str(), host["domain"].as_str()),
            (Some("k8s-api"), Some("lab.lan"))
        );
        c.hosts.push(serde_json::from_value(host).unwrap());
        assert_eq!(is_done(&dns, &c), Some(true));
    }

    /// Issue 21: a rollback that deletes a VIP or a DNS record deletes only
    /// one hacli created: the one already there (a create refused, or
    /// found in place) is left, naming it.
    #[test]
    fn a_vip_or_dns_record_hacli_did_not_create_is_not_deleted() {
        let mut c = cfg();
        let hc = HealthCheck::default();
        let e = edit_for(
            &LbOp::DeleteVip {
                address: "198.18.0.2".parse().unwrap(),
            },
            &c,
            &hc,
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "virtual IP 198.18.0.2/24 on lan (no description) was not created by hacli: not deleting it"
        );
        c.hosts.push(HostOverride {
            host: "k8s-api".into(),
            domain: "lab.lan".into(),
            ip: "198.18.0.2".into(),
            descr: "the old API name".into(),
        });
        let dns = LbOp::DeleteDnsRecord {
            name: "k8s-api.lab.lan".into(),
        };
        let e = edit_for(&dns, &c, &hc).unwrap_err();
        assert_eq!(
            e.0,
            "the DNS host override k8s-api.lab.lan -> 198.18.0.2 (the old API name) was not created by hacli: not deleting it"
        );
        // Ours: deleted.
        c.hosts[0].descr = format!("Kubernetes API ({OURS})");
        c.vips[0].descr = format!("VIP ({OURS})");
        assert!(matches!(
            edit_for(&dns, &c, &hc),
            Ok(Some(Edit::DeleteHost { .. }))
        ));
        assert!(matches!(
            edit_for(
                &LbOp::DeleteVip {
                    address: "198.18.0.2".parse().unwrap()
                },
                &c,
                &hc
            ),
            Ok(Some(Edit::DeleteVip { .. }))
        ));
    }
}
