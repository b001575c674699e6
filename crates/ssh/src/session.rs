//! One kept connection and the commands run over it.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use crate::known_hosts::{self, Verdict, fingerprint, host_pattern};
use crate::{Cmd, Config, HostKeyPolicy, SshError, Target, Warn};

/// How long killing a command at its deadline may take on top of the
/// deadline (the kill request, a kill over a second channel, the channel's
/// close).
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The first line the wrapper writes on stderr: the process group of the
/// command (the session's shell, which sshd made a session leader; `exec`
/// keeps its pid). Stripped from the stderr returned.
const PGID_MARK: &str = "hacli-ssh-pgid:";

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// A signal ended it (`TERM`, `KILL`, ...).
    Signal(String),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a command wrote and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// Its stdout, whole.
    pub stdout: Vec<u8>,
    /// Its stderr, whole.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl fmt::Debug for Output {
    /// Sizes and status only: output may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("stdout_bytes", &self.stdout.len())
            .field("stderr_bytes", &self.stderr.len())
            .field("status", &self.status)
            .finish()
    }
}

/// The last `max` bytes of `bytes`, from a line start where one is near,
/// as text.
fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let mut t = &bytes[start..];
    if start > 0
        && let Some(nl) = t.iter().position(|b| *b == b'\n')
        && nl < t.len() - 1
    {
        t = &t[nl + 1..];
    }
    let s = String::from_utf8_lossy(t).trim().to_string();
    if s.is_empty() {
        "(empty)".into()
    } else if start > 0 {
        format!("...{s}")
    } else {
        s
    }
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }

    /// Itself if it succeeded, else [`SshError::Failed`] naming the host,
    /// the masked command, the status and the end of stderr (masked).
    pub fn check(self, cmd: &Cmd, target: &Target) -> Result<Output, SshError> {
        self.check_shown(cmd, &target.describe(), cmd.to_string())
    }

    fn check_shown(self, cmd: &Cmd, host: &str, shown: String) -> Result<Output, SshError> {
        if self.success() {
            return Ok(self);
        }
        Err(SshError::Failed {
            host: host.to_string(),
            cmd: shown,
            status: self.status.clone(),
            stderr_tail: cmd.mask(&tail(&self.stderr, 2000)),
        })
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// russh's handler: checks the host key against known_hosts.
struct Client {
    target: Target,
    host: String,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    warn: Warn,
    seen: Arc<std::sync::Mutex<Option<String>>>,
}

/// The handler's error: russh's, or our refusal of the host key.
#[derive(Debug)]
enum HandlerError {
    Russh(russh::Error),
    Refused(Box<SshError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

impl Client {
    fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let got = fingerprint(key);
        let file = &self.known_hosts;
        let pattern = host_pattern(&self.target.host, self.target.port);
        if self.policy == HostKeyPolicy::InsecureIgnore {
            // Even with checking off, a key known_hosts revokes is refused
            // (as OpenSSH with StrictHostKeyChecking=no).
            if let Ok(Verdict::Revoked { line }) =
                known_hosts::check(file, &self.target.host, self.target.port, key)
            {
                return Err(SshError::HostKeyRevoked {
                    host: self.host.clone(),
                    fingerprint: got,
                    known_hosts_file: file.clone(),
                    line,
                });
            }
            self.warn.say(&format!(
                "ssh {}: host key checking is OFF (insecure-ignore): accepting {got} without checking {}",
                self.host,
                file.display()
            ));
            return Ok(());
        }
        let verdict =
            known_hosts::check(file, &self.target.host, self.target.port, key).map_err(|e| {
                SshError::KnownHosts {
                    host: self.host.clone(),
                    file: file.clone(),
                    reason: e.to_string(),
                }
            })?;
        match verdict {
            Verdict::Known { .. } => Ok(()),
            Verdict::Changed {
                line,
                expected_fingerprint,
            } => Err(SshError::HostKeyMismatch {
                host: self.host.clone(),
                expected_fingerprint,
                got_fingerprint: got.clone(),
                known_hosts_file: file.clone(),
                line,
                fix: format!(
                    "If the host was reinstalled and {got} is its new key (check on its console: `ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub`), remove the old entry (`ssh-keygen -R '{pattern}' -f {f}`, or delete line {line}), then connect once with host key policy accept-new.",
                    kind = kind_file(key),
                    f = file.display(),
                ),
            }),
            Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
                host: self.host.clone(),
                fingerprint: got,
                known_hosts_file: file.clone(),
                line,
            }),
            Verdict::Unknown { other_types } => {
                if self.policy == HostKeyPolicy::AcceptNew {
                    let line = known_hosts::record(file, &self.target.host, self.target.port, key)
                        .map_err(|e| SshError::KnownHosts {
                            host: self.host.clone(),
                            file: file.clone(),
                            reason: format!("recording the new host key: {e}"),
                        })?;
                    self.warn.say(&format!(
                        "ssh {}: UNKNOWN host key {got} ({}) ACCEPTED and recorded as {pattern} at {}:{line} (host key policy accept-new); from now on only this key is accepted",
                        self.host,
                        key.algorithm(),
                        file.display()
                    ));
                    return Ok(());
                }
                let others = if other_types.is_empty() {
                    String::new()
                } else {
                    let l: Vec<String> = other_types
                        .iter()
                        .map(|(line, kind)| format!("{kind} at line {line}"))
                        .collect();
                    format!(
                        " known_hosts records this host only with other key types ({}): the host now offers a {} key.",
                        l.join(", "),
                        key.algorithm()
                    )
                };
                Err(SshError::HostKeyUnknown {
                    host: self.host.clone(),
                    fingerprint: got.clone(),
                    known_hosts_file: file.clone(),
                    hint: format!(
                        "{others}Check {got} against the host (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub`), then record it: `ssh-keyscan -p {port} {host} >> {f}`, or connect once with host key policy accept-new.",
                        kind = kind_file(key),
                        port = self.target.port,
                        host = self.target.host,
                        f = file.display(),
                    ),
                })
            }
        }
    }
}

