//! A real OpenSSH `sshd` (Debian `openssh-server`) for tests: its own
//! configuration, host key, `authorized_keys`, pid file and log in a
//! directory of the test's, listening on one address, in the foreground
//! (`-D -e`), dying with the thread that started it (see
//! `dies_with_parent`). A `wrapper` runs it under another command (for
//! example `nsenter` into a lab host's namespaces).
//!
//! ```no_run
//! use testlab::sshd::{Sshd, SshdSpec, client_key, loopback_addr};
//! let dir = tempfile::tempdir().unwrap();
//! let (key, public) = client_key(dir.path(), "ed25519", None).unwrap();
//! let spec = SshdSpec::new(loopback_addr().unwrap(), dir.path().join("sshd"), vec![public]);
//! let sshd = Sshd::start(&spec, std::time::Duration::from_secs(10)).unwrap();
//! println!("{}", sshd.known_hosts_line());
//! ```

use std::fs::{self, File};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// The `sshd` binary (Debian puts it in `/usr/sbin`, which a non-root
/// PATH lacks), if installed.
pub fn sshd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file() && p.is_absolute())
}

/// `ssh-keygen`, if installed (Debian `openssh-client`).
pub fn ssh_keygen_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("ssh-keygen"))
        .find(|p| p.is_file())
}

