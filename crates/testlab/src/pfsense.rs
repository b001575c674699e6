//! A pfSense stand-in: the parts of pfSense that hacli's load-balancer
//! backend touches (DOMAIN.md sections 4 and 5), behaving as pfSense does.
//!
//! - PHP (Debian `php-cli` with `php-xml`) with stand-ins of pfSense's
//!   `config.inc` (loads `/cf/conf/config.xml` into `$config` in pfSense's
//!   layout, list tags included; `config_get_path`/`config_set_path`/
//!   `config_del_path`; `write_config()` with backup revisions and the
//!   config lock), the HAProxy package's `haproxy/haproxy.inc`
//!   (`haproxy_check_and_run(&$messages, $reload)` renders `haproxy.cfg`,
//!   checks it with the real `haproxy -c`, and starts or seamlessly reloads
//!   a real HAProxy with its runtime socket at `/tmp/haproxy.socket`),
//!   `interface_ipalias_configure($vip)`, `filter_configure()` and
//!   `services_unbound_configure()`. The PHP sources are in
//!   `crates/testlab/pfsense/`, written into the root at start.
//! - pfrest's API v2 over HTTPS for the HAProxy, virtual IP and DNS
//!   resolver endpoints, backed by the same `config.xml` through PHP
//!   (`pfrest.php`, one run per request), so the config logic exists once.
//!
//! Every absolute pfSense path is relative to a root prefix: files are laid
//! out under `root`, and PHP sees them under `inside_root` (the same
//! directory by default; `/` inside a lab host whose private paths are
//! mounted at `/cf/conf`, `/var/etc`, `/tmp`, ...). PHP finds `config.inc`
//! through the `include_path` of an ini snippet in
//! `<inside_root>/etc/inc/php-standin`, which `PHP_INI_SCAN_DIR` names: see
//! [`Pfsense::php_env`] (what an sshd `SetEnv` passes to sessions).
//!
//! In a lab host (`crates/testlab/src/host.rs`): `root` = `host.path("/")`,
//! `inside_root` = `/`, `exec_prefix` = `host.wrapper()`, `vip_mode` =
//! [`VipMode::Ip`], `lan_if` = the host's interface, and `rest_listener` =
//! [`bind_in_netns`]`(host pid, host address:443)`. The host's private paths
//! must include, besides the defaults (`/cf/conf`, `/var/etc`, `/tmp`,
//! `/etc/inc`, `/usr/local/pkg`), pfSense's `/var/run` (HAProxy's pid file,
//! the dirty marker) and `/var/unbound` (host overrides), so that both
//! sides see the same files.
//!
//! DNS: `services_unbound_configure()` renders the host overrides into
//! `/var/unbound/host_entries.conf` in unbound's `local-data` syntax. When
//! Debian's `unbound` is installed, a real unbound serves them on the
//! stand-in's address ([`Pfsense::dns_addr`], UDP and TCP; started, then
//! reloaded with SIGHUP; it answers only local data, NXDOMAIN otherwise: no
//! recursion, so nothing leaves the lab); [`Pfsense::resolve`] answers from
//! the file either way.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::LabError;
use crate::pki::{Authority, Pair};

/// The PHP and seed files, embedded, with their paths under the root.
const FILES: &[(&str, &str)] = &[
    (
        "etc/inc/globals.inc",
        include_str!("../pfsense/etc/inc/globals.inc"),
    ),
    (
        "etc/inc/util.inc",
        include_str!("../pfsense/etc/inc/util.inc"),
    ),
    (
        "etc/inc/xmlparse.inc",
        include_str!("../pfsense/etc/inc/xmlparse.inc"),
    ),
    (
        "etc/inc/config.lib.inc",
        include_str!("../pfsense/etc/inc/config.lib.inc"),
    ),
    (
        "etc/inc/config.inc",
        include_str!("../pfsense/etc/inc/config.inc"),
    ),
    (
        "etc/inc/functions.inc",
        include_str!("../pfsense/etc/inc/functions.inc"),
    ),
    (
        "etc/inc/notices.inc",
        include_str!("../pfsense/etc/inc/notices.inc"),
    ),
    (
        "etc/inc/pkg-utils.inc",
        include_str!("../pfsense/etc/inc/pkg-utils.inc"),
    ),
    (
        "etc/inc/filter.inc",
        include_str!("../pfsense/etc/inc/filter.inc"),
    ),
    (
        "etc/inc/interfaces.inc",
        include_str!("../pfsense/etc/inc/interfaces.inc"),
    ),
    (
        "etc/inc/services.inc",
        include_str!("../pfsense/etc/inc/services.inc"),
    ),
    (
        "etc/inc/unbound.inc",
        include_str!("../pfsense/etc/inc/unbound.inc"),
    ),
    (
        "usr/local/pkg/haproxy/haproxy.inc",
        include_str!("../pfsense/usr/local/pkg/haproxy/haproxy.inc"),
    ),
    (
        "usr/local/pkg/haproxy/haproxy_utils.inc",
        include_str!("../pfsense/usr/local/pkg/haproxy/haproxy_utils.inc"),
    ),
    (
        "usr/local/pkg/pfrest-standin/pfrest.php",
        include_str!("../pfsense/usr/local/pkg/pfrest-standin/pfrest.php"),
    ),
];