/// The host key file's infix for `key`'s type (`ed25519`, `ecdsa`, `rsa`).
fn kind_file(key: &PublicKey) -> &'static str {
    match key.algorithm() {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::Ecdsa { .. } => "ecdsa",
        Algorithm::Rsa { .. } => "rsa",
        _ => "*",
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        let key = match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                return Err(HandlerError::Refused(Box::new(SshError::HostKeyUnknown {
                    host: self.host.clone(),
                    fingerprint: "(a host certificate)".into(),
                    known_hosts_file: self.known_hosts.clone(),
                    hint: "host certificates are not accepted; record the host's plain key".into(),
                })));
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint(key));
        }
        self.verify(key)
            .map(|()| true)
            .map_err(|e| HandlerError::Refused(Box::new(e)))
    }
}

struct Inner {
    handle: Handle<Client>,
    target: Target,
    host: String,
    sudo: bool,
    slots: Semaphore,
    max_channels: usize,
    fingerprint: String,
}

/// One kept SSH connection. Clones share it; commands run concurrently
/// over it, each on its own channel (at most `Config::max_channels` at
/// once, the others wait their turn within their own deadline).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.host)
            .field("host_key", &self.inner.fingerprint)
            .field("sudo", &self.inner.sudo)
            .finish_non_exhaustive()
    }
}

/// What the command's channel brought back.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
    pgid: Option<u32>,
    /// Bytes of stderr already searched for the pgid line.
    scanned: usize,
}

impl Collected {
    /// Find and strip the wrapper's pgid line from stderr.
    fn take_pgid(&mut self) {
        if self.pgid.is_some() {
            return;
        }
        let hay = &self.stderr[self.scanned..];
        let Some(at) = find(hay, PGID_MARK.as_bytes()) else {
            // Keep a marker's worth of bytes for the next packet.
            self.scanned = self.stderr.len().saturating_sub(PGID_MARK.len());
            return;
        };
        let start = self.scanned + at;
        let Some(nl) = self.stderr[start..].iter().position(|b| *b == b'\n') else {
            self.scanned = start;
            return;
        };
        let digits = &self.stderr[start + PGID_MARK.len()..start + nl];
        self.pgid = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        self.stderr.drain(start..start + nl + 1);
        self.scanned = start;
    }

