//! The runner's errors: each names the host (`name (user@address:port)`),
//! the command with its secrets masked, and what to do. None carries a key,
//! a passphrase or a masked value.

use std::path::PathBuf;
use std::time::Duration;

use crate::ExitStatus;

/// Why connecting or running a command failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection or the SSH handshake failed.
    #[error(
        "ssh {host}: cannot connect: {reason}; check that sshd runs there and that the address and port are right"
    )]
    Connect {
        /// The host, as `name (user@address:port)`.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The host presented a key that differs from the one recorded.
    #[error(
        "ssh {host}: REFUSED: the host key has CHANGED: {known_hosts_file}:{line} records {expected_fingerprint}, the host presented {got_fingerprint}. This may be an attack (someone in the middle) or a reinstalled host. {fix}",
        known_hosts_file = known_hosts_file.display()
    )]
    HostKeyMismatch {
        /// The host.
        host: String,
        /// The recorded key's SHA256 fingerprint.
        expected_fingerprint: String,
        /// The presented key's SHA256 fingerprint.
        got_fingerprint: String,
        /// The known_hosts file.
        known_hosts_file: PathBuf,
        /// The line (1-based) holding the recorded key.
        line: usize,
        /// What to do.
        fix: String,
    },
    /// The host's key is not in known_hosts and the policy is strict.
    #[error(
        "ssh {host}: REFUSED: unknown host key {fingerprint}: not in {known_hosts_file}. {hint}",
        known_hosts_file = known_hosts_file.display()
    )]
    HostKeyUnknown {
        /// The host.
        host: String,
        /// The presented key's SHA256 fingerprint.
        fingerprint: String,
        /// The known_hosts file searched.
        known_hosts_file: PathBuf,
        /// What to do.
        hint: String,
    },
    /// The host's key is marked `@revoked`.
    #[error(
        "ssh {host}: REFUSED: the host key {fingerprint} is marked @revoked at {known_hosts_file}:{line}",
        known_hosts_file = known_hosts_file.display()
    )]
    HostKeyRevoked {
        /// The host.
        host: String,
        /// The presented key's SHA256 fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts_file: PathBuf,
        /// The `@revoked` line.
        line: usize,
    },
    /// The known_hosts file could not be read or written.
    #[error("ssh {host}: known_hosts {file}: {reason}", file = file.display())]
    KnownHosts {
        /// The host.
        host: String,
        /// The file.
        file: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A private key file could not be used (missing, unreadable, wrong
    /// passphrase, unsupported type).
    #[error("ssh {host}: key {path}: {reason}", path = path.display())]
    Key {
        /// The host.
        host: String,
        /// The key file.
        path: PathBuf,
        /// What failed and what to do.
        reason: String,
    },
    /// The server accepted none of the keys tried.
    #[error("ssh {host}: authentication as {user} failed: tried {tried}. {hint}")]
    Auth {
        /// The host.
        host: String,
        /// The user.
        user: String,
        /// The keys tried (file names and agent key fingerprints).
        tried: String,
        /// What to do.
        hint: String,
    },
    /// A command did not end in time (it was killed, with its process
    /// group), or connecting took too long.
    #[error("ssh {host}: `{cmd}` did not finish within {timeout:?} ({what})")]
    Timeout {
        /// The host.
        host: String,
        /// The command, secrets masked (or `connect`).
        cmd: String,
        /// The deadline.
        timeout: Duration,
        /// What happened to the command.
        what: String,
    },
    /// A command wrote more than its output cap (it was killed).
    #[error(
        "ssh {host}: `{cmd}` wrote more than {limit} bytes of output (the cap); it was killed. Raise the cap with Cmd::max_output if that much is expected"
    )]
    OutputTooLarge {
        /// The host.
        host: String,
        /// The command, secrets masked.
        cmd: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// A command ended with a non-zero status or a signal.
    #[error("ssh {host}: `{cmd}` failed ({status}); stderr: {stderr_tail}")]
    Failed {
        /// The host.
        host: String,
        /// The command, secrets masked.
        cmd: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of its stderr, secrets masked.
        stderr_tail: String,
    },
    /// A value was refused before it reached a command line or a
    /// connection.
    #[error("ssh: invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// What the value is.
        what: String,
        /// The value (masked where secret).
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The connection or a channel failed while a command ran.
    #[error("ssh {host}: {context}: {reason}")]
    Io {
        /// The host.
        host: String,
        /// What was being done (with the masked command).
        context: String,
        /// What failed.
        reason: String,
    },
}
