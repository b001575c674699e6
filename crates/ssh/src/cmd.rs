//! A command to run remotely: a program and its arguments, each quoted for
//! the remote POSIX shell by `shlex` (never pasted), optional stdin, an
//! output cap, `sudo -n`, and the values to mask wherever it is shown.

use std::fmt;

use crate::SshError;

/// The default cap on a command's output (stdout and stderr together).
pub const DEFAULT_MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// What `Cmd`'s `Display` and errors show instead of a secret.
pub const MASK: &str = "***";

/// A command: `Cmd::new("php").arg("-q").stdin(script)`.
///
/// Its `Display` and `Debug` show the quoted command line with every
/// [`secret`](Cmd::secret) replaced by `***`, and stdin only by its size.
#[derive(Clone)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    max_output: usize,
    secrets: Vec<String>,
    sudo: Option<bool>,
}

impl Cmd {
    /// A command running `program` (looked up in the remote PATH).
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            max_output: DEFAULT_MAX_OUTPUT,
            secrets: Vec::new(),
            sudo: None,
        }
    }

    /// `sh -c SCRIPT`: for pipelines and redirections. The script is one
    /// quoted argument; put values in it with [`Cmd::arg`] after the
    /// script (they arrive as `$1`, `$2`... with `$0` = `sh`), not by
    /// formatting them into the script.
    pub fn shell(script: impl Into<String>) -> Cmd {
        Cmd::new("sh").arg("-c").arg(script).arg("sh")
    }

    /// Add one argument (quoted for the remote shell as it is).
    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Send `bytes` on the command's stdin, then EOF (without it, stdin
    /// gets EOF at once).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Cap stdout and stderr together at `bytes`; past it the command is
    /// killed and [`SshError::OutputTooLarge`] returned.
    pub fn max_output(mut self, bytes: usize) -> Cmd {
        self.max_output = bytes;
        self
    }

    /// A value to mask as `***` wherever the command is shown (its
    /// arguments, errors, the stderr quoted in errors). It still reaches
    /// the remote command. Empty values are ignored.
    pub fn secret(mut self, value: impl Into<String>) -> Cmd {
        let v = value.into();
        if !v.is_empty() {
            self.secrets.push(v);
        }
        self
    }

    /// Run under `sudo -n --` (true), or not (false), whatever the
    /// session's [`Config::sudo`](crate::Config) says. Unset: the
    /// session decides (sudo when it is on and the user is not root).
    pub fn sudo(mut self, sudo: bool) -> Cmd {
        self.sudo = Some(sudo);
        self
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments (unmasked: what the remote command receives).
    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    /// The stdin bytes, if any.
    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    /// The output cap.
    pub fn get_max_output(&self) -> usize {
        self.max_output
    }

    /// The explicit sudo choice, if any.
    pub fn get_sudo(&self) -> Option<bool> {
        self.sudo
    }

    /// Whether the command runs under sudo for a session whose default is
    /// `session_sudo` (already false for root).
    pub(crate) fn uses_sudo(&self, session_sudo: bool) -> bool {
        self.sudo.unwrap_or(session_sudo)
    }

    /// The words sent, with the sudo prefix if `sudo`.
    fn words(&self, sudo: bool) -> Vec<&str> {
        let mut w: Vec<&str> = Vec::with_capacity(self.args.len() + 4);
        if sudo {
            w.extend(["sudo", "-n", "--"]);
        }
        w.push(&self.program);
        w.extend(self.args.iter().map(String::as_str));
        w
    }

    /// The command line for the remote shell: every word quoted by
    /// `shlex`. Fails on a NUL byte or an empty program.
    pub fn command_line(&self, sudo: bool) -> Result<String, SshError> {
        if self.program.is_empty() {
            return Err(SshError::InvalidArgument {
                what: "command".into(),
                value: self.to_string(),
                reason: "the program name is empty".into(),
            });
        }
        let mut out = String::new();
        for (i, w) in self.words(sudo).into_iter().enumerate() {
            let q = shlex::try_quote(w).map_err(|e| SshError::InvalidArgument {
                what: format!("argument {i} of `{self}`"),
                value: self.mask(w),
                reason: format!("{e} (a remote command cannot receive a NUL byte)"),
            })?;
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&q);
        }
        Ok(out)
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        // Longest first, so a secret containing another is masked whole.
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), MASK);
            }
        }
        s
    }

    /// The masked command line as shown to people, with the sudo prefix
    /// if `sudo`.
    pub fn display_with(&self, sudo: bool) -> String {
        let words: Vec<String> = self
            .words(sudo)
            .into_iter()
            .map(|w| {
                let m = self.mask(w);
                // Shown, not run: a NUL is printed escaped.
                match shlex::try_quote(&m) {
                    Ok(q) => q.into_owned(),
                    Err(_) => format!("{:?}", m),
                }
            })
            .collect();
        let mut s = words.join(" ");
        if let Some(stdin) = &self.stdin {
            s.push_str(&format!(" <stdin: {} bytes>", stdin.len()));
        }
        s
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_with(self.sudo.unwrap_or(false)))
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("command", &self.to_string())
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("max_output", &self.max_output)
            .field("secrets", &self.secrets.len())
            .field("sudo", &self.sudo)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_word_and_masks_secrets() {
        let c = Cmd::new("curl")
            .arg("-H")
            .arg("Authorization: Bearer s3cr3t")
            .arg("a b'c$d;e")
            .secret("s3cr3t");
        let line = c.command_line(false).unwrap();
        assert!(line.contains("s3cr3t"), "the remote command gets the value");
        let shown = c.to_string();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("Bearer ***"), "{shown}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(
            shlex::split(&line).unwrap(),
            vec!["curl", "-H", "Authorization: Bearer s3cr3t", "a b'c$d;e"]
        );
    }

    #[test]
    fn sudo_prefix_and_nul_refused() {
        let c = Cmd::new("systemctl").arg("restart").arg("kubelet");
        assert_eq!(
            c.command_line(true).unwrap(),
            "sudo -n -- systemctl restart kubelet"
        );
        assert_eq!(c.command_line(false).unwrap(), "systemctl restart kubelet");
        let bad = Cmd::new("echo").arg("a\0b");
        assert!(matches!(
            bad.command_line(false),
            Err(SshError::InvalidArgument { .. })
        ));
        assert!(matches!(
            Cmd::new("").command_line(false),
            Err(SshError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn stdin_shown_by_size_only() {
        let c = Cmd::new("php")
            .arg("-q")
            .stdin(b"<?php echo 'key';".to_vec());
        assert_eq!(c.to_string(), "php -q <stdin: 17 bytes>");
    }
}