    fn size(&self) -> usize {
        self.stdout.len() + self.stderr.len()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Outcome {
    /// The channel closed (with or without an exit status).
    Closed,
    /// The server refused the exec request.
    Refused,
    /// Output passed the cap.
    TooLarge,
}

async fn read_all(rd: &mut ChannelReadHalf, cap: usize, c: &mut Collected) -> Outcome {
    loop {
        let Some(msg) = rd.wait().await else {
            return Outcome::Closed;
        };
        match msg {
            ChannelMsg::Data { data } => c.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                c.stderr.extend_from_slice(&data);
                c.take_pgid();
            }
            ChannelMsg::ExitStatus { exit_status } => {
                c.status = Some(ExitStatus::Code(exit_status));
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                c.status = Some(ExitStatus::Signal(match signal_name {
                    Sig::Custom(s) => s,
                    s => format!("{s:?}"),
                }));
            }
            ChannelMsg::Failure => return Outcome::Refused,
            ChannelMsg::Close => return Outcome::Closed,
            _ => {}
        }
        if c.size() > cap {
            return Outcome::TooLarge;
        }
    }
}

/// Send stdin then EOF, while reading everything the command writes
/// (both at once, so a command that writes before it reads never blocks
/// us). The writer's errors are not the command's: a command may exit
/// without reading its stdin.
async fn drive(
    rd: &mut ChannelReadHalf,
    wr: &ChannelWriteHalf<client::Msg>,
    stdin: Option<&[u8]>,
    cap: usize,
    c: &mut Collected,
) -> Outcome {
    let writer = async {
        if let Some(bytes) = stdin {
            let _ = wr.data(bytes).await;
        }
        let _ = wr.eof().await;
    };
    let reader = read_all(rd, cap, c);
    tokio::pin!(writer, reader);
    let mut written = false;
    loop {
        tokio::select! {
            o = &mut reader => return o,
            () = &mut writer, if !written => written = true,
        }
    }
}

impl Session {
    /// Connect, check the host key against known_hosts (per the policy),
    /// and authenticate with the key files, then the agent's keys; all
    /// within `cfg.connect_timeout`.
    pub async fn connect(cfg: &Config) -> Result<Session, SshError> {
        cfg.target.validate()?;
        let host = cfg.target.describe();
        match tokio::time::timeout(cfg.connect_timeout, connect_inner(cfg, &host)).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout {
                host,
                cmd: "connect".into(),
                timeout: cfg.connect_timeout,
                what: "no SSH session was set up in time (TCP, key exchange and authentication); is the host up and the port right?".into(),
            }),
        }
    }

    /// The host.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// The host key's SHA256 fingerprint, as checked.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Whether `cmd` runs under `sudo -n --` on this session.
    pub fn uses_sudo(&self, cmd: &Cmd) -> bool {
        cmd.uses_sudo(self.inner.sudo)
    }

    /// The masked command line as this session runs it (sudo prefix
    /// included), for messages and dry runs.
    pub fn display(&self, cmd: &Cmd) -> String {
        cmd.display_with(self.uses_sudo(cmd))
    }

    /// Run `cmd` and wait for it, up to `timeout` (waiting for a free
    /// channel included). At the deadline the command is killed with its
    /// whole process group and [`SshError::Timeout`] returned, at most
    /// [`KILL_GRACE`] after the deadline: the remote login shell (a
    /// session leader, made so by sshd) first reports its pid on stderr
    /// (that line is removed from the output), then `exec`s the command;
    /// the kill goes over a second channel as `kill -KILL -- -PGID` (with
    /// `sudo -n` if the command used it), after an SSH `signal` request.
    /// The remote login shell must be POSIX (sh, bash, dash, ash).
    /// A non-zero exit is not an error here: see [`Output::check`] or
    /// [`Session::run_checked`].
    pub async fn run(&self, cmd: &Cmd, timeout: Duration) -> Result<Output, SshError> {
        let deadline = Instant::now() + timeout;
        let sudo = self.uses_sudo(cmd);
        let shown = cmd.display_with(sudo);
        let line = format!("echo {PGID_MARK}$$ >&2; exec {}", cmd.command_line(sudo)?);
        let host = &self.inner.host;
        let timed_out = |what: String| SshError::Timeout {
            host: host.clone(),
            cmd: shown.clone(),
            timeout,
            what,
        };
        let io = |context: &str, e: &dyn fmt::Display| SshError::Io {
            host: host.clone(),
            context: format!("{context} `{shown}`"),
            reason: e.to_string(),
        };

        let _permit = match timeout_at(deadline, self.inner.slots.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(io("waiting for a channel for", &e)),
            Err(_) => {
                return Err(timed_out(format!(
                    "it never started: all {} channels of the connection stayed busy",
                    self.inner.max_channels
                )));
            }
        };
        let ch = match timeout_at(deadline, self.open_channel()).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(e)) => return Err(io("opening a channel for", &e)),
            Err(_) => {
                return Err(timed_out(
                    "it never started: the server did not open a channel in time (its MaxSessions may be lower than Config::max_channels)".into(),
                ));
            }
        };
        let (mut rd, wr) = ch.split();
        match timeout_at(deadline, wr.exec(true, line.into_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io("starting", &e)),
            Err(_) => {
                let _ = wr.close().await;
                return Err(timed_out(
                    "it never started: no answer to the exec request".into(),
                ));
            }
        }
        let mut c = Collected::default();
        let outcome = timeout_at(
            deadline,
            drive(&mut rd, &wr, cmd.get_stdin(), cmd.get_max_output(), &mut c),
        )
        .await;
        match outcome {
            Ok(Outcome::Closed) => match c.status {
                Some(status) => Ok(Output {
                    stdout: c.stdout,
                    stderr: c.stderr,
                    status,
                }),
                None => Err(io(
                    "the channel closed without an exit status for",
                    &format!(
                        "the connection or sshd went away; stderr: {}",
                        cmd.mask(&tail(&c.stderr, 500))
                    ),
                )),
            },
            Ok(Outcome::Refused) => Err(io("the server refused to run", &"exec request denied")),
            Ok(Outcome::TooLarge) => {
                self.kill(&mut rd, &wr, &mut c, sudo).await;
                Err(SshError::OutputTooLarge {
                    host: host.clone(),
                    cmd: shown.clone(),
                    limit: cmd.get_max_output(),
                })
            }
            Err(_) => {
                let how = self.kill(&mut rd, &wr, &mut c, sudo).await;
                Err(timed_out(how))
            }
        }
    }

    /// Open a session channel; a server refusing for now (OpenSSH past
    /// its `MaxSessions` answers "connect failed"; others say
    /// "administratively prohibited" or "resource shortage") is asked again with a capped backoff (the caller's
    /// deadline bounds it).
    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let mut wait = Duration::from_millis(20);
        loop {
            match self.inner.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::AdministrativelyProhibited
                    | russh::ChannelOpenFailure::ResourceShortage
                    | russh::ChannelOpenFailure::ConnectFailed,
                )) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                r => return r,
            }
        }
    }

    /// [`Session::run`], then [`Output::check`]: a non-zero exit or a
    /// signal is [`SshError::Failed`].
    pub async fn run_checked(&self, cmd: &Cmd, timeout: Duration) -> Result<Output, SshError> {
        let out = self.run(cmd, timeout).await?;
        out.check_shown(cmd, &self.inner.host, self.display(cmd))
    }

    /// Kill a command that outlived its deadline or its output cap, with
    /// its process group, within [`KILL_GRACE`]; what happened, for the
    /// error.
    ///
    /// The SSH `signal` request goes first, but OpenSSH's sshd refuses it
    /// for root logins ("session signalling requires privilege
    /// separation": a root session runs in the monitor) and it cannot
    /// reach processes under sudo, so the command's process group (its
    /// login shell's pid, which the wrapper reported) is killed over a
    /// second channel too. A deadline that came before the login shell
    /// reported it (a slow `.bashrc`) waits for the report.
    async fn kill(
        &self,
        rd: &mut ChannelReadHalf,
        wr: &ChannelWriteHalf<client::Msg>,
        c: &mut Collected,
        sudo: bool,
    ) -> String {
        let until = Instant::now() + KILL_GRACE;
        let _ = timeout_at(until, wr.signal(Sig::KILL)).await;
        let mut closed = false;
        if c.pgid.is_none() {
            let _ = timeout_at(until, async {
                while c.pgid.is_none() {
                    match rd.wait().await {
                        Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                            c.stderr.extend_from_slice(&data);
                            c.take_pgid();
                        }
                        Some(ChannelMsg::Close) | None => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
            })
            .await;
        }
        let pgid = c.pgid.filter(|p| *p > 1);
        let mut killed_by_pgid = false;
        if let (Some(pgid), false) = (pgid, closed) {
            // Under sudo: TERM first, which sudo relays to a command it runs
            // on a pty of its own (Debian's `use_pty`), then KILL.
            let kill = if sudo {
                format!(
                    "sudo -n -- sh -c 'kill -s TERM -- -{pgid}; sleep 0.3; kill -s KILL -- -{pgid}' 2>/dev/null"
                )
            } else {
                format!("kill -s KILL -- -{pgid}")
            };
            let second = async {
                let mut ch = self.inner.handle.channel_open_session().await.ok()?;
                ch.exec(true, kill.into_bytes()).await.ok()?;
                while let Some(m) = ch.wait().await {
                    if matches!(m, ChannelMsg::Close) {
                        break;
                    }
                }
                Some(())
            };
            killed_by_pgid = timeout_at(until, second).await.ok().flatten().is_some();
        }
        // The command's channel closes once its processes are gone.
        if !closed {
            closed = timeout_at(until, async {
                while let Some(m) = rd.wait().await {
                    if matches!(m, ChannelMsg::Close) {
                        break;
                    }
                }
            })
            .await
            .is_ok();
        }
        let _ = timeout_at(until + Duration::from_millis(200), wr.close()).await;
        match (pgid, killed_by_pgid, closed) {
            (Some(p), _, true) => format!("killed with its process group {p}"),
            (None, _, true) => "killed (it ended on the SSH signal request)".into(),
            (Some(p), true, false) => format!(
                "sent KILL to its process group {p}, but its channel did not close within {KILL_GRACE:?}: check the host for what is left"
            ),
            _ => format!(
                "it could NOT be confirmed killed within {KILL_GRACE:?}: a remote process may remain; check the host"
            ),
        }
    }

    /// Close the connection (for every clone of this session).
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// The russh client configuration: keepalives, and the host key types
/// known_hosts records for this host first (as OpenSSH orders them, so a
/// host known by its RSA key is not asked for its ed25519 key).
fn russh_config(cfg: &Config) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let recorded = known_hosts::recorded_types(&cfg.known_hosts, &cfg.target.host, cfg.target.port);
    if !recorded.is_empty() {
        let mut keys: Vec<Algorithm> = Vec::new();
        for kind in &recorded {
            // An RSA host key is recorded as ssh-rsa and offered as
            // rsa-sha2-512/256.
            let algs: Vec<Algorithm> = if kind == "ssh-rsa" {
                preferred
                    .key
                    .iter()
                    .filter(|a| matches!(a, Algorithm::Rsa { .. }))
                    .cloned()
                    .collect()
            } else {
                Algorithm::from_str(kind).into_iter().collect()
            };
            for a in algs {
                if preferred.key.contains(&a) && !keys.contains(&a) {
                    keys.push(a);
                }
            }
        }
        for a in preferred.key.iter() {
            if !keys.contains(a) {
                keys.push(a.clone());
            }
        }
        preferred.key = Cow::Owned(keys);
    }
    client::Config {
        preferred,
        keepalive_interval: cfg.keepalive,
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

async fn connect_inner(cfg: &Config, host: &str) -> Result<Session, SshError> {
    let t = &cfg.target;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = Client {
        target: t.clone(),
        host: host.to_string(),
        known_hosts: cfg.known_hosts.clone(),
        policy: cfg.host_key_policy,
        warn: cfg.warn.clone(),
        seen: seen.clone(),
    };
    let addr_host = t
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&t.host)
        .to_string();
    let mut handle = client::connect(Arc::new(russh_config(cfg)), (addr_host, t.port), handler)
        .await
        .map_err(|e| match e {
            HandlerError::Refused(e) => *e,
            HandlerError::Russh(e) => SshError::Connect {
                host: host.to_string(),
                reason: e.to_string(),
            },
        })?;
    let fingerprint = seen.lock().ok().and_then(|s| s.clone()).unwrap_or_default();
    authenticate(cfg, host, &mut handle).await?;
    let max = cfg.max_channels.max(1);
    Ok(Session {
        inner: Arc::new(Inner {
            handle,
            target: t.clone(),
            host: host.to_string(),
            sudo: cfg.sudo_effective(),
            slots: Semaphore::new(max),
            max_channels: max,
            fingerprint,
        }),
    })
}

async fn authenticate(
    cfg: &Config,
    host: &str,
    handle: &mut Handle<Client>,
) -> Result<(), SshError> {
    let user = &cfg.target.user;
    let auth_err = |e: &dyn fmt::Display| SshError::Connect {
        host: host.to_string(),
        reason: format!("during authentication: {e}"),
    };
    let mut tried: Vec<String> = Vec::new();
    // The server's best RSA signature hash, asked once: None = not asked yet.
    let mut rsa_hash: Option<Option<Option<russh::keys::HashAlg>>> = None;
    for path in cfg.key_files() {
        let Some(key) = load_key(cfg, host, &path, &mut tried)? else {
            continue;
        };
        let alg = key.algorithm();
        let hash = if alg.clone().is_rsa() {
            if rsa_hash.is_none() {
                rsa_hash = Some(
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| auth_err(&e))?,
                );
            }
            rsa_hash.flatten().flatten()
        } else {
            None
        };
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| auth_err(&e))?;
        if res.success() {
            return Ok(());
        }
        tried.push(format!("{} ({alg})", path.display()));
    }
    if cfg.auth.agent && by_agent(cfg, host, handle, &mut rsa_hash, &mut tried).await? {
        return Ok(());
    }
    Err(SshError::Auth {
        host: host.to_string(),
        user: user.clone(),
        tried: if tried.is_empty() {
            "no key (none configured, no default key file, agent off)".into()
        } else {
            tried.join(", ")
        },
        hint: format!(
            "Add one of these public keys to ~{user}/.ssh/authorized_keys on the host, or configure the key the host accepts."
        ),
    })
}

