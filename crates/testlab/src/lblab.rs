//! A lab for the load-balancer backend: a lab network of isolated hosts
//! (see [`crate::host`]) holding
//! - `pfsense`: the pfSense stand-in (PHP, a real HAProxy, pfrest over
//!   HTTPS on :443) with its sshd, whose sessions get PHP's environment;
//! - `lb`: a Linux host running a real HAProxy in master-worker mode, its
//!   configuration in `/etc/haproxy/haproxy.cfg` with a frontend and a
//!   backend that are not ours, reloaded by `kill -USR2`, its runtime API
//!   on `:9999`;
//!
//! and, in the root namespace on addresses of the lab network
//! (`198.18.N.201..`), Kubernetes API stand-ins for three masters that
//! serve `/readyz` over TLS with a certificate for the masters and the VIP.
//! A client key is authorised on both hosts, and a `known_hosts` file
//! names their host keys. [`LbLab::topology`] writes a topology whose
//! `loadBalancer.manage` reaches one of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::apiserver::{ApiServer, Store};
use crate::host::{Host, HostLab, HostSpec};
use crate::pfsense::{Pfsense, PfsenseOptions, VipMode, bind_in_netns};
use crate::pki::Authority;

/// The Linux HAProxy host's configuration, before hacli touches it: a
/// frontend and a backend that are not ours.
pub const LINUX_HAPROXY_CFG: &str = "global
    stats socket ipv4@0.0.0.0:9999 level admin
    stats timeout 30s

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

# Not ours: hacli must leave these lines alone.
frontend metrics
    bind *:8404
    default_backend metrics

backend metrics
    server local 127.0.0.1:9100 check inter 5s
";

/// Which way the backend reaches the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// pfSense, PHP over SSH.
    PfsenseSsh,
    /// pfSense, REST API.
    PfsenseRest,
    /// Plain HAProxy over SSH.
    Haproxy,
}