const SEED: &str = include_str!("../pfsense/seed-config.xml");

/// Why the stand-in could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum PfsenseError {
    /// No `php` binary.
    #[error("`php` is not on PATH: install the Debian package php-cli (scripts/test.sh does)")]
    PhpMissing,
    /// PHP lacks the xml extension pfSense's config parser uses.
    #[error(
        "PHP's xml extension (xml_parser_create) is missing: install the Debian package php-xml (scripts/test.sh does)"
    )]
    PhpXmlMissing,
    /// No `haproxy` binary.
    #[error("`haproxy` is not on PATH: install the Debian package haproxy (scripts/test.sh does)")]
    HaproxyMissing,
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PHP run failed.
    #[error("php ({what}) exited with {status}; stderr: {stderr}; stdout: {stdout}")]
    Php {
        /// What the script was for.
        what: String,
        /// Exit status.
        status: String,
        /// Its stderr.
        stderr: String,
        /// Its stdout.
        stdout: String,
    },
    /// A PHP run passed its deadline and was killed.
    #[error("php ({what}) did not finish within {after:?}; it was killed")]
    PhpTimeout {
        /// What the script was for.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// HAProxy refused the configuration or did not start.
    #[error("haproxy: {0}")]
    Haproxy(String),
    /// Binding the pfrest listener failed.
    #[error("pfrest stand-in: cannot listen on {0}: {1}")]
    Bind(String, #[source] std::io::Error),
    /// Certificates or other lab plumbing.
    #[error(transparent)]
    Lab(#[from] LabError),
}

fn io_err(path: &Path, source: std::io::Error) -> PfsenseError {
    PfsenseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How `interface_ipalias_configure()` makes a VIP appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipMode {
    /// Record the `ip addr add` command only (tests without a lab host).
    Record,
    /// Run `ip addr add SUBNET/BITS dev IF` (inside a lab host).
    Ip,
}

/// Options of [`Pfsense::start`]; [`PfsenseOptions::default`] suits a test
/// on a loopback address.
pub struct PfsenseOptions {
    /// `interfaces/lan/if` in the seed: the OS interface VIPs go on.
    pub lan_if: String,
    /// `interfaces/lan/subnet` (prefix length) in the seed.
    pub lan_bits: u8,
    /// `interfaces/wan/if` in the seed.
    pub wan_if: String,
    /// What `interface_ipalias_configure()` does.
    pub vip_mode: VipMode,
    /// The root prefix PHP sees (`/` in a lab host); `None`: the root.
    pub inside_root: Option<PathBuf>,
    /// A command prefix that runs a program inside the host (e.g. an
    /// `nsenter` line); empty: run directly. With a prefix, the seed uses
    /// fixed ports on the host's address (frontends smtp 25, imaps 993,
    /// sni 4443; DNS 53 unless `dns_port` says otherwise), since its
    /// address cannot be probed from here.
    pub exec_prefix: Vec<String>,
    /// The seed's `mail-imaps` pool server (`imap1`); default: a closed
    /// port on the stand-in's address.
    pub imap_server: Option<SocketAddr>,
    /// pfrest's port on the stand-in's address (0: a free one).
    pub rest_port: u16,
    /// A listener already bound (e.g. inside a lab host's network
    /// namespace); overrides `rest_port`.
    pub rest_listener: Option<std::net::TcpListener>,
    /// pfrest's serving pair and the CA that signed it (PEM); `None`: a
    /// CA of its own issues one for the stand-in's address.
    pub tls: Option<(String, Pair)>,
    /// pfrest's user (Basic auth).
    pub username: String,
    /// pfrest's password; `None`: random.
    pub password: Option<String>,
    /// pfrest's `X-API-Key`; `None`: random.
    pub api_key: Option<String>,
    /// How long a pfrest write waits for the config lock before 503.
    pub lock_wait: Duration,
    /// Deadline of every PHP run.
    pub php_timeout: Duration,
    /// The DNS resolver's port on the stand-in's address when Debian's
    /// `unbound` is installed (0: a free one; 53 in a lab host).
    pub dns_port: u16,
}

impl Default for PfsenseOptions {
    fn default() -> Self {
        PfsenseOptions {
            lan_if: "lo".into(),
            lan_bits: 8,
            wan_if: "wan0".into(),
            vip_mode: VipMode::Record,
            inside_root: None,
            exec_prefix: Vec::new(),
            imap_server: None,
            rest_port: 0,
            rest_listener: None,
            tls: None,
            username: "admin".into(),
            password: None,
            api_key: None,
            lock_wait: Duration::from_secs(1),
            php_timeout: Duration::from_secs(60),
            dns_port: 0,
        }
    }
}

impl std::fmt::Debug for PfsenseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfsenseOptions")
            .field("lan_if", &self.lan_if)
            .field("vip_mode", &self.vip_mode)
            .field("inside_root", &self.inside_root)
            .field("exec_prefix", &self.exec_prefix)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The frontends of the seed that are not ours, on the stand-in's address.
#[derive(Debug, Clone, Copy)]
pub struct SeedFrontends {
    /// `mail-smtp` (tcp, pool `mail-smtp`, servers with `send-proxy-v2`).
    pub smtp: SocketAddr,
    /// `mail-imaps` (tcp, pool `mail-imaps`, one server with `send-proxy-v2`).
    pub imaps: SocketAddr,
    /// `web-sni` (https passthrough, `req.ssl_sni` ACLs to `wiki` and `git`).
    pub sni: SocketAddr,
}

/// What a PHP run printed.
#[derive(Debug, Clone)]
pub struct PhpOutput {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Holds pfSense's config lock (`/tmp/config.lock`, exclusive) until dropped.
pub struct ConfigLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl std::fmt::Debug for ConfigLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigLock")
    }
}

/// A running pfSense stand-in. Dropping it stops its HAProxy processes and
/// its pfrest server (the files stay in the root).
pub struct Pfsense {
    rt: Option<tokio::runtime::Runtime>,
    root: PathBuf,
    inside: PathBuf,
    exec_prefix: Vec<String>,
    addr: IpAddr,
    rest: SocketAddr,
    username: String,
    password: String,
    api_key: String,
    ca_pem: String,
    frontends: SeedFrontends,
    php_timeout: Duration,
    dns: Option<SocketAddr>,
    /// pfrest answers held back after the request ran: (method, path, delay).
    rest_delays: RestDelays,
}

type RestDelays = Arc<std::sync::Mutex<Vec<(String, String, Duration)>>>;

impl std::fmt::Debug for Pfsense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pfsense")
            .field("root", &self.root)
            .field("inside", &self.inside)
            .field("addr", &self.addr)
            .field("rest", &self.rest)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Run `cmd` with `input` on stdin under `deadline`; kill it when late.
fn run_with_deadline(
    mut cmd: Command,
    input: &[u8],
    deadline: Duration,
    what: &str,
) -> Result<PhpOutput, PfsenseError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_err(Path::new("php"), e))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let until = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PfsenseError::PhpTimeout {
                    what: what.to_string(),
                    after: deadline,
                });
            }
            Err(e) => return Err(io_err(Path::new("php"), e)),
        }
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(PhpOutput {
        code: status.code(),
        stdout,
        stderr,
    })
}