/// A fresh loopback address for one test's sshd: the first address of a
/// `127.X.Y.0/24` that no other lab of this process uses (the same
/// allocator as [`crate::Lab`]), with a port that is free on it.
pub fn loopback_addr() -> Result<SocketAddr, LabError> {
    let n = crate::LABS.fetch_add(1, Ordering::SeqCst);
    let x = 20 + (std::process::id() % 200) as u8;
    let y = 1 + (n % 250) as u8;
    let ip = IpAddr::V4(Ipv4Addr::new(127, x, y, 1));
    Ok(SocketAddr::new(ip, crate::free_port(ip)?))
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SshdSpec {
    /// The address and port sshd listens on.
    pub listen: SocketAddr,
    /// Where its configuration, host key, pid file and log go (created if
    /// missing).
    pub dir: PathBuf,
    /// OpenSSH public key lines accepted for every user.
    pub authorized_keys: Vec<String>,
    /// A command prefix to run sshd under (e.g. `nsenter --net=... --`);
    /// empty for none.
    pub wrapper: Vec<String>,
    /// Environment variables sshd sets for every session (`SetEnv`).
    pub set_env: Vec<(String, String)>,
    /// A host private key to reuse (copied into `dir`); None generates a
    /// new ed25519 key with `ssh-keygen`.
    pub host_key: Option<PathBuf>,
}

impl SshdSpec {
    /// A spec with no wrapper, no SetEnv and a fresh host key.
    pub fn new(listen: SocketAddr, dir: PathBuf, authorized_keys: Vec<String>) -> SshdSpec {
        SshdSpec {
            listen,
            dir,
            authorized_keys,
            wrapper: Vec::new(),
            set_env: Vec::new(),
            host_key: None,
        }
    }
}

/// A running sshd. Dropping it stops it and every session process it
/// started.
#[derive(Debug)]
pub struct Sshd {
    child: Option<Child>,
    addr: SocketAddr,
    host_key: PathBuf,
    host_public: String,
    log: PathBuf,
}

fn other(path: &Path, msg: String) -> LabError {
    LabError::io(path, std::io::Error::other(msg))
}

/// Run `ssh-keygen` with `args`; its error output on failure.
fn keygen(args: &[&str], what: &Path) -> Result<(), LabError> {
    let bin = ssh_keygen_binary().ok_or_else(|| {
        other(
            Path::new("ssh-keygen"),
            "not installed: install the Debian package openssh-client".into(),
        )
    })?;
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(&bin, e))?;
    if !out.status.success() {
        return Err(other(
            what,
            format!(
                "ssh-keygen failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The first two fields (type and base64) of an OpenSSH public key line.
fn key_fields(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Write `text` to `path` with mode `mode`.
fn write_mode(path: &Path, text: &[u8], mode: u32) -> Result<(), LabError> {
    fs::write(path, text).map_err(|e| LabError::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| LabError::io(path, e))
}

static CLIENT_KEYS: AtomicU32 = AtomicU32::new(0);

/// Generate a client key pair in `dir` with `ssh-keygen`: `kind` is
/// `ed25519`, `rsa` (3072 bits) or `ecdsa` (P-256), encrypted with
/// `passphrase` if given. Returns the private key's path and the public
/// key line.
pub fn client_key(
    dir: &Path,
    kind: &str,
    passphrase: Option<&str>,
) -> Result<(PathBuf, String), LabError> {
    let bits = match kind {
        "ed25519" => None,
        "rsa" => Some("3072"),
        "ecdsa" => Some("256"),
        _ => {
            return Err(other(
                dir,
                format!("client_key: unknown key kind {kind:?} (ed25519, rsa, ecdsa)"),
            ));
        }
    };
    fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let n = CLIENT_KEYS.fetch_add(1, Ordering::SeqCst);
    let path = dir.join(format!("id_{kind}_{n}"));
    let path_s = path.to_string_lossy().into_owned();
    let mut args = vec![
        "-q",
        "-t",
        kind,
        "-N",
        passphrase.unwrap_or(""),
        "-C",
        "testlab-client",
        "-f",
        &path_s,
    ];
    if let Some(b) = bits {
        args.extend(["-b", b]);
    }
    keygen(&args, &path)?;
    let pub_path = path.with_extension("pub");
    let public = fs::read_to_string(&pub_path).map_err(|e| LabError::io(&pub_path, e))?;
    Ok((path, public.trim().to_string()))
}

/// The pids of every descendant of `root`, from `/proc` (children first
/// found, grandchildren after).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parens.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

impl Sshd {
    /// Write the configuration, keys and `authorized_keys` under
    /// `spec.dir`, start sshd and wait until it listens, up to `timeout`.
    /// Call it on the thread that keeps it (it dies with that thread).
    pub fn start(spec: &SshdSpec, timeout: Duration) -> Result<Sshd, LabError> {
        let bin = sshd_binary().ok_or_else(|| {
            other(
                Path::new("/usr/sbin/sshd"),
                "not installed: install the Debian package openssh-server (scripts/test.sh does)"
                    .into(),
            )
        })?;
        let dir = &spec.dir;
        fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
        // sshd reads AuthorizedKeysFile as the user who logs in: let a
        // non-root user reach it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io(dir, e))?;
        // sshd's privilege-separation directory (Debian makes it at boot).
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            fs::create_dir_all(privsep).map_err(|e| LabError::io(privsep, e))?;
            let _ = fs::set_permissions(privsep, fs::Permissions::from_mode(0o755));
        }

        let host_key = dir.join("ssh_host_key");
        let _ = fs::remove_file(&host_key);
        let _ = fs::remove_file(host_key.with_extension("pub"));
        match &spec.host_key {
            Some(src) => {
                let text = fs::read(src).map_err(|e| LabError::io(src, e))?;
                write_mode(&host_key, &text, 0o600)?;
                let src_pub = src.with_extension("pub");
                let public = match fs::read_to_string(&src_pub) {
                    Ok(p) => p,
                    Err(_) => {
                        let kg = ssh_keygen_binary()
                            .ok_or_else(|| other(src, "ssh-keygen is not installed".into()))?;
                        let out = Command::new(&kg)
                            .arg("-y")
                            .arg("-f")
                            .arg(&host_key)
                            .stdin(Stdio::null())
                            .output()
                            .map_err(|e| LabError::io(&kg, e))?;
                        if !out.status.success() {
                            return Err(other(
                                src,
                                format!(
                                    "ssh-keygen -y: {}",
                                    String::from_utf8_lossy(&out.stderr).trim()
                                ),
                            ));
                        }
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    }
                };
                write_mode(&host_key.with_extension("pub"), public.as_bytes(), 0o644)?;
            }
            None => {
                let p = host_key.to_string_lossy().into_owned();
                keygen(
                    &[
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "testlab-host",
                        "-f",
                        &p,
                    ],
                    &host_key,
                )?;
            }
        }
        let pub_path = host_key.with_extension("pub");
        let host_public =
            key_fields(&fs::read_to_string(&pub_path).map_err(|e| LabError::io(&pub_path, e))?);

        let ak = dir.join("authorized_keys");
        let mut keys = spec.authorized_keys.join("\n");
        keys.push('\n');
        write_mode(&ak, keys.as_bytes(), 0o644)?;

        let pid_file = dir.join("sshd.pid");
        let mut cfg = format!(
            "# Written by testlab::sshd.
ListenAddress {listen}
HostKey {host_key}
AuthorizedKeysFile {ak}
PidFile {pid}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
",
            listen = spec.listen,
            host_key = host_key.display(),
            ak = ak.display(),
            pid = pid_file.display(),
        );
        if !spec.set_env.is_empty() {
            cfg.push_str("SetEnv");
            for (k, v) in &spec.set_env {
                // sshd_config quoting: a value with spaces in double quotes.
                cfg.push_str(&format!(" \"{k}={v}\""));
            }
            cfg.push('\n');
        }
        let cfg_path = dir.join("sshd_config");
        write_mode(&cfg_path, cfg.as_bytes(), 0o644)?;

        let log = dir.join("sshd.log");
        let out = File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(&log, e))?;
        let mut cmd = match spec.wrapper.split_first() {
            None => crate::dies_with_parent(&bin),
            Some((w, rest)) => {
                let mut c = crate::dies_with_parent(Path::new(w));
                c.args(rest).arg(&bin);
                c
            }
        };
        // -D: foreground, -e: log to stderr (our log file).
        let child = cmd
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::io(&bin, e))?;
        let mut s = Sshd {
            child: Some(child),
            addr: spec.listen,
            host_key,
            host_public,
            log,
        };
        s.wait_listening(timeout)?;
        Ok(s)
    }

    /// Wait until sshd says it listens (its log) or answers with its
    /// banner (reachable from here), up to `timeout`.
    fn wait_listening(&mut self, timeout: Duration) -> Result<(), LabError> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(c) = &mut self.child {
                if let Ok(Some(exit)) = c.try_wait() {
                    self.child = None;
                    return Err(other(
                        &self.log,
                        format!(
                            "sshd exited ({exit}) before listening; its log:\n{}",
                            self.log_tail(20)
                        ),
                    ));
                }
            }
            if self.banner().is_some() {
                return Ok(());
            }
            if fs::read_to_string(&self.log).is_ok_and(|t| t.contains("Server listening on")) {
                return Ok(());
            }
            if Instant::now() >= until {
                let tail = self.log_tail(20);
                self.stop();
                return Err(other(
                    &self.log,
                    format!(
                        "sshd did not listen on {} within {timeout:?}; its log:\n{tail}",
                        self.addr
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's identification line (`SSH-2.0-OpenSSH_...`), if it
    /// answers on its address from here within 500 ms.
    pub fn banner(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]);
        line.starts_with("SSH-").then(|| line.trim().to_string())
    }

    /// The address sshd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host's public key, `ssh-ed25519 AAAA...` (no comment).
    pub fn host_public_key(&self) -> String {
        self.host_public.clone()
    }

    /// The host's private key file (to start another sshd with the same
    /// key).
    pub fn host_key_path(&self) -> &Path {
        &self.host_key
    }

    /// The `known_hosts` line for this server: `[ip]:port type base64`,
    /// or `ip type base64` on port 22.
    pub fn known_hosts_line(&self) -> String {
        let host = if self.addr.port() == 22 {
            self.addr.ip().to_string()
        } else {
            format!("[{}]:{}", self.addr.ip(), self.addr.port())
        };
        format!("{host} {}", self.host_public)
    }

    /// The sshd listener's pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Processes sshd started (connection handlers and their sessions),
    /// as pids.
    pub fn children(&self) -> Vec<u32> {
        self.pid().map(descendants).unwrap_or_default()
    }

    /// Whether the listener still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stop sshd and every process it started (sessions included).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Descendants first, while they are still ours to find (killing the
        // listener first would reparent them); a few rounds for forks in
        // flight.
        for _ in 0..5 {
            let d = descendants(pid);
            if d.is_empty() {
                break;
            }
            for p in d {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `n` lines of sshd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