/// The private key at `path`, decrypted with the configured passphrase;
/// `None` (noted in `tried`) when it is encrypted and no passphrase is
/// configured or set.
fn load_key(
    cfg: &Config,
    host: &str,
    path: &Path,
    tried: &mut Vec<String>,
) -> Result<Option<russh::keys::PrivateKey>, SshError> {
    let key_err = |reason: String| SshError::Key {
        host: host.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let key = match russh::keys::load_secret_key(path, None) {
        Ok(k) => k,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(var) = &cfg.auth.passphrase_env else {
                tried.push(format!(
                    "{} (encrypted: no passphrase variable configured)",
                    path.display()
                ));
                return Ok(None);
            };
            let Some(pass) = std::env::var(var).ok().filter(|p| !p.is_empty()) else {
                tried.push(format!(
                    "{} (encrypted: environment variable {var} is not set)",
                    path.display()
                ));
                return Ok(None);
            };
            russh::keys::load_secret_key(path, Some(&pass)).map_err(|e| {
                key_err(format!(
                    "cannot decrypt it with the passphrase from {var} ({e}); check that variable"
                ))
            })?
        }
        Err(russh::keys::Error::IO(e)) => {
            return Err(key_err(format!("cannot read it: {e}")));
        }
        Err(e) => {
            return Err(key_err(format!(
                "not a usable private key ({e}); ed25519, ECDSA and RSA keys in OpenSSH or PEM format are"
            )));
        }
    };
    Ok(Some(key))
}

