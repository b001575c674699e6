//! Where and how to connect: the target, the keys, known_hosts and its
//! policy, deadlines; defaults from `~/.ssh/config`-style files
//! (`ssh2-config`).

use std::fmt;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::SshError;

/// What to do with a host key that known_hosts does not record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (the default).
    #[default]
    Strict,
    /// Record an unknown key in known_hosts, with a warning, then trust it;
    /// still refuse a changed key (OpenSSH's `accept-new`).
    AcceptNew,
    /// Accept any key, with a warning on every connection. Only when the
    /// user asked for it loudly (a flag named so).
    InsecureIgnore,
}

impl std::str::FromStr for HostKeyPolicy {
    type Err = SshError;
    fn from_str(s: &str) -> Result<Self, SshError> {
        match s {
            "strict" | "yes" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "insecure-ignore" => Ok(HostKeyPolicy::InsecureIgnore),
            _ => Err(SshError::InvalidArgument {
                what: "host key policy".into(),
                value: s.into(),
                reason: "expected strict, accept-new or insecure-ignore".into(),
            }),
        }
    }
}

/// The host to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name used in messages (e.g. the topology's node name).
    pub name: String,
    /// An IP address or a DNS name.
    pub host: String,
    /// The SSH port (22).
    pub port: u16,
    /// The remote user.
    pub user: String,
}

impl Target {
    /// `name` at `host:22` as `user`.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        user: impl Into<String>,
    ) -> Target {
        Target {
            name: name.into(),
            host: host.into(),
            port: 22,
            user: user.into(),
        }
    }

    /// How errors name it: `name (user@host:port)`.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.name.is_empty() || self.name == self.host {
            format!("{}@{host}:{}", self.user, self.port)
        } else {
            format!("{} ({}@{host}:{})", self.name, self.user, self.port)
        }
    }

    /// Refuse a host that is neither an IP address nor a DNS name, a user
    /// name a shell or sshd would misread, and port 0.
    pub fn validate(&self) -> Result<(), SshError> {
        validate_host(&self.host)?;
        validate_user(&self.user)?;
        if self.port == 0 {
            return Err(SshError::InvalidArgument {
                what: format!("port of {}", self.name),
                value: "0".into(),
                reason: "a port is 1 to 65535".into(),
            });
        }
        Ok(())
    }
}

/// Whether `host` is an IP address (v4, v6, `[v6]`) or a DNS name
/// (RFC 1123 labels of letters, digits and `-`, not starting or ending
/// with `-`, 63 bytes each, 253 in all).
pub fn validate_host(host: &str) -> Result<(), SshError> {
    let bad = |reason: &str| SshError::InvalidArgument {
        what: "host".into(),
        value: host.into(),
        reason: reason.into(),
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() || host.len() > 253 {
        return Err(bad(
            "expected an IP address or a DNS name of 1 to 253 bytes",
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "expected an IP address or a DNS name (labels of letters, digits and '-')",
            ));
        }
    }
    Ok(())
}

/// Whether `user` is a portable user name: letters, digits, `.`, `_`,
/// `-` (not first), 1 to 32 bytes; `$` allowed last (Samba machine
/// accounts).
pub fn validate_user(user: &str) -> Result<(), SshError> {
    let body = user.strip_suffix('$').unwrap_or(user);
    let ok = !body.is_empty()
        && user.len() <= 32
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SshError::InvalidArgument {
            what: "user".into(),
            value: user.into(),
            reason: "expected 1 to 32 letters, digits, '.', '_' or '-' (not first)".into(),
        })
    }
}

/// How to authenticate. Holds paths and an environment variable's name,
/// never a key or a passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Private key files, tried in order. Empty: the OpenSSH defaults that
    /// exist (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`).
    pub keys: Vec<PathBuf>,
    /// Also try the keys of ssh-agent.
    pub agent: bool,
    /// The agent's socket; None: `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// The environment variable holding the passphrase of encrypted keys.
    pub passphrase_env: Option<String>,
}

impl Default for Auth {
    /// The default keys and ssh-agent, as OpenSSH.
    fn default() -> Auth {
        Auth {
            keys: Vec::new(),
            agent: true,
            agent_socket: None,
            passphrase_env: None,
        }
    }
}

/// Where warnings go (an unknown key recorded under `AcceptNew`, host
/// key checking turned off). Default: stderr, prefixed `WARNING: `.
#[derive(Clone)]
pub struct Warn(Arc<dyn Fn(&str) + Send + Sync>);

impl Warn {
    /// Send warnings to `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Warn {
        Warn(Arc::new(f))
    }

    /// Say `msg`.
    pub fn say(&self, msg: &str) {
        (self.0)(msg)
    }
}

impl Default for Warn {
    fn default() -> Warn {
        Warn::new(|m| eprintln!("WARNING: {m}"))
    }
}

impl fmt::Debug for Warn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Warn(..)")
    }
}

