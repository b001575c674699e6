//! Where the API is and how to authenticate: [`Settings`] are layers (flags,
//! topology, environment) merged into one [`Config`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a configuration is unusable. Never carries the token's secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No endpoint was given.
    #[error(
        "no Proxmox endpoint: set the topology's hypervisor endpoint, --proxmox, PROXMOX_VE_ENDPOINT or PM_API_URL"
    )]
    NoEndpoint,
    /// The endpoint is not an `https://` URL.
    #[error(
        "Proxmox endpoint `{0}`: expected https://HOST[:PORT][/api2/json] (the API speaks HTTPS only)"
    )]
    BadEndpoint(String),
    /// No token was given.
    #[error(
        "no Proxmox API token: set PROXMOX_VE_API_TOKEN (user@realm!id=secret) or PM_API_TOKEN_ID and PM_API_TOKEN_SECRET"
    )]
    NoToken,
    /// The token is malformed (the text names the variable, never the secret).
    #[error("{0}")]
    BadToken(String),
    /// The fingerprint is not 32 hex bytes.
    #[error(
        "TLS fingerprint `{0}`: expected a SHA-256 fingerprint, 64 hex digits, colons allowed (as `pvenode cert info` prints it)"
    )]
    BadFingerprint(String),
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Both a CA or fingerprint and "insecure" were asked for.
    #[error("TLS: both {0} and insecure were asked for; choose one")]
    Conflict(String),
    /// A pinned certificate (fingerprint or CA file) and an environment
    /// variable asking to skip verification: the pin is never weakened.
    #[error(
        "TLS: {pin} is pinned, and {var} in the environment asks to skip certificate verification: a pin is never weakened by the environment; unset {name}",
        name = var.split('=').next().unwrap_or(var)
    )]
    PinWeakenedByEnvironment {
        /// The pin (`the certificate fingerprint AA:..`, `the CA file F`).
        pin: String,
        /// The variable and its value (`PM_TLS_INSECURE=true`).
        var: String,
    },
    /// An environment variable asks to skip verification, and no flag does.
    #[error(
        "TLS: {0} in the environment asks to skip certificate verification; hacli skips it only with an explicit flag (--proxmox-insecure-skip-tls-verify): pin the certificate instead (--proxmox-fingerprint, or the topology's proxmox.fingerprint), or unset the variable"
    )]
    InsecureNeedsFlag(String),
}

/// An API token: `USER@REALM!TOKENID` and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// A token from its id (`user@realm!tokenid`) and secret.
    pub fn new(id: &str, secret: &str) -> Result<Token, ConfigError> {
        let (user, tokenid) = id.split_once('!').ok_or_else(|| {
            ConfigError::BadToken(format!("API token id `{id}`: expected USER@REALM!TOKENID"))
        })?;
        if !user.contains('@') || tokenid.is_empty() {
            return Err(ConfigError::BadToken(format!(
                "API token id `{id}`: expected USER@REALM!TOKENID"
            )));
        }
        if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::BadToken(format!(
                "API token `{id}`: the secret is empty or holds whitespace"
            )));
        }
        Ok(Token {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A token in bpg's form `user@realm!tokenid=secret`; `var` names where it came from.
    pub fn parse(text: &str, var: &str) -> Result<Token, ConfigError> {
        let (id, secret) = text.split_once('=').ok_or_else(|| {
            ConfigError::BadToken(format!(
                "{var}: expected USER@REALM!TOKENID=SECRET (the secret is not shown)"
            ))
        })?;
        Token::new(id.trim(), secret.trim()).map_err(|e| match e {
            ConfigError::BadToken(m) => ConfigError::BadToken(format!("{var}: {m}")),
            other => other,
        })
    }

    /// `user@realm!tokenid`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `user@realm`.
    pub fn user(&self) -> &str {
        self.id.split('!').next().unwrap_or_default()
    }

    /// The `Authorization` header value (secret inside: never print it).
    pub(crate) fn header(&self) -> String {
        format!("PVEAPIToken={}={}", self.id, self.secret)
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Against the system's trusted roots.
    SystemRoots,
    /// Against the CA certificates (PEM) in this file.
    CaFile(PathBuf),
    /// The leaf certificate's SHA-256 must be this (the handshake signature
    /// is still checked against the certificate's key).
    Fingerprint([u8; 32]),
    /// No check of the certificate at all (only when asked loudly).
    Insecure,
}

impl TlsMode {
    /// Parse a fingerprint: 64 hex digits, colons or spaces allowed.
    pub fn fingerprint(text: &str) -> Result<TlsMode, ConfigError> {
        let hex: String = text
            .trim()
            .trim_start_matches("sha256:")
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ConfigError::BadFingerprint(text.to_string()));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| ConfigError::BadFingerprint(text.to_string()))?;
        }
        Ok(TlsMode::Fingerprint(out))
    }
}

