//! A real HAProxy (the Debian `haproxy` binary) in front of the masters'
//! apiservers, as DOMAIN.md §4 describes it: TCP mode, the VIP as the
//! frontend, one server per master named after the node, HTTPS `GET
//! /readyz` health checks verified against the cluster CA, and the runtime
//! API on a Unix socket and on TCP, both at `level admin`.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// The backend pool's name, as the lab's topology declares it.
pub const POOL: &str = "k8s-apiserver";

/// The haproxy binary, if installed.
pub fn haproxy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
}

/// What the lab's HAProxy is told.
#[derive(Debug, Clone)]
pub struct HaproxySpec {
    /// The frontend (the VIP and the apiserver port).
    pub frontend: SocketAddr,
    /// One server per master: (node name, apiserver address).
    pub servers: Vec<(String, SocketAddr)>,
    /// The CA that signed the apiservers' serving certificate.
    pub ca_file: PathBuf,
    /// The runtime API's TCP listener.
    pub runtime_tcp: SocketAddr,
}

/// A running HAProxy. Dropping it kills the process.
#[derive(Debug)]
pub struct Haproxy {
    child: Option<Child>,
    paused: bool,
    socket: PathBuf,
    tcp: SocketAddr,
    log: PathBuf,
}

fn config(spec: &HaproxySpec, socket: &Path) -> String {
    let mut c = format!(
        "# Written by testlab. DOMAIN.md §4: TCP mode, HTTPS GET /readyz checks;
# fast timings so tests see a failing apiserver DOWN within half a second.
global
    maxconn 512
    stats socket {socket} mode 600 level admin
    stats socket ipv4@{tcp} level admin
    stats timeout 10s

defaults
    mode tcp
    timeout connect 2s
    timeout check 1s
    timeout client 5m
    timeout server 5m

frontend k8s-apiserver-vip
    bind {frontend}
    default_backend {POOL}

backend {POOL}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 check check-ssl verify required ca-file {ca}
",
        socket = socket.display(),
        tcp = spec.runtime_tcp,
        frontend = spec.frontend,
        ca = spec.ca_file.display(),
    );
    for (name, addr) in &spec.servers {
        c.push_str(&format!("    server {name} {addr}\n"));
    }
    c
}

impl Haproxy {
    /// Write the configuration under `dir`, start HAProxy in the
    /// foreground and wait until every server is UP, up to `timeout`.
    pub fn start(spec: &HaproxySpec, dir: &Path, timeout: Duration) -> Result<Haproxy, LabError> {
        let bin = haproxy_binary().ok_or(LabError::HaproxyMissing)?;
        let socket = dir.join("haproxy.sock");
        let cfg_path = dir.join("haproxy.cfg");
        fs::write(&cfg_path, config(spec, &socket)).map_err(|e| LabError::io(&cfg_path, e))?;
        let log = dir.join("haproxy.log");
        let out = File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(&log, e))?;
        // -db: stay in the foreground, not in master-worker mode, so the
        // child's pid is the one process serving (pause and resume hit it).
        let child = crate::dies_with_parent(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::io(&bin, e))?;
        let mut h = Haproxy {
            child: Some(child),
            paused: false,
            socket,
            tcp: spec.runtime_tcp,
            log,
        };
        let names: Vec<&str> = spec.servers.iter().map(|s| s.0.as_str()).collect();
        h.wait_status(&names, "UP", timeout)?;
        Ok(h)
    }

    /// The runtime API's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime API's TCP address.
    pub fn tcp(&self) -> SocketAddr {
        self.tcp
    }

    /// The last lines HAProxy wrote (its warnings name failing checks).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Send one runtime-API command over the Unix socket; HAProxy's answer.
    pub fn command(&self, command: &str) -> Result<String, LabError> {
        let io = |e| LabError::io(&self.socket, e);
        let mut s = UnixStream::connect(&self.socket).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(io)?;
        s.write_all(format!("{command}\n").as_bytes()).map_err(io)?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(io)?;
        Ok(out)
    }

    /// (server, status) for the pool's servers, from `show stat`.
    pub fn statuses(&self) -> Result<Vec<(String, String)>, LabError> {
        let text = self.command("show stat")?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |n: &str| header.iter().position(|h| *h == n);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Err(LabError::Haproxy(format!("`show stat` answered: {text}")));
        };
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == POOL && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect())
    }

    /// Wait until each of `servers` has status `status` (`UP`, `DOWN`,
    /// `MAINT`, ...), up to `timeout`.
    pub fn wait_status(
        &mut self,
        servers: &[&str],
        status: &str,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(c) = &mut self.child {
                if let Ok(Some(exit)) = c.try_wait() {
                    return Err(LabError::Haproxy(format!(
                        "haproxy exited ({exit}); its log:\n{}",
                        self.log_tail(20)
                    )));
                }
            }
            let last = match self.statuses() {
                Ok(all) => {
                    let ok = servers
                        .iter()
                        .all(|s| all.iter().any(|(n, st)| n == s && st == status));
                    if ok {
                        return Ok(());
                    }
                    format!("{all:?}")
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > until {
                return Err(LabError::Haproxy(format!(
                    "servers {} not {status} within {timeout:?} (last: {last}); its log:\n{}",
                    servers.join(", "),
                    self.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: connections to the VIP and the runtime API are accepted by
    /// the kernel but never answered, like a hung load balancer.
    pub fn pause(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.paused = false;
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `addr` can be bound now (HAProxy binds it right after).
pub(crate) fn bindable(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}