/// A live process (gone or zombie is dead).
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .is_some_and(|state| state != 'Z')
}

fn random_hex(n: usize) -> String {
    crate::random_hex(n)
}

/// A port free for both UDP and TCP on `ip` (unbound serves both).
fn free_udp_port(ip: IpAddr) -> Result<u16, PfsenseError> {
    for _ in 0..20 {
        let u = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .map_err(|e| PfsenseError::Bind(ip.to_string(), e))?;
        let port = u
            .local_addr()
            .map_err(|e| PfsenseError::Bind(ip.to_string(), e))?
            .port();
        if std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(PfsenseError::Bind(
        ip.to_string(),
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
}

fn free_port(ip: IpAddr) -> Result<u16, PfsenseError> {
    let l = match std::net::TcpListener::bind(SocketAddr::new(ip, 0)) {
        Ok(l) => l,
        // The address is a lab host's, in its own network namespace where
        // nothing else listens yet: any port is free there.
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
            let r = u16::from_str_radix(&random_hex(2), 16).unwrap_or(0) % 20000;
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 1000;
            return Ok(30000 + (r + n * 7) % 30000);
        }
        Err(e) => return Err(PfsenseError::Bind(ip.to_string(), e)),
    };
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| PfsenseError::Bind(ip.to_string(), e))
}

impl Pfsense {
    /// Start, or [`crate::skip::skip`] (a failure under
    /// `HACLI_REQUIRE_LABS=1`) and return None when php, its xml extension
    /// or haproxy is missing. Other failures panic.
    pub fn start_or_skip(
        test: &str,
        root: &Path,
        addr: IpAddr,
        opts: PfsenseOptions,
    ) -> Option<Pfsense> {
        match Pfsense::start(root, addr, opts) {
            Ok(p) => Some(p),
            Err(
                e @ (PfsenseError::PhpMissing
                | PfsenseError::PhpXmlMissing
                | PfsenseError::HaproxyMissing),
            ) => {
                crate::skip::skip(test, &e.to_string());
                None
            }
            Err(e) => panic!("{test}: the pfSense stand-in did not start: {e}"),
        }
    }

    /// Lay out pfSense's files under `root`, seed `config.xml` (unless one
    /// is there already), render and start HAProxy with
    /// `haproxy_check_and_run()` (so the seed's frontends listen on
    /// `addr`), render the DNS host overrides, and serve pfrest on `addr`.
    pub fn start(root: &Path, addr: IpAddr, opts: PfsenseOptions) -> Result<Pfsense, PfsenseError> {
        if opts.exec_prefix.is_empty() && on_path("php").is_none() {
            return Err(PfsenseError::PhpMissing);
        }
        let haproxy = on_path("haproxy").ok_or(PfsenseError::HaproxyMissing)?;
        let inside = opts
            .inside_root
            .clone()
            .unwrap_or_else(|| root.to_path_buf());
        sweep_orphans();

        for (rel, text) in FILES {
            let path = root.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
        }
        for dir in [
            "cf/conf/backup",
            "tmp",
            "var/run",
            "var/etc",
            "var/unbound",
            "etc/inc/php-standin",
        ] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        let ini = root.join("etc/inc/php-standin/99-pfsense-standin.ini");
        let ini_text = format!(
            "; Written by testlab's pfSense stand-in: PHP finds config.inc as on pfSense.\ninclude_path = \".:/usr/share/php:{}:{}\"\n",
            inside.join("etc/inc").display(),
            inside.join("usr/local/pkg").display()
        );
        std::fs::write(&ini, ini_text).map_err(|e| io_err(&ini, e))?;
        // Inside a lab host the address is in the host's network namespace:
        // well-known ports then, free ones on a loopback address here.
        let in_host = !opts.exec_prefix.is_empty();
        let port = |fixed: u16| -> Result<u16, PfsenseError> {
            if in_host { Ok(fixed) } else { free_port(addr) }
        };
        let unbound = on_path("unbound");
        let dns_port = match (&unbound, opts.dns_port) {
            (None, _) => 0,
            (Some(_), 0) if in_host => 53,
            (Some(_), 0) => free_udp_port(addr)?,
            (Some(_), p) => p,
        };
        let settings = root.join("etc/inc/standin.json");
        let settings_text = json!({
            "haproxy": haproxy,
            "vip_mode": match opts.vip_mode { VipMode::Record => "record", VipMode::Ip => "ip" },
            "pfrest_lock_wait": opts.lock_wait.as_secs_f64(),
            "owner_pid": std::process::id(),
            "unbound": unbound,
            "dns_addr": addr,
            "dns_port": dns_port,
        });
        std::fs::write(&settings, settings_text.to_string()).map_err(|e| io_err(&settings, e))?;

        let frontends = SeedFrontends {
            smtp: SocketAddr::new(addr, port(25)?),
            imaps: SocketAddr::new(addr, port(993)?),
            sni: SocketAddr::new(addr, port(4443)?),
        };
        let config = root.join("cf/conf/config.xml");
        if !config.exists() {
            let imap = match opts.imap_server {
                Some(a) => a,
                None => SocketAddr::new(addr, port(1993)?),
            };
            let now = jiff::Timestamp::now().as_second().to_string();
            let mut seed = SEED.to_string();
            for (k, v) in [
                ("{{WAN_IF}}", opts.wan_if.clone()),
                ("{{LAN_IF}}", opts.lan_if.clone()),
                ("{{LAN_IP}}", addr.to_string()),
                ("{{LAN_BITS}}", opts.lan_bits.to_string()),
                ("{{SMTP_PORT}}", frontends.smtp.port().to_string()),
                ("{{IMAPS_PORT}}", frontends.imaps.port().to_string()),
                ("{{SNI_PORT}}", frontends.sni.port().to_string()),
                ("{{MX1_IP}}", addr.to_string()),
                ("{{MX1_PORT}}", port(2525)?.to_string()),
                ("{{MX2_IP}}", addr.to_string()),
                ("{{MX2_PORT}}", port(2526)?.to_string()),
                ("{{IMAP1_IP}}", imap.ip().to_string()),
                ("{{IMAP1_PORT}}", imap.port().to_string()),
                ("{{WIKI1_IP}}", addr.to_string()),
                ("{{WIKI1_PORT}}", port(9443)?.to_string()),
                ("{{GIT1_IP}}", addr.to_string()),
                ("{{GIT1_PORT}}", port(9444)?.to_string()),
                ("{{REVTIME}}", now),
            ] {
                seed = seed.replace(k, &v);
            }
            std::fs::write(&config, seed).map_err(|e| io_err(&config, e))?;
        }

        let password = opts.password.clone().unwrap_or_else(|| random_hex(16));
        let api_key = opts.api_key.clone().unwrap_or_else(|| random_hex(24));
        let (ca_pem, pair) = match opts.tls.clone() {
            Some(t) => t,
            None => {
                let ca = Authority::new("pfsense-standin-ca")?;
                let pair = ca.issue_server("pfsense-standin", &["localhost"], &[addr])?;
                (ca.cert_pem().to_string(), pair)
            }
        };

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pfsense-standin")
            .enable_all()
            .build()
            .map_err(|e| io_err(Path::new("tokio runtime"), e))?;

        let mut me = Pfsense {
            rt: None,
            root: root.to_path_buf(),
            inside,
            exec_prefix: opts.exec_prefix.clone(),
            addr,
            rest: SocketAddr::new(addr, 0),
            username: opts.username.clone(),
            password,
            api_key,
            ca_pem,
            frontends,
            php_timeout: opts.php_timeout,
            dns: (dns_port != 0).then(|| SocketAddr::new(addr, dns_port)),
            rest_delays: RestDelays::default(),
        };

        let probe = me.php(
            "check the xml extension",
            "<?php exit(function_exists('xml_parser_create') ? 0 : 3);",
        )?;
        if probe.code == Some(3) {
            return Err(PfsenseError::PhpXmlMissing);
        }
        if probe.code != Some(0) {
            return Err(PfsenseError::Php {
                what: "probe".into(),
                status: format!("{:?}", probe.code),
                stderr: probe.stderr,
                stdout: probe.stdout,
            });
        }
        let started = me.php_json(
            "start HAProxy with the seed",
            "<?php require_once('config.inc'); require_once('haproxy/haproxy.inc'); require_once('services.inc');\n$ok = haproxy_check_and_run($messages, true);\nservices_unbound_configure();\n$ports = array();\nforeach (config_get_path('installedpackages/haproxy/ha_backends/item', array()) as $fe) { $ports[$fe['name']] = $fe['a_extaddr']['item'][0]['extaddr_port'] ?? null; }\necho json_encode(array('ok' => $ok, 'messages' => $messages, 'ports' => $ports));\n",
        )?;
        // The seed's frontends as config.xml has them (it may predate this start).
        let port = |name: &str, default: SocketAddr| -> SocketAddr {
            started["ports"][name]
                .as_str()
                .and_then(|p| p.parse().ok())
                .map_or(default, |p| SocketAddr::new(addr, p))
        };
        me.frontends = SeedFrontends {
            smtp: port("mail-smtp", me.frontends.smtp),
            imaps: port("mail-imaps", me.frontends.imaps),
            sni: port("web-sni", me.frontends.sni),
        };
        if started["ok"] != json!(true) {
            return Err(PfsenseError::Haproxy(format!(
                "the seed's configuration did not start: {}",
                started["messages"]
            )));
        }
        me.wait_socket(Duration::from_secs(10))?;

        let listener = match opts.rest_listener {
            Some(l) => l,
            None => std::net::TcpListener::bind(SocketAddr::new(addr, opts.rest_port))
                .map_err(|e| PfsenseError::Bind(format!("{addr}:{}", opts.rest_port), e))?,
        };
        me.rest = listener
            .local_addr()
            .map_err(|e| PfsenseError::Bind(addr.to_string(), e))?;
        let ctx = RestCtx(Arc::new(RestInner {
            username: me.username.clone(),
            password: me.password.clone(),
            api_key: me.api_key.clone(),
            exec_prefix: me.exec_prefix.clone(),
            env: me.php_env(),
            script: me.inside.join("usr/local/pkg/pfrest-standin/pfrest.php"),
            timeout: me.php_timeout,
            delays: me.rest_delays.clone(),
        }));
        serve_rest(&rt, listener, &pair, ctx)?;
        me.rt = Some(rt);
        Ok(me)
    }

    fn wait_socket(&self, timeout: Duration) -> Result<(), PfsenseError> {
        let until = Instant::now() + timeout;
        loop {
            if self.haproxy_command("show info").is_ok() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(PfsenseError::Haproxy(format!(
                    "no runtime API on {} within {timeout:?}",
                    self.runtime_socket().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The environment a PHP session needs (`PHP_INI_SCAN_DIR` keeps
    /// Debian's own scan dir and adds the stand-in's; the root prefix), for
    /// an sshd `SetEnv` or a `Command`.
    pub fn php_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PHP_INI_SCAN_DIR".into(),
                format!(":{}", self.inside.join("etc/inc/php-standin").display()),
            ),
            (
                "PFSENSE_STANDIN_ROOT".into(),
                self.inside.display().to_string(),
            ),
        ]
    }

    /// Run `php` with `script` on stdin, as the backend does over SSH.
    pub fn php(&self, what: &str, script: &str) -> Result<PhpOutput, PfsenseError> {
        let mut cmd = if self.exec_prefix.is_empty() {
            Command::new("php")
        } else {
            let mut c = Command::new(&self.exec_prefix[0]);
            c.args(&self.exec_prefix[1..]).arg("php");
            c
        };
        cmd.envs(self.php_env());
        run_with_deadline(cmd, script.as_bytes(), self.php_timeout, what)
    }

    /// Run a PHP script that prints one JSON value; that value.
    pub fn php_json(&self, what: &str, script: &str) -> Result<Value, PfsenseError> {
        let out = self.php(what, script)?;
        let fail = |out: &PhpOutput| PfsenseError::Php {
            what: what.to_string(),
            status: format!("{:?}", out.code),
            stderr: out.stderr.clone(),
            stdout: out.stdout.clone(),
        };
        if out.code != Some(0) {
            return Err(fail(&out));
        }
        let last = out.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).map_err(|_| fail(&out))
    }

    /// The root the files are under (as this process sees it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path under the root: `path("/cf/conf/config.xml")`.
    pub fn path(&self, pfsense_path: &str) -> PathBuf {
        self.root.join(pfsense_path.trim_start_matches('/'))
    }

    fn read(&self, pfsense_path: &str) -> String {
        std::fs::read_to_string(self.path(pfsense_path)).unwrap_or_default()
    }

    /// `/cf/conf/config.xml` now.
    pub fn config_xml(&self) -> String {
        self.read("/cf/conf/config.xml")
    }

    /// `/var/etc/haproxy/haproxy.cfg` now (what the running HAProxy loaded).
    pub fn haproxy_cfg(&self) -> String {
        self.read("/var/etc/haproxy/haproxy.cfg")
    }

    /// The backup revisions `/cf/conf/backup/config-<time>.xml`, oldest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(self.path("/cf/conf/backup"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let t = name
                    .strip_prefix("config-")?
                    .strip_suffix(".xml")?
                    .parse()
                    .ok()?;
                Some((t, e.path()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// HAProxy's runtime API socket (`/tmp/haproxy.socket`, level admin).
    pub fn runtime_socket(&self) -> PathBuf {
        self.path("/tmp/haproxy.socket")
    }

    /// The pids in `/var/run/haproxy.pid` that are alive.
    pub fn haproxy_pids(&self) -> Vec<u32> {
        self.read("/var/run/haproxy.pid")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p: &u32| pid_alive(*p))
            .collect()
    }

    /// Send one runtime-API command; HAProxy's answer.
    pub fn haproxy_command(&self, command: &str) -> Result<String, PfsenseError> {
        let sock = self.runtime_socket();
        let mut s = UnixStream::connect(&sock).map_err(|e| io_err(&sock, e))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        s.write_all(format!("{command}\n").as_bytes())
            .map_err(|e| io_err(&sock, e))?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| io_err(&sock, e))?;
        Ok(out)
    }

    /// `show stat` as rows keyed by the CSV header (pxname, svname, status, ...).
    pub fn haproxy_stat(&self) -> Result<Vec<HashMap<String, String>>, PfsenseError> {
        let out = self.haproxy_command("show stat")?;
        let mut lines = out.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .map(str::to_string)
            .collect();
        Ok(lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                header
                    .iter()
                    .cloned()
                    .zip(l.split(',').map(str::to_string))
                    .collect()
            })
            .collect())
    }

    /// pfrest runs each `method` request to `path` (below `/api/v2/`, such
    /// as `services/haproxy/backend/server`) as usual, then holds its
    /// answer back for `delay` (`Duration::ZERO`: no more): a client can be
    /// killed after its write and before it asks for the apply.
    pub fn delay_rest_answer(&self, method: &str, path: &str, delay: Duration) {
        let mut d = self.rest_delays.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|(m, p, _)| !(m == method && p == path));
        if !delay.is_zero() {
            d.push((method.to_string(), path.to_string(), delay));
        }
    }

    /// The actions the stand-in recorded (`/tmp/standin-actions.log`):
    /// write_config, interface_ipalias_configure (with the `ip addr`
    /// command), filter_configure, services_unbound_configure, haproxy_*.
    pub fn actions(&self) -> Vec<Value> {
        self.read("/tmp/standin-actions.log")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The addresses `name` resolves to from the host overrides unbound
    /// was last configured with (`/var/unbound/host_entries.conf`).
    pub fn resolve(&self, name: &str) -> Vec<IpAddr> {
        let want = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
        self.read("/var/unbound/host_entries.conf")
            .lines()
            .filter_map(|l| {
                let rr = l.strip_prefix("local-data: \"")?.strip_suffix('"')?;
                let mut parts = rr.split_whitespace();
                let (owner, kind, ip) = (parts.next()?, parts.next()?, parts.next()?);
                (owner.to_ascii_lowercase() == want && (kind == "A" || kind == "AAAA"))
                    .then(|| ip.parse().ok())
                    .flatten()
            })
            .collect()
    }

    /// Where the real unbound answers the host overrides (UDP and TCP),
    /// when Debian's `unbound` is installed; [`Pfsense::resolve`] works
    /// either way.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns
    }

    /// Take pfSense's config lock (exclusive) until the guard is dropped:
    /// a `write_config()` waits, pfrest writes answer 503.
    pub fn hold_config_lock(&self) -> Result<ConfigLock, PfsenseError> {
        let path = self.path("/tmp/config.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(&path, std::io::Error::from(e)))?;
        Ok(ConfigLock { _lock: lock })
    }

    /// The stand-in's own address (LAN).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The seed's frontends (not ours).
    pub fn seed_frontends(&self) -> SeedFrontends {
        self.frontends
    }

    /// pfrest's base URL, `https://addr:port` (paths under `/api/v2/`).
    pub fn rest_url(&self) -> String {
        format!("https://{}", self.rest)
    }

    /// The CA that signed pfrest's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// pfrest's `X-API-Key`.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// pfrest's (user, password) for Basic auth.
    pub fn credentials(&self) -> (String, String) {
        (self.username.clone(), self.password.clone())
    }

    fn kill_daemons(&self) {
        let mut pids: Vec<i32> = self.haproxy_pids().into_iter().map(|p| p as i32).collect();
        if self.inside == self.root {
            // Also the old processes a -sf reload left serving connections,
            // and our unbound: every process whose command line names our
            // configuration (the pid files may be gone with the root).
            let cfg = self.path("/var/etc/haproxy/haproxy.cfg");
            let cfg = cfg.to_string_lossy().into_owned();
            let dns = self.path("/var/unbound/unbound.conf");
            let dns = dns.to_string_lossy().into_owned();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.split('\0').any(|a| a == cfg || a == dns) && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        let unbound_pid = self
            .read("/var/run/unbound.pid")
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("unbound"))
            });
        pids.extend(unbound_pid);
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A TCP listener bound to `addr` inside the network namespace of process
/// `pid` (a lab host's PID 1), for [`PfsenseOptions::rest_listener`]: a
/// short-lived thread enters the namespace, binds, and ends; the socket
/// stays in that namespace.
pub fn bind_in_netns(pid: u32, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let ns = format!("/proc/{pid}/ns/net");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| std::io::Error::other(format!("setns {ns}: {e}")))?;
        std::net::TcpListener::bind(addr)
    })
    .join()
    .map_err(|_| std::io::Error::other("the setns thread panicked"))?
}

