//! Lab hosts: separate machines, as far as a backend over SSH can tell.
//!
//! # Design
//!
//! A [`HostLab`] owns one lab network, `198.18.N.0/24` (`198.19.N` for N ≥
//! 256) from the benchmarking range `198.18.0.0/15`. N is unique on the
//! machine: the lab holds an exclusive `flock` on
//! `/run/lock/hacli-testlab/net-N.lock` (or under the temp dir) for its whole
//! life, so parallel test processes never share a network and the kernel
//! frees the lock when the process dies, however it dies.
//!
//! The network is a *switch*: a network namespace held by one process
//! (`setpriv --pdeathsig KILL unshare --net sleep`) with a bridge `br0`. A
//! veth pair joins it to the root namespace, where its end `hlabN` carries
//! `198.18.N.1/24` (the [`HostLab::gateway`]): tests and `hacli`, running
//! in the root namespace, reach every host directly.
//!
//! A [`Host`] is `unshare --net --mount --uts --ipc --pid --fork
//! --kill-child` running a boot script, then a tiny init (Perl, which is
//! essential on Debian) as PID 1 that reaps orphans:
//! - **network**: its own namespace with `lo` up, `eth0` (a veth whose other
//!   end is a port of the switch's bridge, with a MAC fixed per address so
//!   neighbour caches stay right across reboots), its address
//!   `198.18.N.k/24` and a default route via the gateway;
//! - **files**: its own mount namespace whose root is an overlay of the
//!   machine's `/` with a per-host upper layer (so the host sees the
//!   machine's binaries, and what it writes anywhere stays its own, across
//!   reboots), the machine's submounts bound again, a fresh `/proc`
//!   (its PID namespace), `/sys`, and `/run` (a tmpfs, as at boot), then
//!   the *private paths* ([`DEFAULT_PRIVATE_PATHS`] plus the caller's),
//!   each bind-mounted from `<host dir>/fs/<path>`: the test reads and
//!   writes them from outside through [`Host::path`], coherently. The host's
//!   own directory is also mounted at the same absolute path inside, so a
//!   file the test prepares there (a config, a key) has one name on both
//!   sides;
//! - **processes**: its own PID namespace. Powering off SIGKILLs the
//!   holder and its PID 1, and the kernel kills every process of the host;
//!   its network namespace, and with it the veth, then vanish. Power on
//!   boots it again with the same address, files and host keys, and
//!   restarts the services registered with [`Host::add_service`] (sshd
//!   with [`Host::start_sshd`]).
//!
//! Nothing is named in the kernel except the root-side interface `hlabN`:
//! namespaces are held by processes only. Every holder process dies with the
//! lab's *spawner thread* (`PR_SET_PDEATHSIG` fires when the thread that
//! forked the child exits, so holders are forked by one thread the lab owns
//! and joins on drop), and so also when the test process is SIGKILLed. Every
//! holder carries `HACLI_TESTLAB_NET=N.<pid>` in its environment; at start a
//! lab kills processes with a marker whose network lock is free and deletes
//! `hlab*` interfaces whose lock is free: leftovers of dead labs.
//!
//! Processes inside a host are started with `nsenter` into the host's PID 1
//! ([`Host::spawn`], [`Host::exec`], [`Host::wrapper`] for fixtures that
//! take a command prefix). They need no death signal of their own: they die
//! with the host's PID namespace.
//!
//! Where namespaces cannot be made (not root, no `CAP_SYS_ADMIN`, no
//! `unshare`/`ip`), or when `HACLI_TESTLAB_NO_NETNS=1`, the lab falls back to
//! distinct `127.0.0.0/8` addresses (`127.240.N.k`, `127.241.N.k`) with the
//! same per-host directories and no isolation: [`Host::path`] still
//! works, processes run on the machine itself, power off kills the
//! processes that carry the host's marker. It says so loudly on stderr and
//! stdout; tests that need isolation call [`HostLab::isolated_or_skip`].
//!
//! ```no_run
//! let lab = testlab::host::HostLab::start().unwrap();
//! let mut h = lab.add_host("m1").unwrap();
//! std::fs::write(h.path("/etc/kubernetes/admin.conf"), "...").unwrap();
//! let out = h.exec(&["cat", "/etc/kubernetes/admin.conf"]).unwrap();
//! h.power_off().unwrap();
//! h.power_on().unwrap();
//! ```

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Paths every host has of its own, backed by `<host dir>/fs/<path>`.
pub const DEFAULT_PRIVATE_PATHS: &[&str] = &[
    "/etc/kubernetes",
    "/var/lib/etcd",
    "/var/lib/kubelet",
    "/cf/conf",
    "/var/etc",
    "/tmp",
    "/root/.ssh",
    "/usr/local/pkg",
    "/etc/inc",
];

/// The environment variable every process of a lab carries: `N.<pid>`.
pub const MARKER: &str = "HACLI_TESTLAB_NET";
/// Additionally set on processes of one host: `N.<pid>.<host>`.
pub const HOST_MARKER: &str = "HACLI_TESTLAB_HOST";
/// Set to `1` to force the loopback fallback.
pub const NO_NETNS: &str = "HACLI_TESTLAB_NO_NETNS";

const NETS: u16 = 512;
const IFACE_PREFIX: &str = "hlab";
const SETPRIV: &str = "/usr/bin/setpriv";

/// Why a lab host operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or command.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A command the lab runs failed.
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
    /// Every lab network of the machine is taken.
    #[error("all {NETS} lab networks in 198.18.0.0/15 are taken (locks under {0})")]
    NoNetwork(String),
    /// The host did not boot.
    #[error("host {host} did not boot: {reason}; its boot log:\n{log}")]
    Boot {
        /// The host.
        host: String,
        /// What went wrong.
        reason: String,
        /// The tail of `<host dir>/boot.log`.
        log: String,
    },
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// The sshd fixture failed.
    #[error("sshd on {host}: {reason}")]
    Sshd {
        /// The host.
        host: String,
        /// The fixture's error.
        reason: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
    let what = what.into();
    move |source| HostError::Io { what, source }
}