/// The running lab. Drop order: servers and hosts before the directory.
pub struct LbLab {
    /// The pfSense stand-in.
    pub pfsense: Pfsense,
    /// The pfSense host.
    pub pf_host: Host,
    /// The Linux HAProxy host.
    pub lb_host: Host,
    _haproxy: Option<Child>,
    api: ApiServer,
    /// The lab network.
    pub net: HostLab,
    rt: tokio::runtime::Runtime,
    /// The masters: name and apiserver address.
    pub masters: Vec<(String, SocketAddr)>,
    /// The VIP (an address of the lab network that no host has yet).
    pub vip: IpAddr,
    /// The Kubernetes CA (PEM) that signed the apiservers' certificate.
    pub ca_pem: String,
    /// The private key hacli logs in with.
    pub client_key: PathBuf,
    /// known_hosts naming both hosts.
    pub known_hosts: PathBuf,
    /// pfrest's CA, as a file.
    pub rest_ca: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for LbLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbLab")
            .field("vip", &self.vip)
            .field("masters", &self.masters)
            .finish_non_exhaustive()
    }
}

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl LbLab {
    /// Start it, or [`crate::skip::skip`] (a failure under
    /// `HACLI_REQUIRE_LABS=1`) and return None where lab hosts cannot be
    /// isolated or a program is missing.
    pub fn start_or_skip(test: &str) -> Option<LbLab> {
        let net = HostLab::start_for(test);
        if !net.isolated_or_skip(test) {
            return None;
        }
        match LbLab::start(net) {
            Ok(l) => Some(l),
            Err(e) if e.starts_with("missing:") => {
                crate::skip::skip(test, &e);
                None
            }
            Err(e) => panic!("{test}: the load-balancer lab did not start: {e}"),
        }
    }

    fn start(net: HostLab) -> Result<LbLab, String> {
        if crate::haproxy::haproxy_binary().is_none() {
            return Err("missing: haproxy (Debian haproxy)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("hacli-lblab-")
            .tempdir()
            .map_err(err)?;
        let base = net.gateway().octets();
        let at = |k: u8| Ipv4Addr::new(base[0], base[1], base[2], k);
        let iface = net
            .interface()
            .ok_or("the lab network has no root-side interface")?;
        // The masters' apiservers: addresses of the root namespace on the
        // lab network, so the hosts reach them through the switch.
        let master_ips: Vec<IpAddr> = (201..=203).map(|k| IpAddr::V4(at(k))).collect();
        for ip in &master_ips {
            let out = std::process::Command::new("ip")
                .args(["addr", "add", &format!("{ip}/32"), "dev", &iface])
                .output()
                .map_err(err)?;
            if !out.status.success()
                && !String::from_utf8_lossy(&out.stderr).contains("File exists")
            {
                return Err(format!(
                    "ip addr add {ip}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let vip = IpAddr::V4(at(99));
        let ca = Authority::new("lab Kubernetes CA").map_err(err)?;
        let mut ips = master_ips.clone();
        ips.push(vip);
        let pair = ca
            .issue_server(
                "kube-apiserver",
                &["kubernetes", "kubernetes.default"],
                &ips,
            )
            .map_err(err)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(err)?;
        let api = ApiServer::start(&rt, &master_ips, &pair, "lab-token", Store::default())
            .map_err(err)?;
        let masters: Vec<(String, SocketAddr)> = master_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("m{}", i + 1), SocketAddr::new(*ip, api.port)))
            .collect();

        let (client_key, public) =
            crate::sshd::client_key(dir.path(), "ed25519", None).map_err(err)?;

        // pfSense.
        let mut pf_host = net
            .add_host_with(HostSpec {
                name: "pfsense".into(),
                addr: None,
                private_paths: vec!["/var/run".into(), "/var/unbound".into()],
            })
            .map_err(err)?;
        let pid = pf_host.pid().ok_or("the pfSense host has no PID 1")?;
        let rest_listener = bind_in_netns(pid, SocketAddr::new(pf_host.ip(), 443)).map_err(err)?;
        let pfsense = Pfsense::start(
            &pf_host.dir().join("fs"),
            pf_host.ip(),
            PfsenseOptions {
                lan_if: "eth0".into(),
                lan_bits: 24,
                vip_mode: VipMode::Ip,
                inside_root: Some(PathBuf::from("/")),
                exec_prefix: pf_host.wrapper(),
                rest_listener: Some(rest_listener),
                ..PfsenseOptions::default()
            },
        )
        .map_err(err)?;
        pf_host
            .start_sshd_with_env(vec![public.clone()], pfsense.php_env())
            .map_err(err)?;
        let rest_ca = dir.path().join("pfrest-ca.pem");
        std::fs::write(&rest_ca, pfsense.ca_pem()).map_err(err)?;

        // Plain HAProxy on Linux.
        let mut lb_host = net
            .add_host_with(HostSpec {
                name: "lb".into(),
                addr: None,
                private_paths: vec!["/etc/haproxy".into()],
            })
            .map_err(err)?;
        std::fs::write(lb_host.path("/etc/haproxy/haproxy.cfg"), LINUX_HAPROXY_CFG).map_err(err)?;
        let haproxy = lb_host
            .spawn(
                &[
                    "haproxy",
                    "-W",
                    "-db",
                    "-f",
                    "/etc/haproxy/haproxy.cfg",
                    "-p",
                    "/etc/haproxy/haproxy.pid",
                ],
                &[],
            )
            .map_err(err)?;
        lb_host
            .wait_port(9999, Duration::from_secs(10))
            .map_err(err)?;
        lb_host.start_sshd(vec![public]).map_err(err)?;

        let known_hosts = dir.path().join("known_hosts");
        let lines: Vec<String> = [&pf_host, &lb_host]
            .iter()
            .filter_map(|h| h.known_hosts_line())
            .collect();
        std::fs::write(&known_hosts, lines.join("\n") + "\n").map_err(err)?;

        let lab = LbLab {
            pfsense,
            pf_host,
            lb_host,
            _haproxy: Some(haproxy),
            api,
            net,
            rt,
            masters,
            vip,
            ca_pem: ca.cert_pem().to_string(),
            client_key,
            known_hosts,
            rest_ca,
            dir,
        };
        Ok(lab)
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The runtime the apiserver stand-ins run on (use it for load).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// The apiserver stand-ins' port.
    pub fn api_port(&self) -> u16 {
        self.api.port
    }

    /// The apiserver stand-ins' object store (shared by the three).
    pub fn store(&self) -> &Store {
        &self.api.store
    }

    /// Kill master `i`'s apiserver (its port refuses connections, its open
    /// connections drop), or start it again with `up`.
    pub fn set_apiserver_up(&self, i: usize, up: bool) {
        let ip = self.masters[i].1.ip();
        let _guard = self.rt.enter();
        if up {
            self.api.revive(ip);
        } else {
            self.api.kill(ip);
        }
    }

    /// Power master `i` off as a powered-off VM looks to the load
    /// balancers, or on again with `on`. Off: the pfSense and Linux
    /// HAProxy hosts get a permanent neighbour entry for the master's
    /// address with a MAC no one has, so their packets to it vanish with
    /// no answer (a SYN is neither accepted nor refused: what a load
    /// balancer meets when a master loses power, until its ARP entry
    /// fails), and its apiserver is killed. On: the entries are removed
    /// (ARP finds the master again) and the apiserver started again.
    pub fn set_master_power(&self, i: usize, on: bool) -> Result<(), String> {
        const NOBODY: &str = "02:00:5e:00:de:ad";
        let ip = self.masters[i].1.ip().to_string();
        for h in [&self.pf_host, &self.lb_host] {
            if on {
                // Absent already is fine: nothing to undo.
                let _ = h.exec(&["ip", "neigh", "del", &ip, "dev", "eth0"]);
            } else {
                h.exec_ok(&[
                    "ip",
                    "neigh",
                    "replace",
                    &ip,
                    "lladdr",
                    NOBODY,
                    "nud",
                    "permanent",
                    "dev",
                    "eth0",
                ])
                .map_err(|e| format!("{}: silencing {ip}: {e}", h.name()))?;
            }
        }
        self.set_apiserver_up(i, on);
        Ok(())
    }

    /// The runtime API of the load balancer `via` reaches, as a topology
    /// writes it (pfSense over SSH reads its local socket itself).
    pub fn runtime_api(&self, via: Via) -> Option<String> {
        match via {
            Via::PfsenseSsh => None,
            // pfSense's local socket, seen through the host's private /tmp (a
            // real pfSense would expose a TCP stats socket on its LAN).
            Via::PfsenseRest => Some(format!(
                "unix:{}",
                self.pf_host.path("/tmp/haproxy.socket").display()
            )),
            Via::Haproxy => Some(format!("tcp:{}:9999", self.lb_host.ip())),
        }
    }

    /// A topology file whose load balancer is reached `via`, with the
    /// masters as control-plane nodes and the VIP as the endpoint. For
    /// REST, set `PFSENSE_API_KEY` to [`Pfsense::api_key`] as well.
    pub fn topology(&self, via: Via) -> PathBuf {
        let (kind, manage) = match via {
            Via::PfsenseSsh => (
                "pfsense-haproxy",
                format!(
                    "transport: ssh, host: {}, user: root, identityFile: {}, knownHosts: {}",
                    self.pf_host.ip(),
                    self.client_key.display(),
                    self.known_hosts.display()
                ),
            ),
            Via::PfsenseRest => (
                "pfsense-haproxy",
                format!(
                    "transport: rest, url: \"{}\", caFile: {}",
                    self.pfsense.rest_url(),
                    self.rest_ca.display()
                ),
            ),
            Via::Haproxy => (
                "haproxy",
                format!(
                    "transport: ssh, host: {}, user: root, identityFile: {}, knownHosts: {}, configPath: /etc/haproxy/haproxy.cfg, reloadCommand: \"kill -USR2 $(cat /etc/haproxy/haproxy.pid)\"",
                    self.lb_host.ip(),
                    self.client_key.display(),
                    self.known_hosts.display()
                ),
            ),
        };
        let runtime = self
            .runtime_api(via)
            .map(|r| format!("  runtimeApi: {r}\n"))
            .unwrap_or_default();
        let nodes: String = self
            .masters
            .iter()
            .map(|(n, a)| {
                format!(
                    "  - {{ name: {n}, role: control-plane, address: {} }}\n",
                    a.ip()
                )
            })
            .collect();
        let text = format!(
            "cluster: lblab\ncontrolPlaneEndpoint: {{ address: {vip}, port: 6443, dnsName: k8s-api.lab.lan }}\nnetwork: {{ cidr: {net} }}\nloadBalancer:\n  kind: {kind}\n  frontend: {vip}:6443\n  pool: k8s-apiserver\n  healthCheck: {{ type: https, path: /readyz, interval: 200ms, fall: 2, rise: 1 }}\n{runtime}  manage: {{ {manage} }}\nnodes:\n{nodes}",
            vip = self.vip,
            net = self.net.subnet(),
        );
        let path = self.dir.path().join(format!("topology-{via:?}.yaml"));
        std::fs::write(&path, text).expect("write the topology");
        path
    }

    /// Wait until `addr` answers TCP, up to `timeout`.
    pub fn wait_tcp(addr: SocketAddr, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}
