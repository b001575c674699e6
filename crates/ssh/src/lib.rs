//! One SSH runner for every backend that runs commands on a host
//! (pfSense, kubeadm masters), on `russh`:
//!
//! - host keys checked against OpenSSH `known_hosts` (plain and hashed
//!   entries, `[host]:port`), strictly by default; `AcceptNew` records an
//!   unknown key and says so loudly; a changed key is refused with both
//!   SHA256 fingerprints and the file and line to fix;
//! - keys from files (ed25519, ECDSA, RSA with rsa-sha2-256/512; an
//!   encrypted key with its passphrase from an environment variable) and
//!   from ssh-agent;
//! - commands whose every argument is quoted for the remote shell by
//!   `shlex`, with stdin, an output cap, `sudo -n`, and a deadline after
//!   which the command's whole process group is killed;
//! - many commands at once over one kept connection.
//!
//! Errors name the host, the command with its secrets masked, and what to
//! do; no key, passphrase or masked value reaches an error or `Debug`.
//!
//! ```no_run
//! # async fn f() -> Result<(), ssh::SshError> {
//! use std::time::Duration;
//! use ssh::{Cmd, Config, Session};
//! let cfg = Config::new("fw1", "192.0.2.1", "admin").key("/home/me/.ssh/id_ed25519").sudo(true);
//! let s = Session::connect(&cfg).await?;
//! let out = s.run_checked(&Cmd::new("php").arg("-q").stdin(b"<?php echo 1;".to_vec()), Duration::from_secs(30)).await?;
//! println!("{}", out.stdout_str());
//! s.close().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// Errors are rare and carry what a person needs to act on (both
// fingerprints, the file and line, the fix); matching on them matters more
// than their size.
#![allow(clippy::result_large_err)]

mod cmd;
mod config;
mod error;
pub mod known_hosts;
mod session;

pub use cmd::{Cmd, DEFAULT_MAX_OUTPUT, MASK};
pub use config::{
    Auth, Config, HostKeyPolicy, SshConfigDefaults, Target, Warn, ssh_config_defaults,
    validate_host, validate_user,
};
pub use error::SshError;
pub use session::{ExitStatus, KILL_GRACE, Output, Session};