/// Everything [`Session::connect`](crate::Session::connect) needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host.
    pub target: Target,
    /// The keys.
    pub auth: Auth,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// What to do with unknown keys.
    pub host_key_policy: HostKeyPolicy,
    /// The deadline for connecting: TCP, handshake and authentication.
    pub connect_timeout: Duration,
    /// Run commands under `sudo -n --` when the user is not root.
    pub sudo: bool,
    /// Commands running at once over the connection; more wait their turn
    /// (OpenSSH's `MaxSessions` is 10 by default; one channel stays free
    /// to kill a command at its deadline).
    pub max_channels: usize,
    /// Send a keepalive after this much silence from the server (a dead
    /// connection is noticed after three unanswered).
    pub keepalive: Option<Duration>,
    /// Where warnings go.
    pub warn: Warn,
}

/// The home directory (`$HOME`).
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The current user's name (`$USER`, `$LOGNAME`), else `root`.
fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Settings read from an `ssh_config` file for one host; None where the
/// file says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfigDefaults {
    /// `HostName`.
    pub host_name: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile` (`~` expanded).
    pub identity_files: Vec<PathBuf>,
    /// `UserKnownHostsFile` (the first one).
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking yes` or `accept-new` (`no` is not honoured:
    /// turning host key checking off takes an explicit flag).
    pub host_key_policy: Option<HostKeyPolicy>,
    /// `ConnectTimeout`.
    pub connect_timeout: Option<Duration>,
}