/// Format a SHA-256 fingerprint as Proxmox prints it (`AA:BB:...`).
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One layer of settings (flags, topology, environment); merge with
/// [`Settings::or`], higher layer first, then [`Settings::build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `https://HOST:8006` (with or without `/api2/json`).
    pub endpoint: Option<String>,
    /// The API token.
    pub token: Option<Token>,
    /// A CA file (PEM).
    pub ca_file: Option<PathBuf>,
    /// A pinned SHA-256 certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Skip certificate verification (loud): an explicit flag only.
    pub insecure: bool,
    /// An environment variable that asks to skip verification
    /// (`PM_TLS_INSECURE=true`): never honoured on its own (it takes the
    /// explicit flag, [`Settings::insecure`]), and an error beside a pin.
    pub insecure_env: Option<String>,
    /// Warnings to show the user (e.g. an insecure variable was honoured).
    pub warnings: Vec<String>,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// From variables looked up by `get`: bpg's `PROXMOX_VE_ENDPOINT`,
    /// `PROXMOX_VE_API_TOKEN`, `PROXMOX_VE_INSECURE`, then Telmate's
    /// `PM_API_URL`, `PM_API_TOKEN_ID` + `PM_API_TOKEN_SECRET`,
    /// `PM_TLS_INSECURE`. `HACLI_PROXMOX_CA_FILE` and
    /// `HACLI_PROXMOX_FINGERPRINT` pin the certificate.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut s = Settings {
            endpoint: get("PROXMOX_VE_ENDPOINT").or_else(|| get("PM_API_URL")),
            ..Settings::default()
        };
        if let Some(t) = get("PROXMOX_VE_API_TOKEN") {
            s.token = Some(Token::parse(&t, "PROXMOX_VE_API_TOKEN")?);
        } else if let (Some(id), Some(secret)) =
            (get("PM_API_TOKEN_ID"), get("PM_API_TOKEN_SECRET"))
        {
            s.token = Some(Token::new(id.trim(), secret.trim()).map_err(|e| match e {
                ConfigError::BadToken(m) => {
                    ConfigError::BadToken(format!("PM_API_TOKEN_ID/PM_API_TOKEN_SECRET: {m}"))
                }
                other => other,
            })?);
        }
        s.ca_file = get("HACLI_PROXMOX_CA_FILE").map(PathBuf::from);
        s.fingerprint = get("HACLI_PROXMOX_FINGERPRINT");
        for var in ["PROXMOX_VE_INSECURE", "PM_TLS_INSECURE"] {
            if let Some(v) = get(var).filter(|v| truthy(v)) {
                s.insecure_env.get_or_insert(format!("{var}={}", v.trim()));
            }
        }
        Ok(s)
    }

    /// This layer, with `lower`'s values where this one has none.
    pub fn or(self, lower: Settings) -> Settings {
        let mut warnings = self.warnings;
        warnings.extend(lower.warnings);
        // A TLS choice is taken as a whole from the highest layer making one.
        let tls_here = self.ca_file.is_some() || self.fingerprint.is_some() || self.insecure;
        let (ca_file, fingerprint, insecure) = if tls_here {
            (self.ca_file, self.fingerprint, self.insecure)
        } else {
            (lower.ca_file, lower.fingerprint, lower.insecure)
        };
        Settings {
            endpoint: self.endpoint.or(lower.endpoint),
            token: self.token.or(lower.token),
            ca_file,
            fingerprint,
            insecure,
            insecure_env: self.insecure_env.or(lower.insecure_env),
            warnings,
        }
    }

    /// The configuration, checked.
    pub fn build(self) -> Result<Config, ConfigError> {
        let raw = self.endpoint.ok_or(ConfigError::NoEndpoint)?;
        let base = normalize_endpoint(&raw)?;
        let token = self.token.ok_or(ConfigError::NoToken)?;
        let mut warnings = self.warnings;
        if let Some(var) = self.insecure_env {
            let pin = match (&self.ca_file, &self.fingerprint) {
                (_, Some(fp)) => Some(format!("the certificate fingerprint {}", fp.trim())),
                (Some(ca), None) => Some(format!("the CA file {}", ca.display())),
                (None, None) => None,
            };
            if let Some(pin) = pin {
                return Err(ConfigError::PinWeakenedByEnvironment { pin, var });
            }
            if !self.insecure {
                return Err(ConfigError::InsecureNeedsFlag(var));
            }
            warnings.push(format!(
                "{var} is set, and so is the flag: the Proxmox server's TLS certificate is NOT verified; pin its fingerprint instead"
            ));
        }
        let tls = match (self.ca_file, self.fingerprint, self.insecure) {
            (Some(_), Some(_), _) => {
                return Err(ConfigError::Conflict("a CA file and a fingerprint".into()));
            }
            (Some(ca), None, false) => TlsMode::CaFile(ca),
            (None, Some(fp), false) => TlsMode::fingerprint(&fp)?,
            (None, None, false) => TlsMode::SystemRoots,
            (None, None, true) => TlsMode::Insecure,
            (Some(_), None, true) => return Err(ConfigError::Conflict("a CA file".into())),
            (None, Some(_), true) => return Err(ConfigError::Conflict("a fingerprint".into())),
        };
        Ok(Config {
            base,
            token,
            tls,
            warnings,
            ..Config::defaults()
        })
    }
}