/// Every key of the ssh-agent, in turn: whether one was accepted (each
/// tried noted in `tried`).
async fn by_agent(
    cfg: &Config,
    host: &str,
    handle: &mut Handle<Client>,
    rsa_hash: &mut Option<Option<Option<russh::keys::HashAlg>>>,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let user = &cfg.target.user;
    let auth_err = |e: &dyn fmt::Display| SshError::Connect {
        host: host.to_string(),
        reason: format!("during authentication: {e}"),
    };
    let socket = cfg
        .auth
        .agent_socket
        .clone()
        .or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from));
    match socket {
        None => tried.push("ssh-agent (SSH_AUTH_SOCK is not set)".into()),
        Some(sock) => match russh::keys::agent::client::AgentClient::connect_uds(&sock).await {
            Err(e) => tried.push(format!("ssh-agent at {} ({e})", sock.display())),
            Ok(mut agent) => {
                let ids = agent
                    .request_identities()
                    .await
                    .map_err(|e| SshError::Auth {
                        host: host.to_string(),
                        user: user.clone(),
                        tried: format!("ssh-agent at {}", sock.display()),
                        hint: format!("listing the agent's keys failed: {e}"),
                    })?;
                if ids.is_empty() {
                    tried.push(format!("ssh-agent at {} (no keys)", sock.display()));
                }
                for id in ids {
                    let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    let fp = fingerprint(&key);
                    let hash = if key.algorithm().is_rsa() {
                        if rsa_hash.is_none() {
                            *rsa_hash = Some(
                                handle
                                    .best_supported_rsa_hash()
                                    .await
                                    .map_err(|e| auth_err(&e))?,
                            );
                        }
                        (*rsa_hash).flatten().flatten()
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(true),
                        Ok(_) => tried.push(format!("agent key {fp}")),
                        Err(e) => tried.push(format!("agent key {fp} (signing failed: {e})")),
                    }
                }
            }
        },
    }
    Ok(false)
}