/// Run `cmd` to completion with a deadline; its output. Fails on a non-zero
/// exit.
fn run(cmd: &mut Command, stdin: Option<&str>, timeout: Duration) -> Result<Output, HostError> {
    let out = run_status(cmd, stdin, timeout)?;
    if !out.status.success() {
        return Err(HostError::Command {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` with a deadline, whatever its exit status; killed at the
/// deadline.
fn run_status(
    cmd: &mut Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, HostError> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("starting {what}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    // Read both pipes on threads so a chatty command cannot block.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let until = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child
            .try_wait()
            .map_err(io_err(format!("waiting for {what}")))?
        {
            break st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HostError::Timeout(format!(
                "{what} did not finish within {timeout:?} and was killed"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A thread that lives as long as the lab and forks every long-lived
/// process, so their `PR_SET_PDEATHSIG` fires when the lab is dropped or
/// its process dies, and not when some caller's thread ends.
struct Spawner {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn new() -> Spawner {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::Builder::new()
            .name("testlab-hosts".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn the lab's spawner thread");
        Spawner {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn spawn(&self, mut cmd: Command) -> Result<Child, HostError> {
        let what = describe(&cmd);
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = rtx.send(cmd.spawn());
        });
        self.tx
            .as_ref()
            .expect("spawner lives until drop")
            .send(job)
            .map_err(|_| HostError::Invalid("the lab's spawner thread is gone".into()))?;
        rrx.recv()
            .map_err(|_| HostError::Invalid("the lab's spawner thread is gone".into()))?
            .map_err(io_err(format!("starting {what}")))
    }
}

impl Spawner {
    /// Run `f` on the spawner thread: what it forks dies with the lab, not
    /// with the caller's thread (e.g. a fixture that forks its own child).
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HostError> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = rtx.send(f());
        });
        let gone = || HostError::Invalid("the lab's spawner thread is gone".into());
        self.tx
            .as_ref()
            .expect("spawner lives until drop")
            .send(job)
            .map_err(|_| gone())?;
        rrx.recv().map_err(|_| gone())
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A command whose process gets SIGKILL when the thread that forked it
/// exits (`setpriv --pdeathsig KILL`, util-linux).
fn with_pdeathsig(program: &str) -> Command {
    let mut c = Command::new(SETPRIV);
    c.args(["--pdeathsig", "KILL", program]);
    c
}

fn lock_dir() -> PathBuf {
    let run = Path::new("/run/lock");
    if run.is_dir() {
        run.join("hacli-testlab")
    } else {
        std::env::temp_dir().join("hacli-testlab-locks")
    }
}

fn try_lock(n: u16) -> Result<Option<Flock<File>>, HostError> {
    let dir = lock_dir();
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Shared by every user's labs, as /tmp is.
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    }
    let path = dir.join(format!("net-{n}.lock"));
    let f = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o666)
        .open(&path)
    {
        Ok(f) => {
            let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
            f
        }
        // Another user's lock file: a read-only descriptor locks as well.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(&path).map_err(io_err(format!("opening {}", path.display())))?
        }
        Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
    };
    Ok(Flock::lock(f, FlockArg::LockExclusiveNonblock).ok())
}

/// Whether lab network `n` belongs to no live lab (its lock is free).
fn net_is_stale(n: u16, mine: u16) -> bool {
    n == mine || matches!(try_lock(n), Ok(Some(_)))
}

/// The third and second octets of network `n`: `198.18.n` or `198.19.n-256`.
fn net_octets(n: u16) -> (u8, u8) {
    (18 + (n / 256) as u8, (n % 256) as u8)
}

/// (pid, marker value) of every process carrying `key` in its environment.
pub fn marked_processes(key: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    let prefix = format!("{key}=");
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        for var in env.split(|b| *b == 0) {
            if let Some(v) = var.strip_prefix(prefix.as_bytes()) {
                found.push((pid, String::from_utf8_lossy(v).into_owned()));
            }
        }
    }
    found
}

/// Names of root-namespace interfaces starting with `hlab`.
fn lab_interfaces() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(IFACE_PREFIX))
        .collect()
}

/// The root-namespace interface of lab network `n`.
pub fn interface_name(n: u16) -> String {
    format!("{IFACE_PREFIX}{n}")
}

/// Kill leftovers of dead labs: marked processes, `hlab*` interfaces and
/// `hacli-hosts-N-*` temp dirs whose network lock is free (and those of our
/// own network, whose lock we now hold). Returns what was swept, for the
/// log.
fn sweep(mine: u16, my_dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut swept = Vec::new();
    for (pid, value) in marked_processes(MARKER) {
        let mut it = value.split('.');
        let (Some(n), Some(owner)) = (it.next().and_then(|n| n.parse::<u16>().ok()), it.next())
        else {
            continue;
        };
        if owner == me && n == mine {
            continue;
        }
        if owner != me && net_is_stale(n, mine) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            swept.push(format!("process {pid} ({MARKER}={value})"));
        }
    }
    for name in lab_interfaces() {
        let Some(n) = name[IFACE_PREFIX.len()..].parse::<u16>().ok() else {
            continue;
        };
        if net_is_stale(n, mine) {
            let _ = run(
                Command::new("ip").args(["link", "del", &name]),
                None,
                Duration::from_secs(10),
            );
            swept.push(format!("interface {name}"));
        }
    }
    // Directories of dead labs (the temp dir outlives a SIGKILL).
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("hacli-hosts-")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse::<u16>().ok())
            else {
                continue;
            };
            if e.path() != my_dir && net_is_stale(n, mine) && fs::remove_dir_all(e.path()).is_ok() {
                swept.push(format!("directory {}", e.path().display()));
            }
        }
    }
    swept
}

fn can_isolate() -> Result<(), String> {
    if std::env::var(NO_NETNS).is_ok_and(|v| v == "1") {
        return Err(format!("{NO_NETNS}=1"));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "not root (network and mount namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into(),
        );
    }
    for bin in ["ip", "unshare", "nsenter", "perl", "mount", "pivot_root"] {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(bin).is_file())
        });
        if !found {
            return Err(format!(
                "`{bin}` is not installed (util-linux, iproute2, perl)"
            ));
        }
    }
    if !Path::new(SETPRIV).is_file() {
        return Err(format!("{SETPRIV} is missing (util-linux)"));
    }
    // The real test: can we make a network namespace at all?
    run(
        Command::new("unshare").args(["--net", "--mount", "--pid", "--fork", "true"]),
        None,
        Duration::from_secs(10),
    )
    .map(|_| ())
    .map_err(|e| format!("cannot create namespaces: {e}"))
}

enum Mode {
    /// Real namespaces: the switch's holder process.
    Isolated { switch: Mutex<Child> },
    /// Distinct loopback addresses, no isolation: why.
    Loopback { reason: String },
}

struct Net {
    mode: Mode,
    n: u16,
    /// Live hosts: last octet -> name.
    live: Mutex<std::collections::BTreeMap<u8, String>>,
    marker: String,
    spawner: Spawner,
    dir: tempfile::TempDir,
    _lock: Flock<File>,
}

impl Net {
    fn switch_pid(&self) -> Option<u32> {
        match &self.mode {
            Mode::Isolated { switch } => Some(switch.lock().expect("switch").id()),
            Mode::Loopback { .. } => None,
        }
    }

    fn isolated(&self) -> bool {
        matches!(self.mode, Mode::Isolated { .. })
    }

    /// Run `ip -batch -` with `script` in the switch's network namespace.
    fn ip_switch(&self, script: &str) -> Result<(), HostError> {
        let pid = self.switch_pid().expect("isolated").to_string();
        run(
            Command::new("nsenter").args(["-t", &pid, "--net", "ip", "-batch", "-"]),
            Some(script),
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    fn addr(&self, k: u8) -> Ipv4Addr {
        let (b, c) = net_octets(self.n);
        if self.isolated() {
            Ipv4Addr::new(198, b, c, k)
        } else {
            // 127.240.N / 127.241.N: clear of the etcd lab's 127.20-219.
            Ipv4Addr::new(127, 222 + b, c, k)
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Mode::Isolated { switch } = &self.mode {
            let mut c = switch.lock().expect("switch");
            let _ = c.kill();
            let _ = c.wait();
            // The root end goes with the switch's namespace, asynchronously.
            let name = interface_name(self.n);
            let until = Instant::now() + Duration::from_secs(5);
            while Path::new("/sys/class/net").join(&name).exists() {
                if Instant::now() > until {
                    let _ = run(
                        Command::new("ip").args(["link", "del", &name]),
                        None,
                        Duration::from_secs(10),
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The spawner is joined by its own Drop, then the lock is released
        // and the directory removed.
    }
}

/// One lab network and the factory of its hosts. Cheap to share: hosts
/// keep the network alive while they exist.
#[derive(Clone)]
pub struct HostLab {
    net: Arc<Net>,
}

impl std::fmt::Debug for HostLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLab")
            .field("net", &self.net.n)
            .field("isolated", &self.net.isolated())
            .field("dir", &self.net.dir.path())
            .finish()
    }
}

/// What a new host is.
#[derive(Debug, Clone, Default)]
pub struct HostSpec {
    /// Its name: the hostname inside, and its directory's name. Letters,
    /// digits, `-`, `.`, `_`.
    pub name: String,
    /// Its address; the next free one of the lab's network when `None`.
    /// Must be inside the lab's `/24` (see [`HostLab::subnet`]).
    pub addr: Option<Ipv4Addr>,
    /// Private paths besides [`DEFAULT_PRIVATE_PATHS`]: absolute, no `..`.
    pub private_paths: Vec<PathBuf>,
}

impl HostLab {
    /// Start a lab network, or its loopback fallback (said loudly) when
    /// namespaces cannot be created. Sweeps leftovers of dead labs first.
    pub fn start() -> Result<HostLab, HostError> {
        let start = (std::process::id() % u32::from(NETS)) as u16;
        let mut taken = None;
        for i in 0..NETS {
            let n = (start + i) % NETS;
            if let Some(lock) = try_lock(n)? {
                taken = Some((n, lock));
                break;
            }
        }
        let Some((n, lock)) = taken else {
            return Err(HostError::NoNetwork(lock_dir().display().to_string()));
        };
        let marker = format!("{n}.{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("hacli-hosts-{n}-"))
            .tempdir()
            .map_err(io_err("creating the lab's temp dir"))?;
        let spawner = Spawner::new();
        let mode = match can_isolate() {
            Ok(()) => {
                let swept = sweep(n, dir.path());
                if !swept.is_empty() {
                    eprintln!(
                        "testlab hosts: swept leftovers of dead labs: {}",
                        swept.join(", ")
                    );
                }
                Mode::Isolated {
                    switch: Mutex::new(start_switch(&spawner, n, &marker)?),
                }
            }
            Err(reason) => {
                let msg = format!(
                    "testlab hosts: NO ISOLATION: {reason}; hosts fall back to distinct 127.0.0.0/8 addresses with per-host directories, sharing this machine's processes, network and files (no power isolation)"
                );
                eprintln!("{msg}");
                println!("{msg}");
                Mode::Loopback { reason }
            }
        };
        let net = Net {
            mode,
            n,
            live: Mutex::new(std::collections::BTreeMap::new()),
            marker,
            spawner,
            dir,
            _lock: lock,
        };
        if net.isolated() {
            setup_switch(&net)?;
        }
        Ok(HostLab { net: Arc::new(net) })
    }

    /// Start a lab for `test`, panicking with the reason when it cannot:
    /// a lab that should run but cannot is a failure, not a skip. Without
    /// namespaces the lab falls back, loudly, instead of failing; tests
    /// that need real hosts then skip with [`HostLab::isolated_or_skip`].
    pub fn start_for(test: &str) -> HostLab {
        HostLab::start().unwrap_or_else(|e| panic!("{test}: the host lab did not start: {e}"))
    }

    /// Whether hosts are real namespaces (false: the loopback fallback).
    pub fn isolated(&self) -> bool {
        self.net.isolated()
    }

    /// True when isolated; otherwise [`crate::skip::skip`]s (a failure
    /// under `HACLI_REQUIRE_LABS=1`) and returns false, for tests that need
    /// real hosts.
    pub fn isolated_or_skip(&self, test: &str) -> bool {
        match &self.net.mode {
            Mode::Isolated { .. } => true,
            Mode::Loopback { reason } => {
                crate::skip::skip(
                    test,
                    &format!(
                        "needs isolated lab hosts, but the lab fell back to loopback: {reason}"
                    ),
                );
                false
            }
        }
    }

    /// The lab network's number N (unique on the machine while the lab lives).
    pub fn number(&self) -> u16 {
        self.net.n
    }

    /// The network, e.g. `198.18.7.0/24` (`127.240.7.0/24` in fallback).
    pub fn subnet(&self) -> String {
        format!("{}/24", self.net.addr(0))
    }

    /// The root namespace's address on the lab network (`198.18.N.1`):
    /// what hosts reach the test process at. Bind lab services the hosts
    /// must reach (an apiserver stand-in...) here.
    pub fn gateway(&self) -> Ipv4Addr {
        self.net.addr(1)
    }

    /// The root namespace's interface (`hlabN`), when isolated.
    pub fn interface(&self) -> Option<String> {
        self.net.isolated().then(|| interface_name(self.net.n))
    }

    /// The marker value (`N.<pid>`) of [`MARKER`] on the lab's processes.
    pub fn marker(&self) -> &str {
        &self.net.marker
    }

    /// The lab's directory; host `h` lives in `<dir>/hosts/h`.
    pub fn dir(&self) -> &Path {
        self.net.dir.path()
    }

    /// Create and power on host `name` at the next free address, with the
    /// default private paths.
    pub fn add_host(&self, name: &str) -> Result<Host, HostError> {
        self.add_host_with(HostSpec {
            name: name.to_string(),
            ..HostSpec::default()
        })
    }

    /// Create and power on a host.
    pub fn add_host_with(&self, spec: HostSpec) -> Result<Host, HostError> {
        let name = spec.name;
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            || name.starts_with(['-', '.'])
        {
            return Err(HostError::Invalid(format!(
                "host name {name:?}: use 1-63 letters, digits, '-', '.', '_'"
            )));
        }
        if let Some(a) = spec.addr {
            let want = self.net.addr(a.octets()[3]);
            if a != want || matches!(a.octets()[3], 0 | 1 | 255) {
                return Err(HostError::Invalid(format!(
                    "host {name}: address {a} is not a host address of the lab's network {} (gateway {})",
                    self.subnet(),
                    self.gateway()
                )));
            }
        }
        let mut private: Vec<PathBuf> = DEFAULT_PRIVATE_PATHS.iter().map(PathBuf::from).collect();
        for p in spec.private_paths {
            let ok = p.is_absolute()
                && p.components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
                && p.components().count() > 1;
            if !ok {
                return Err(HostError::Invalid(format!(
                    "host {name}: private path {} must be absolute, below /, without `..`",
                    p.display()
                )));
            }
            if !private.contains(&p) {
                private.push(p);
            }
        }
        // Reserve the name and the address among the live hosts.
        let k = {
            let mut live = self.net.live.lock().expect("live hosts");
            if live.values().any(|n| *n == name) {
                return Err(HostError::Invalid(format!(
                    "host {name} exists in this lab"
                )));
            }
            let k = match spec.addr {
                Some(a) => a.octets()[3],
                None => (11..255).find(|k| !live.contains_key(k)).ok_or_else(|| {
                    HostError::Invalid(format!("the lab's network {} is full", self.subnet()))
                })?,
            };
            if let Some(other) = live.get(&k) {
                return Err(HostError::Invalid(format!(
                    "host {name}: address {} is host {other}'s",
                    self.net.addr(k)
                )));
            }
            live.insert(k, name.clone());
            k
        };
        let release = || {
            self.net.live.lock().expect("live hosts").remove(&k);
        };
        let dir = self.net.dir.path().join("hosts").join(&name);
        if dir.exists() {
            // A host of that name was dropped: this one is a new machine.
            if let Err(e) = fs::remove_dir_all(&dir) {
                release();
                return Err(io_err(format!("removing {}", dir.display()))(e));
            }
        }
        for p in &private {
            let d = fs_path(&dir, p);
            if let Err(e) = fs::create_dir_all(&d) {
                release();
                return Err(io_err(format!("creating {}", d.display()))(e));
            }
        }
        let tmp = fs_path(&dir, Path::new("/tmp"));
        let _ = fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
        let ssh = fs_path(&dir, Path::new("/root/.ssh"));
        let _ = fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let mut host = Host {
            net: self.net.clone(),
            name: name.clone(),
            addr: self.net.addr(k),
            dir,
            private,
            holder: None,
            init: None,
            services: Vec::new(),
            running: Vec::new(),
            ssh_host_public: None,
            ssh_port: None,
            boots: 0,
        };
        host.power_on()?;
        Ok(host)
    }
}

fn fs_path(host_dir: &Path, p: &Path) -> PathBuf {
    host_dir.join("fs").join(p.strip_prefix("/").unwrap_or(p))
}

fn start_switch(spawner: &Spawner, n: u16, marker: &str) -> Result<Child, HostError> {
    let mut c = with_pdeathsig("unshare");
    c.args(["--net", "sleep", "infinity"])
        .env(MARKER, marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawner.spawn(c)?;
    // Wait until unshare has exec'd sleep in its new namespace.
    let pid = child.id();
    let mine = fs::read_link("/proc/self/ns/net").ok();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if comm.trim() == "sleep" && ns.is_some() && ns != mine {
            return Ok(child);
        }
        if Instant::now() > until {
            return Err(HostError::Timeout(format!(
                "the switch namespace of lab network {n} did not come up within 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn setup_switch(net: &Net) -> Result<(), HostError> {
    let pid = net.switch_pid().expect("isolated");
    let name = interface_name(net.n);
    let gw = net.addr(1);
    // A stale one of ours (a dead lab that held this number) was swept.
    run(
        Command::new("ip").args([
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            "uplink",
            "netns",
            &pid.to_string(),
        ]),
        None,
        Duration::from_secs(10),
    )?;
    let alias = format!("hacli-testlab {MARKER}={}", net.marker);
    run(
        Command::new("ip").args(["-batch", "-"]),
        Some(&format!(
            "link set dev {name} alias \"{alias}\"\naddress add {gw}/24 dev {name}\nlink set dev {name} up\n"
        )),
        Duration::from_secs(10),
    )?;
    net.ip_switch(
        "link set dev lo up\nlink add br0 type bridge\nlink set dev br0 type bridge forward_delay 0\nlink set dev br0 up\nlink set dev uplink master br0\nlink set dev uplink up\n",
    )
}

/// What a service start returns: kept while the host runs and dropped
/// when it powers off (e.g. the sshd fixture, or a [`Child`] wrapper).
pub type ServiceGuard = Box<dyn std::any::Any + Send>;

type ServiceFn = Box<dyn FnMut(&Host) -> Result<ServiceGuard, HostError> + Send>;

/// A process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lab host. Dropping it powers it off; its files stay in the lab's
/// directory until the lab is dropped.
pub struct Host {
    net: Arc<Net>,
    name: String,
    addr: Ipv4Addr,
    dir: PathBuf,
    private: Vec<PathBuf>,
    /// The `unshare` holder (root PID namespace).
    holder: Option<Child>,
    /// The host's PID 1, as the root namespace numbers it.
    init: Option<u32>,
    services: Vec<(String, ServiceFn)>,
    running: Vec<(String, ServiceGuard)>,
    /// The host's sshd public key (`ssh-ed25519 AAAA...`), once
    /// [`Host::start_sshd`] made it.
    ssh_host_public: Option<String>,
    /// The port of the host's sshd, once [`Host::start_sshd`] ran.
    ssh_port: Option<u16>,
    boots: u32,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("on", &self.is_on())
            .field("dir", &self.dir)
            .field(
                "services",
                &self.services.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

const BOOT_SCRIPT: &str = r#"set -eu
H=$1; NAME=$2; shift 2
R=$H/root
exec >>"$H/boot.log" 2>&1
echo "boot: $(date -u +%FT%TZ)"
if ! mount -t overlay "hacli-host-$NAME" -o "lowerdir=/,upperdir=$H/upper,workdir=$H/work" "$R"; then
  # The lab's directory cannot hold an upper layer (e.g. it is itself on
  # an overlay): keep the root's writes in memory, lost at power off.
  echo "boot: WARNING: overlay upper on tmpfs, writes outside the private paths are lost at power off"
  mount -t tmpfs -o mode=0755 volatile "$H/volatile"
  mkdir -p "$H/volatile/upper" "$H/volatile/work"
  mount -t overlay "hacli-host-$NAME" -o "lowerdir=/,upperdir=$H/volatile/upper,workdir=$H/volatile/work" "$R"
fi
mode=bind
for a in "$@"; do
  case "$a" in --private) mode=private; continue;; esac
  if [ "$mode" = bind ]; then
    [ -e "$R$a" ] && mount --rbind "$a" "$R$a" || echo "boot: not bound: $a"
  else
    mkdir -p "$R$a"
    mount --bind "$H/fs$a" "$R$a"
  fi
done
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=0755 run "$R/run"
# A boot id of this boot (the kernel's is the machine's, the same at
# every lab boot): a fresh one over /proc/sys/kernel/random/boot_id.
cat /proc/sys/kernel/random/uuid > "$H/boot_id"
mount --bind -o ro "$H/boot_id" "$R/proc/sys/kernel/random/boot_id" || echo "boot: boot_id not bound"
mkdir -p "$R/run/sshd" "$R/run/lock"
if [ -d "$R/dev/shm" ]; then mount -t tmpfs -o mode=1777 shm "$R/dev/shm"; fi
mkdir -p "$R$H"
mount --bind "$H" "$R$H"
hostname "$NAME"
echo "$NAME" > "$R/etc/hostname"
mkdir -p "$R/.hacli-oldroot"
cd "$R"
pivot_root . .hacli-oldroot
cd /
umount -l /.hacli-oldroot
echo "boot: up"
: > "$H/booted"
exec perl -e '$0 = "hacli-host-init"; $SIG{TERM} = sub { exit 0 }; while (1) { sleep 1 if wait() == -1 }'
"#;

/// Mount points of the machine to bind into a host's root again: the
/// top-level ones (each with its submounts), not `/`, `/proc`, `/sys`,
/// `/run` (the host gets fresh ones), nor the lab's own directory.
fn submounts(lab_dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: BTreeSet<String> = BTreeSet::new();
    for line in text.lines() {
        if let Some(p) = line.split(' ').nth(4) {
            // mountinfo escapes spaces and such as \040: skip those.
            if !p.contains('\\') {
                points.insert(p.to_string());
            }
        }
    }
    let fresh = ["/", "/proc", "/sys", "/run"];
    let mut out: Vec<String> = Vec::new();
    for p in &points {
        let path = Path::new(p);
        if fresh.contains(&p.as_str())
            || fresh[1..].iter().any(|f| path.starts_with(f))
            || path.starts_with(lab_dir)
            || out.iter().any(|o| path.starts_with(o))
        {
            continue;
        }
        out.push(p.clone());
    }
    out
}

impl Host {
    /// The host's name (its hostname inside).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The host's address as an `IpAddr`.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.addr)
    }

    /// The host's directory (`<lab dir>/hosts/<name>`), mounted at the same
    /// path inside the host: the boot log, the private paths under `fs/`,
    /// the overlay's upper layer under `upper/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private paths.
    pub fn private_paths(&self) -> &[PathBuf] {
        &self.private
    }

    /// The host's PID 1 as the machine numbers it, while on (isolated
    /// hosts only): `/proc/<pid>/ns/*` are the host's namespaces.
    pub fn pid(&self) -> Option<u32> {
        self.init
    }

    /// Whether the host is powered on.
    pub fn is_on(&self) -> bool {
        self.holder.is_some()
    }

    /// Whether the host is real namespaces (false: the loopback fallback).
    pub fn isolated(&self) -> bool {
        self.net.isolated()
    }

    /// The boot id of the host's current (or last) boot, as
    /// `cat /proc/sys/kernel/random/boot_id` prints it inside: a new one at
    /// every power on (isolated hosts only).
    pub fn boot_id(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("boot_id"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// How many times the host has booted.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Where the test reads and writes the host's file `inside` (an
    /// absolute path under one of the private paths, or under the host's
    /// own directory): `<host dir>/fs/<inside>`. A Unix socket a process
    /// of the host binds there (HAProxy's `/tmp/haproxy.socket`) can be
    /// connected to from the test at this path.
    ///
    /// # Panics
    /// When `inside` is under no private path (see [`Host::try_path`]):
    /// name it in [`HostSpec::private_paths`].
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        self.try_path(inside).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Host::path`], as a `Result`.
    pub fn try_path(&self, inside: impl AsRef<Path>) -> Result<PathBuf, HostError> {
        let inside = inside.as_ref();
        if inside.starts_with(&self.dir) {
            return Ok(inside.to_path_buf());
        }
        let under = self.private.iter().any(|p| inside.starts_with(p))
            && inside.components().all(|c| c != Component::ParentDir);
        if !under {
            return Err(HostError::Invalid(format!(
                "host {}: {} is not under one of its private paths {:?}: add it to HostSpec::private_paths",
                self.name,
                inside.display(),
                self.private
            )));
        }
        Ok(fs_path(&self.dir, inside))
    }

    /// The command prefix that runs a program inside the host:
    /// `nsenter -t <init> -n -m -u -i -p -r -w -- setpriv --pdeathsig KILL`
    /// (the program dies when the `nsenter` process is killed). Empty in
    /// the loopback fallback. Only valid while the host is on: a fixture
    /// that restarts with the host gets a fresh one in its service.
    pub fn wrapper(&self) -> Vec<String> {
        match self.init {
            Some(pid) if self.isolated() => [
                "nsenter",
                "-t",
                &pid.to_string(),
                "--net",
                "--mount",
                "--uts",
                "--ipc",
                "--pid",
                "--root",
                "--wd",
                "--",
                SETPRIV,
                "--pdeathsig",
                "KILL",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            _ => Vec::new(),
        }
    }

    fn command(&self, argv: &[&str], env: &[(&str, &str)]) -> Result<Command, HostError> {
        if !self.is_on() {
            return Err(HostError::Invalid(format!(
                "host {} is powered off",
                self.name
            )));
        }
        let Some(program) = argv.first() else {
            return Err(HostError::Invalid("an empty command".into()));
        };
        let wrapper = self.wrapper();
        let mut c = if let Some((first, rest)) = wrapper.split_first() {
            let mut c = Command::new(first);
            c.args(rest).args(argv);
            c
        } else {
            let mut c = Command::new(program);
            c.args(&argv[1..]).current_dir(&self.dir);
            c
        };
        c.env(MARKER, &self.net.marker)
            .env(HOST_MARKER, self.host_marker());
        for (k, v) in env {
            c.env(k, v);
        }
        Ok(c)
    }

    fn host_marker(&self) -> String {
        format!("{}.{}", self.net.marker, self.name)
    }

    /// Start a long-running process inside the host, with `env` added to
    /// the environment; stdout and stderr go to `<host dir>/logs/<name>.log`
    /// (name = the program's file name). Killing the returned child kills
    /// the process; powering off kills it too.
    pub fn spawn(&self, argv: &[&str], env: &[(&str, &str)]) -> Result<Child, HostError> {
        let mut c = self.command(argv, env)?;
        let logs = self.dir.join("logs");
        fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
        let base = Path::new(argv[0])
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".into());
        let log_path = logs.join(format!("{base}.log"));
        if !self.isolated() {
            // No PID namespace to die with: die with the lab's thread.
            let mut w = with_pdeathsig(argv[0]);
            w.args(&argv[1..])
                .current_dir(&self.dir)
                .env(MARKER, &self.net.marker)
                .env(HOST_MARKER, self.host_marker())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(open_log(&log_path)?)
                .stderr(open_log(&log_path)?);
            return self.net.spawner.spawn(w);
        }
        c.stdin(Stdio::null())
            .stdout(open_log(&log_path)?)
            .stderr(open_log(&log_path)?);
        c.spawn()
            .map_err(io_err(format!("starting {:?} on host {}", argv, self.name)))
    }

    /// Run a command inside the host to completion (30 s deadline): its
    /// output, whatever its exit status.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, HostError> {
        self.exec_with(argv, &[], None, Duration::from_secs(30))
    }

    /// Run a command inside the host with `env` added and `stdin` fed, killed
    /// at `timeout`: its output, whatever its exit status. Errors quote the
    /// command line: pass secrets in `env` or on `stdin`, never in `argv`.
    pub fn exec_with(
        &self,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        let mut c = self.command(argv, env)?;
        run_status(&mut c, stdin, timeout)
    }

    /// Run a command inside the host and fail unless it exits 0: stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String, HostError> {
        let mut c = self.command(argv, &[])?;
        let out = run(&mut c, None, Duration::from_secs(30))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Add an address to the host's `eth0` (`198.18.N.100/32`, as a
    /// pfSense IP alias does). Like `ip addr add` on a real machine it is
    /// lost at power off: re-add it from a service to keep it. A no-op for
    /// loopback addresses in the fallback.
    pub fn add_address(&self, cidr: &str) -> Result<(), HostError> {
        let ip: IpAddr = cidr.split('/').next().unwrap_or("").parse().map_err(|_| {
            HostError::Invalid(format!(
                "host {}: {cidr:?} is not ADDRESS/PREFIX",
                self.name
            ))
        })?;
        if !cidr.contains('/') {
            return Err(HostError::Invalid(format!(
                "host {}: {cidr:?} needs a prefix length (e.g. /32)",
                self.name
            )));
        }
        if !self.isolated() {
            if ip.is_loopback() {
                return Ok(());
            }
            return Err(HostError::Invalid(format!(
                "host {}: the loopback fallback cannot add {cidr}",
                self.name
            )));
        }
        self.exec_ok(&["ip", "address", "add", cidr, "dev", "eth0"])
            .map(|_| ())
    }

    /// Register a service: started now when the host is on, and again on
    /// every power on, in registration order. What `start` returns is kept
    /// while the host runs and dropped at power off.
    pub fn add_service<F>(&mut self, name: &str, start: F) -> Result<(), HostError>
    where
        F: FnMut(&Host) -> Result<ServiceGuard, HostError> + Send + 'static,
    {
        self.services.push((name.to_string(), Box::new(start)));
        if self.is_on() {
            let i = self.services.len() - 1;
            self.start_service(i)?;
        }
        Ok(())
    }

    /// Register a process service: `argv` with `env`, started like
    /// [`Host::spawn`] now and on every power on.
    pub fn add_process_service(
        &mut self,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(), HostError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.add_service(name, move |h| {
            let a: Vec<&str> = argv.iter().map(String::as_str).collect();
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Ok(Box::new(KillOnDrop(h.spawn(&a, &e)?)) as ServiceGuard)
        })
    }

    /// The names of the services registered.
    pub fn services(&self) -> Vec<String> {
        self.services.iter().map(|s| s.0.clone()).collect()
    }

    fn start_service(&mut self, i: usize) -> Result<(), HostError> {
        let (name, mut f) = {
            let s = &mut self.services[i];
            let placeholder: ServiceFn = Box::new(|_| unreachable!());
            (s.0.clone(), std::mem::replace(&mut s.1, placeholder))
        };
        let r = f(self);
        self.services[i].1 = f;
        let guard =
            r.map_err(|e| HostError::Invalid(format!("host {}: service {name}: {e}", self.name)))?;
        self.running.push((name, guard));
        Ok(())
    }

    /// Power the host on: boot its namespaces, bring up its address and
    /// start its services. A no-op when it is on.
    pub fn power_on(&mut self) -> Result<(), HostError> {
        if self.is_on() {
            return Ok(());
        }
        if self.isolated() {
            self.boot()?;
        } else {
            // The fallback: nothing to boot; the marker of "on" is a
            // placeholder process so `is_on` and power off behave alike.
            let mut c = with_pdeathsig("sleep");
            c.arg("infinity")
                .env(MARKER, &self.net.marker)
                .env(HOST_MARKER, self.host_marker())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.holder = Some(self.net.spawner.spawn(c)?);
        }
        self.boots += 1;
        for i in 0..self.services.len() {
            if let Err(e) = self.start_service(i) {
                let _ = self.power_off();
                return Err(e);
            }
        }
        Ok(())
    }

    fn boot(&mut self) -> Result<(), HostError> {
        for d in ["upper", "work", "root", "volatile"] {
            let p = self.dir.join(d);
            fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        let booted = self.dir.join("booted");
        let _ = fs::remove_file(&booted);
        let log_path = self.dir.join("boot.log");
        let mut c = with_pdeathsig("unshare");
        c.args([
            "--net",
            "--mount",
            "--uts",
            "--ipc",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            BOOT_SCRIPT,
            "sh",
        ])
        .arg(&self.dir)
        .arg(&self.name)
        .args(submounts(self.net.dir.path()))
        .arg("--private")
        .args(&self.private)
        .env(MARKER, &self.net.marker)
        .env(HOST_MARKER, self.host_marker())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut holder = self.net.spawner.spawn(c)?;
        let hpid = holder.id();
        let fail = |holder: &mut Child, reason: String| {
            let _ = holder.kill();
            let _ = holder.wait();
            HostError::Boot {
                host: self.name.clone(),
                reason,
                log: tail(&log_path, 30),
            }
        };
        let until = Instant::now() + Duration::from_secs(20);
        let init = loop {
            if let Ok(Some(st)) = holder.try_wait() {
                return Err(fail(&mut holder, format!("unshare exited ({st})")));
            }
            let children = fs::read_to_string(format!("/proc/{hpid}/task/{hpid}/children"))
                .unwrap_or_default();
            let pid = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            if let (Some(pid), true) = (pid, booted.exists()) {
                break pid;
            }
            if Instant::now() > until {
                return Err(fail(&mut holder, "not up within 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.holder = Some(holder);
        self.init = Some(init);
        if let Err(e) = self.plug() {
            let _ = self.power_off();
            return Err(e);
        }
        Ok(())
    }

    /// The host's MAC: fixed per address, so neighbour caches of the
    /// gateway stay right across reboots.
    fn mac(&self) -> String {
        let [_, b, c, d] = self.addr.octets();
        format!("02:48:4c:{b:02x}:{c:02x}:{d:02x}")
    }

    fn port_name(&self) -> String {
        format!("h{}", self.addr.octets()[3])
    }

    /// Cable the host to the switch and configure its network.
    fn plug(&self) -> Result<(), HostError> {
        let init = self.init.expect("booted").to_string();
        let port = self.port_name();
        self.net.ip_switch(&format!(
            "link add {port} type veth peer name eth0 address {mac} netns {init}\nlink set dev {port} master br0\nlink set dev {port} up\n",
            mac = self.mac()
        ))?;
        run(
            Command::new("nsenter").args(["-t", &init, "--net", "ip", "-batch", "-"]),
            Some(&format!(
                "link set dev lo up\naddress add {addr}/24 dev eth0\nlink set dev eth0 up\nroute add default via {gw}\n",
                addr = self.addr,
                gw = self.net.addr(1)
            )),
            Duration::from_secs(10),
        )?;
        Ok(())
    }

    /// Power the host off: every process of the host is killed at once (as
    /// pulling the plug), its network namespace and cable vanish and its
    /// address stops answering. Files stay. A no-op when it is off.
    pub fn power_off(&mut self) -> Result<(), HostError> {
        let Some(mut holder) = self.holder.take() else {
            return Ok(());
        };
        if let Some(init) = self.init.take() {
            let _ = kill(Pid::from_raw(init as i32), Signal::SIGKILL);
        }
        let _ = holder.kill();
        let _ = holder.wait();
        if !self.isolated() {
            // No PID namespace: kill what carries the host's marker.
            let mine = self.host_marker();
            for (pid, v) in marked_processes(HOST_MARKER) {
                if v == mine {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // The guards now only reap (their processes died with the host).
        while let Some((_, g)) = self.running.pop() {
            drop(g);
        }
        if self.isolated() {
            let port = self.port_name();
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let pid = self.net.switch_pid().expect("isolated").to_string();
                let present = run(
                    Command::new("nsenter")
                        .args(["-t", &pid, "--net", "ip", "link", "show", &port]),
                    None,
                    Duration::from_secs(10),
                )
                .is_ok();
                if !present {
                    break;
                }
                if Instant::now() > until {
                    let _ = self.net.ip_switch(&format!("link del {port}\n"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = run(
                Command::new("ip").args([
                    "neigh",
                    "flush",
                    "to",
                    &self.addr.to_string(),
                    "dev",
                    &interface_name(self.net.n),
                ]),
                None,
                Duration::from_secs(10),
            );
        }
        Ok(())
    }

    /// Power off, then on.
    pub fn reboot(&mut self) -> Result<(), HostError> {
        self.power_off()?;
        self.power_on()
    }

    /// Whether a TCP connection to the host's `port` is accepted within
    /// `timeout`.
    pub fn answers(&self, port: u16, timeout: Duration) -> bool {
        TcpStream::connect_timeout(&SocketAddr::new(self.ip(), port), timeout).is_ok()
    }

    /// Wait until the host's `port` accepts connections, up to `timeout`.
    pub fn wait_port(&self, port: u16, timeout: Duration) -> Result<(), HostError> {
        let until = Instant::now() + timeout;
        while !self.answers(port, Duration::from_millis(300)) {
            if Instant::now() > until {
                return Err(HostError::Timeout(format!(
                    "host {} ({}): port {port} did not answer within {timeout:?}",
                    self.name, self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// The port the host's sshd listens on.
pub const SSH_PORT: u16 = 22;

impl Host {
    /// Run a real OpenSSH sshd ([`crate::sshd::Sshd`]) inside the host on
    /// `<addr>:22` (see [`Host::ssh_port`]), accepting `authorized_keys` (OpenSSH public key lines)
    /// for every user, root included: registered as the service `sshd`,
    /// so it comes back at every power on. Its ed25519 host key is made
    /// once, in `<host dir>/keys`, and kept across reboots. The keys are
    /// also written to the host's `/root/.ssh/authorized_keys`, as on a
    /// real machine. Waits until sshd answers (10 s).
    pub fn start_sshd(&mut self, authorized_keys: Vec<String>) -> Result<(), HostError> {
        self.start_sshd_with_env(authorized_keys, Vec::new())
    }

    /// [`Host::start_sshd`], with variables sshd sets for every session
    /// (`SetEnv`), as a system's own environment would (e.g. what PHP needs
    /// to find pfSense's includes in the pfSense stand-in).
    pub fn start_sshd_with_env(
        &mut self,
        authorized_keys: Vec<String>,
        set_env: Vec<(String, String)>,
    ) -> Result<(), HostError> {
        if self.ssh_host_public.is_some() {
            return Err(HostError::Invalid(format!(
                "host {}: sshd is already registered",
                self.name
            )));
        }
        let keys_dir = self.dir.join("keys");
        let sshd_err = |name: &str, e: crate::LabError| HostError::Sshd {
            host: name.to_string(),
            reason: e.to_string(),
        };
        let (key, public) = crate::sshd::client_key(&keys_dir, "ed25519", None)
            .map_err(|e| sshd_err(&self.name, e))?;
        let host_key = keys_dir.join("ssh_host_ed25519_key");
        fs::rename(&key, &host_key).map_err(io_err(format!("renaming {}", key.display())))?;
        let host_pub = host_key.with_extension("pub");
        fs::rename(key.with_extension("pub"), &host_pub)
            .map_err(io_err(format!("renaming {}.pub", key.display())))?;
        let public: String = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        self.ssh_host_public = Some(public);
        let mut ak = authorized_keys.join("\n");
        ak.push('\n');
        let ak_path = self.path("/root/.ssh/authorized_keys");
        fs::write(&ak_path, ak).map_err(io_err(format!("writing {}", ak_path.display())))?;
        let dir = self.dir.join("sshd");
        // Port 22, but a non-root user's fallback host gets a free one.
        let port = if self.isolated() || nix::unistd::geteuid().is_root() {
            SSH_PORT
        } else {
            crate::free_port(self.ip()).map_err(|e| sshd_err(&self.name, e))?
        };
        self.ssh_port = Some(port);
        let listen = SocketAddr::new(self.ip(), port);
        self.add_service("sshd", move |h| {
            let mut spec = crate::sshd::SshdSpec::new(listen, dir.clone(), authorized_keys.clone());
            spec.wrapper = h.wrapper();
            spec.host_key = Some(host_key.clone());
            spec.set_env = set_env.clone();
            let name = h.name.clone();
            // Forked on the lab's thread: it lives as long as the host.
            let sshd = h
                .net
                .spawner
                .run(move || crate::sshd::Sshd::start(&spec, Duration::from_secs(10)))?
                .map_err(|e| sshd_err(&name, e))?;
            Ok(Box::new(sshd) as ServiceGuard)
        })
    }

    /// The `known_hosts` line of the host's sshd (`198.18.N.k ssh-ed25519
    /// AAAA...`, `[ip]:port ...` off port 22), once [`Host::start_sshd`] ran.
    pub fn known_hosts_line(&self) -> Option<String> {
        let key = self.ssh_host_public.as_ref()?;
        Some(match self.ssh_port? {
            SSH_PORT => format!("{} {key}", self.addr),
            port => format!("[{}]:{port} {key}", self.addr),
        })
    }

    /// The port of the host's sshd (22; a free port for a non-root
    /// user's fallback host), once [`Host::start_sshd`] ran.
    pub fn ssh_port(&self) -> Option<u16> {
        self.ssh_port
    }

    /// The host's sshd public key (`ssh-ed25519 AAAA...`), once
    /// [`Host::start_sshd`] ran.
    pub fn ssh_host_public_key(&self) -> Option<&str> {
        self.ssh_host_public.as_deref()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.power_off();
        let k = self.addr.octets()[3];
        self.net.live.lock().expect("live hosts").remove(&k);
    }
}

fn open_log(path: &Path) -> Result<File, HostError> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))
}