/// `https://host:8006[/][api2/json]` -> `https://host:8006/api2/json`.
pub fn normalize_endpoint(raw: &str) -> Result<String, ConfigError> {
    let t = raw.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("https://")
        .ok_or_else(|| ConfigError::BadEndpoint(raw.to_string()))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    if hostport.is_empty() {
        return Err(ConfigError::BadEndpoint(raw.to_string()));
    }
    let path = &rest[hostport.len()..];
    if !(path.is_empty() || path == "/api2/json") {
        return Err(ConfigError::BadEndpoint(raw.to_string()));
    }
    Ok(format!("https://{hostport}/api2/json"))
}

/// A usable configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `https://HOST:PORT/api2/json`.
    pub base: String,
    /// The token (its `Debug` hides the secret).
    pub token: Token,
    /// Certificate check.
    pub tls: TlsMode,
    /// Deadline of one HTTP request.
    pub request_timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
    /// Longest interval between two polls of a task or a lock.
    pub poll_cap: Duration,
    /// First poll interval.
    pub poll_first: Duration,
    /// Warnings to show the user once.
    pub warnings: Vec<String>,
}

impl Config {
    fn defaults() -> Config {
        Config {
            base: String::new(),
            token: Token {
                id: String::new(),
                secret: String::new(),
            },
            tls: TlsMode::SystemRoots,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            poll_cap: Duration::from_millis(200),
            poll_first: Duration::from_millis(25),
            warnings: Vec::new(),
        }
    }