/// The daemonised HAProxy processes of stand-ins whose test process died
/// before its Drop ran (SIGKILL): each names `<root>/var/etc/haproxy/haproxy.cfg`,
/// and `<root>/etc/inc/standin.json` names the owner's pid. Kill those whose
/// owner is gone, one by one by pid.
fn sweep_orphans() {
    const CFG: &str = "/var/etc/haproxy/haproxy.cfg";
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let mut args = cmdline.split('\0');
        let root = match args.next() {
            Some(a) if a.ends_with("haproxy") => args.find_map(|a| a.strip_suffix(CFG)),
            Some(a) if a.ends_with("unbound") => {
                args.find_map(|a| a.strip_suffix("/var/unbound/unbound.conf"))
            }
            _ => None,
        };
        let Some(root) = root else {
            continue;
        };
        if root.is_empty() {
            continue; // a lab host's own "/": its namespaces clean it up
        }
        let settings = std::fs::read_to_string(Path::new(root).join("etc/inc/standin.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let Some(owner) = settings.as_ref().and_then(|s| s["owner_pid"].as_u64()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Pfsense {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        self.kill_daemons();
    }
}

struct RestInner {
    username: String,
    password: String,
    api_key: String,
    exec_prefix: Vec<String>,
    env: Vec<(String, String)>,
    script: PathBuf,
    timeout: Duration,
    delays: RestDelays,
}

#[derive(Clone)]
struct RestCtx(Arc<RestInner>);

fn envelope(code: u16, response_id: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "code": code,
        "status": status.canonical_reason().unwrap_or("error").to_ascii_lowercase(),
        "response_id": response_id,
        "message": message,
        "data": [],
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Equal without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn authenticate(ctx: &RestInner, headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return same_secret(key, &ctx.api_key).then(|| ctx.username.clone());
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    (same_secret(user, &ctx.username) && same_secret(pass, &ctx.password)).then(|| user.to_string())
}

async fn rest_handler(
    State(ctx): State<RestCtx>,
    axum::Extension(peer): axum::Extension<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = &ctx.0;
    let Some(user) = authenticate(ctx, &headers) else {
        return envelope(401, "AUTH_AUTHENTICATION_FAILED", "Authentication failed.");
    };
    let Some(path) = uri.path().strip_prefix("/api/v2/") else {
        return envelope(
            404,
            "ENDPOINT_NOT_FOUND",
            &format!("Endpoint {} does not exist.", uri.path()),
        );
    };
    let query: HashMap<String, String> = match Query::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return envelope(400, "REQUEST_INVALID_QUERY", &e.to_string()),
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return envelope(
                    400,
                    "REQUEST_INVALID_JSON",
                    &format!("The request body is not JSON: {e}"),
                );
            }
        }
    };
    let request = json!({
        "method": method.as_str(),
        "path": path,
        "query": query,
        "body": body,
        "user": user,
        "client": peer.ip().to_string(),
    });
    let mut cmd = if ctx.exec_prefix.is_empty() {
        tokio::process::Command::new("php")
    } else {
        let mut c = tokio::process::Command::new(&ctx.exec_prefix[0]);
        c.args(&ctx.exec_prefix[1..]).arg("php");
        c
    };
    cmd.arg(&ctx.script)
        .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt as _;
            stdin.write_all(request.to_string().as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(ctx.timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return envelope(500, "SERVER_ERROR", &format!("php: {e}")),
        Err(_) => {
            return envelope(
                500,
                "SERVER_ERROR",
                &format!("pfrest.php did not answer within {:?}", ctx.timeout),
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(answer) = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
    else {
        return envelope(
            500,
            "SERVER_ERROR",
            &format!(
                "pfrest.php printed no envelope; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    };
    let delay = ctx
        .delays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(m, p, _)| m == method.as_str() && p == path)
        .map(|d| d.2);
    if let Some(d) = delay {
        // The request ran (a write is in config.xml); its answer comes late.
        tokio::time::sleep(d).await;
    }
    let code = answer["code"].as_u64().unwrap_or(500) as u16;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

fn serve_rest(
    rt: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    pair: &Pair,
    ctx: RestCtx,
) -> Result<(), PfsenseError> {
    let acceptor = crate::pki::acceptor(pair, &[b"h2", b"http/1.1"], "pfrest")?;
    let local = listener
        .local_addr()
        .map_err(|e| PfsenseError::Bind("pfrest".into(), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| PfsenseError::Bind(local.to_string(), e))?;
    let app = Router::new().fallback(rest_handler).with_state(ctx);
    let _guard = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| PfsenseError::Bind(local.to_string(), e))?;
    rt.spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone().layer(axum::Extension(peer));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    Ok(())
}