/// Read the settings of `host` (a `Host` pattern's name) from the
/// ssh_config file at `path`. A missing file gives no settings.
pub fn ssh_config_defaults(path: &Path, host: &str) -> Result<SshConfigDefaults, SshError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SshConfigDefaults::default());
        }
        Err(e) => {
            return Err(SshError::InvalidArgument {
                what: "ssh_config file".into(),
                value: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS
        | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    let mut parsed = ssh2_config::SshConfig::default();
    if let Some(h) = home() {
        parsed = parsed.home_dir(h);
    }
    let parsed = parsed
        .parse(&mut BufReader::new(file), rules)
        .map_err(|e| SshError::InvalidArgument {
            what: "ssh_config file".into(),
            value: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let p = parsed.query(host);
    let field = |name: &str| {
        p.unsupported_fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
    };
    let expand = |s: String| match (s.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(s),
    };
    Ok(SshConfigDefaults {
        host_name: p.host_name.clone(),
        user: p.user.clone(),
        port: p.port,
        identity_files: p.identity_file.clone().unwrap_or_default(),
        known_hosts: field("userknownhostsfile").map(expand),
        host_key_policy: match field("stricthostkeychecking")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Some("yes") => Some(HostKeyPolicy::Strict),
            Some("accept-new") => Some(HostKeyPolicy::AcceptNew),
            _ => None,
        },
        connect_timeout: p.connect_timeout,
    })
}

impl Config {
    /// Connect to `host:22` as `user`, named `name` in messages, with the
    /// defaults: OpenSSH's default keys and ssh-agent, `~/.ssh/known_hosts`,
    /// strict host key checking, a 10 s connect deadline, no sudo.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        user: impl Into<String>,
    ) -> Config {
        Config {
            target: Target::new(name, host, user),
            auth: Auth::default(),
            known_hosts: home()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".ssh/known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            sudo: false,
            max_channels: 8,
            keepalive: Some(Duration::from_secs(15)),
            warn: Warn::default(),
        }
    }

    /// Like [`Config::new`], with what `~/.ssh/config` says about `alias`
    /// (HostName, User, Port, IdentityFile, UserKnownHostsFile,
    /// StrictHostKeyChecking yes/accept-new, ConnectTimeout); the user
    /// defaults to the current user. Override with the builders after.
    pub fn from_ssh_config(name: impl Into<String>, alias: &str) -> Result<Config, SshError> {
        let path = home()
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".ssh/config");
        Config::from_ssh_config_file(name, alias, &path)
    }

    /// [`Config::from_ssh_config`] with another file.
    pub fn from_ssh_config_file(
        name: impl Into<String>,
        alias: &str,
        path: &Path,
    ) -> Result<Config, SshError> {
        let d = ssh_config_defaults(path, alias)?;
        let mut c = Config::new(
            name,
            d.host_name.clone().unwrap_or_else(|| alias.to_string()),
            d.user.clone().unwrap_or_else(current_user),
        );
        c.apply_ssh_config(&d);
        Ok(c)
    }

    /// Take port, keys, known_hosts, policy and connect timeout from `d`
    /// where it has them (not the host name or user: the caller decides).
    pub fn apply_ssh_config(&mut self, d: &SshConfigDefaults) {
        if let Some(p) = d.port {
            self.target.port = p;
        }
        if !d.identity_files.is_empty() {
            self.auth.keys = d.identity_files.clone();
        }
        if let Some(k) = &d.known_hosts {
            self.known_hosts = k.clone();
        }
        if let Some(p) = d.host_key_policy {
            self.host_key_policy = p;
        }
        if let Some(t) = d.connect_timeout {
            self.connect_timeout = t;
        }
    }

    /// Set the port.
    pub fn port(mut self, port: u16) -> Config {
        self.target.port = port;
        self
    }

    /// Use only these key files (and the agent if on).
    pub fn keys(mut self, keys: impl IntoIterator<Item = PathBuf>) -> Config {
        self.auth.keys = keys.into_iter().collect();
        self
    }

    /// Add one key file.
    pub fn key(mut self, key: impl Into<PathBuf>) -> Config {
        self.auth.keys.push(key.into());
        self
    }

    /// Try ssh-agent's keys (on by default).
    pub fn agent(mut self, on: bool) -> Config {
        self.auth.agent = on;
        self
    }

    /// Use the agent at `socket` instead of `SSH_AUTH_SOCK`.
    pub fn agent_socket(mut self, socket: impl Into<PathBuf>) -> Config {
        self.auth.agent = true;
        self.auth.agent_socket = Some(socket.into());
        self
    }

    /// Read encrypted keys' passphrase from environment variable `var`.
    pub fn passphrase_env(mut self, var: impl Into<String>) -> Config {
        self.auth.passphrase_env = Some(var.into());
        self
    }

    /// Use this known_hosts file.
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> Config {
        self.known_hosts = path.into();
        self
    }

    /// Set the host key policy.
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Config {
        self.host_key_policy = policy;
        self
    }

    /// Set the connect deadline.
    pub fn connect_timeout(mut self, t: Duration) -> Config {
        self.connect_timeout = t;
        self
    }

    /// Run commands under `sudo -n --` when the user is not root.
    pub fn sudo(mut self, on: bool) -> Config {
        self.sudo = on;
        self
    }

    /// Commands at once over the connection (at least 1).
    pub fn max_channels(mut self, n: usize) -> Config {
        self.max_channels = n.max(1);
        self
    }

    /// Send warnings to `warn`.
    pub fn warn(mut self, warn: Warn) -> Config {
        self.warn = warn;
        self
    }

    /// Whether commands get `sudo -n --` by default: sudo on and the user
    /// not root.
    pub fn sudo_effective(&self) -> bool {
        self.sudo && self.target.user != "root"
    }

    /// The key files to try: the configured ones, or OpenSSH's defaults
    /// that exist.
    pub(crate) fn key_files(&self) -> Vec<PathBuf> {
        if !self.auth.keys.is_empty() {
            return self.auth.keys.clone();
        }
        let Some(h) = home() else { return vec![] };
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|f| h.join(".ssh").join(f))
            .filter(|p| p.is_file())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_users_validated() {
        for ok in [
            "10.0.20.11",
            "::1",
            "[fe80::1]",
            "fw1",
            "pfsense.lab.example",
            "a-b.c",
        ] {
            validate_host(ok).unwrap();
        }
        for bad in ["", "a b", "-oProxyCommand=x", "a;b", "a..b", "$(id)", "h\n"] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
        for ok in ["root", "admin", "ci-bot", "svc_1", "m.x", "host$"] {
            validate_user(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            "a b",
            "a;b",
            "r@h",
            "toolong_toolong_toolong_toolong_x",
        ] {
            assert!(validate_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn describe_names_host_user_port() {
        let t = Target::new("fw1", "127.0.0.5", "admin");
        assert_eq!(t.describe(), "fw1 (admin@127.0.0.5:22)");
    }

    #[test]
    fn ssh_config_defaults_with_global_section() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(
            &p,
            "ServerAliveInterval 30\n\nHost fw1\n  HostName 127.0.0.7\n  User admin\n  Port 2222\n  IdentityFile /keys/fw1\n  UserKnownHostsFile /kh/fw1\n  StrictHostKeyChecking accept-new\n\nHost *\n  User nobody\n  ConnectTimeout 7\n",
        )
        .unwrap();
        let d = ssh_config_defaults(&p, "fw1").unwrap();
        assert_eq!(d.host_name.as_deref(), Some("127.0.0.7"));
        assert_eq!(d.user.as_deref(), Some("admin"));
        assert_eq!(d.port, Some(2222));
        assert_eq!(d.identity_files, vec![PathBuf::from("/keys/fw1")]);
        assert_eq!(d.known_hosts, Some(PathBuf::from("/kh/fw1")));
        assert_eq!(d.host_key_policy, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(d.connect_timeout, Some(Duration::from_secs(7)));
        let c = Config::from_ssh_config_file("fw1", "fw1", &p).unwrap();
        assert_eq!(c.target.host, "127.0.0.7");
        assert_eq!(c.target.port, 2222);
        let other = Config::from_ssh_config_file("x", "other", &p).unwrap();
        assert_eq!(other.target.user, "nobody");
        assert_eq!(other.target.port, 22);
        assert_eq!(other.host_key_policy, HostKeyPolicy::Strict);
        let none = ssh_config_defaults(&dir.path().join("missing"), "fw1").unwrap();
        assert_eq!(none, SshConfigDefaults::default());
    }
}