    /// A configuration for `endpoint` with `token` and `tls`, default timings.
    pub fn new(endpoint: &str, token: Token, tls: TlsMode) -> Result<Config, ConfigError> {
        Ok(Config {
            base: normalize_endpoint(endpoint)?,
            token,
            tls,
            ..Config::defaults()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn bpg_variables() {
        let s = Settings::from_vars(vars(&[
            ("PROXMOX_VE_ENDPOINT", "https://pve.lan:8006/"),
            ("PROXMOX_VE_API_TOKEN", "terraform@pve!provider=0000-1111"),
        ]))
        .unwrap();
        let c = s.build().unwrap();
        assert_eq!(c.base, "https://pve.lan:8006/api2/json");
        assert_eq!(c.token.id(), "terraform@pve!provider");
        assert_eq!(c.token.user(), "terraform@pve");
        assert_eq!(c.tls, TlsMode::SystemRoots);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("0000-1111"), "{dbg}");
    }

    #[test]
    fn telmate_variables_and_insecure_warning() {
        let s = Settings::from_vars(vars(&[
            ("PM_API_URL", "https://10.0.0.2:8006/api2/json"),
            ("PM_API_TOKEN_ID", "root@pam!tf"),
            ("PM_API_TOKEN_SECRET", "s3cr3t"),
            ("PM_TLS_INSECURE", "true"),
        ]))
        .unwrap();
        assert_eq!(s.insecure_env.as_deref(), Some("PM_TLS_INSECURE=true"));
        // The variable alone does not skip verification: the flag does.
        let e = s.clone().build().unwrap_err();
        assert_eq!(
            e,
            ConfigError::InsecureNeedsFlag("PM_TLS_INSECURE=true".into())
        );
        assert!(
            e.to_string().contains("--proxmox-insecure-skip-tls-verify"),
            "{e}"
        );
        let flag = Settings {
            insecure: true,
            ..Settings::default()
        };
        let c = flag.or(s).build().unwrap();
        assert_eq!(c.tls, TlsMode::Insecure);
        assert!(
            c.warnings[0].contains("PM_TLS_INSECURE"),
            "{:?}",
            c.warnings
        );
        assert_eq!(c.base, "https://10.0.0.2:8006/api2/json");
    }

    #[test]
    fn a_pin_plus_an_insecure_variable_is_an_error_naming_both() {
        let fp = format_fingerprint(&[0xab; 32]);
        for var in ["PM_TLS_INSECURE", "PROXMOX_VE_INSECURE"] {
            let env =
                Settings::from_vars(vars(&[("PROXMOX_VE_API_TOKEN", "u@pve!t=x"), (var, "1")]))
                    .unwrap();
            // The topology pins (the lowest layer), by fingerprint or CA file.
            for (topology, named) in [
                (
                    Settings {
                        endpoint: Some("https://pve:8006".into()),
                        fingerprint: Some(fp.clone()),
                        ..Settings::default()
                    },
                    format!("the certificate fingerprint {fp}"),
                ),
                (
                    Settings {
                        endpoint: Some("https://pve:8006".into()),
                        ca_file: Some("/etc/hacli/pve-ca.pem".into()),
                        ..Settings::default()
                    },
                    "the CA file /etc/hacli/pve-ca.pem".to_string(),
                ),
            ] {
                let e = Settings::default()
                    .or(env.clone())
                    .or(topology.clone())
                    .build()
                    .unwrap_err();
                assert_eq!(
                    e,
                    ConfigError::PinWeakenedByEnvironment {
                        pin: named.clone(),
                        var: format!("{var}=1"),
                    }
                );
                let text = e.to_string();
                assert!(text.contains(&named) && text.contains(var), "{text}");
                // A pin given as a flag is not weakened either.
                let e = topology.clone().or(env.clone()).build().unwrap_err();
                assert!(e.to_string().contains(var), "{e}");
            }
        }
    }

    #[test]
    fn bad_token_does_not_echo_the_secret() {
        let e = Settings::from_vars(vars(&[("PROXMOX_VE_API_TOKEN", "nobang=topsecret")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PROXMOX_VE_API_TOKEN"), "{e}");
        assert!(!e.contains("topsecret"), "{e}");
        let e = Token::parse("no-equals-sign-secret", "X")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("no-equals-sign-secret"), "{e}");
    }

    #[test]
    fn layers_flags_over_env() {
        let env = Settings::from_vars(vars(&[
            ("PROXMOX_VE_ENDPOINT", "https://a:8006"),
            ("PROXMOX_VE_API_TOKEN", "u@pve!t=x"),
            ("PROXMOX_VE_INSECURE", "1"),
        ]))
        .unwrap();
        let flags = Settings {
            endpoint: Some("https://b:8006".into()),
            fingerprint: Some("ab".repeat(32)),
            ..Settings::default()
        };
        // The flags' pin beside the environment's PROXMOX_VE_INSECURE: refused.
        assert!(matches!(
            flags.clone().or(env.clone()).build(),
            Err(ConfigError::PinWeakenedByEnvironment { .. })
        ));
        let env = Settings {
            insecure_env: None,
            ..env
        };
        let c = flags.or(env).build().unwrap();
        assert_eq!(c.base, "https://b:8006/api2/json");
        assert_eq!(c.tls, TlsMode::Fingerprint([0xab; 32]));
    }

    #[test]
    fn endpoints_and_fingerprints() {
        assert!(normalize_endpoint("http://pve:8006").is_err());
        assert!(normalize_endpoint("https://pve:8006/other").is_err());
        assert!(TlsMode::fingerprint("AB:CD").is_err());
        let fp = format_fingerprint(&[0x0a; 32]);
        assert_eq!(
            TlsMode::fingerprint(&fp).unwrap(),
            TlsMode::Fingerprint([0x0a; 32])
        );
        assert_eq!(
            Settings::default().build().unwrap_err(),
            ConfigError::NoEndpoint
        );
    }
}
