//! pfSense over SSH: `php` runs [`SCRIPT`] on stdin (no temporary files),
//! with the request as hex-encoded JSON in its first line, so no value
//! ever passes through a shell or a PHP literal unescaped.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::LbError;
use super::model::{Edit, LbConfig};

/// The PHP that reads and edits `config.xml` through pfSense's own
/// functions (`config.inc`, `write_config`, the HAProxy package's
/// `haproxy_check_and_run`, `interface_ipalias_configure`,
/// `services_unbound_configure`).
pub const SCRIPT: &str = include_str!("../php/lb.php");

/// Where the answer starts in the script's output.
const MARKER: &str = "@@hacli@@";

/// The most output a call may produce.
const MAX_OUTPUT: usize = 8 << 20;

/// pfSense's configuration over SSH and PHP.
pub struct PhpSsh {
    config: ssh::Config,
    session: OnceCell<ssh::Session>,
}

impl std::fmt::Debug for PhpSsh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhpSsh")
            .field("host", &self.config.target.name)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole program sent to `php` for one request.
pub fn program(request: &Value) -> String {
    format!(
        "<?php\n$hacli_request = json_decode(hex2bin('{}'), true);\n{SCRIPT}",
        hex(request.to_string().as_bytes())
    )
}

/// The request that carries `edit` out (its description becomes
/// `write_config`'s, prefixed with `hacli:`).
pub fn request(edit: &Edit) -> Value {
    let mut req = serde_json::to_value(edit).unwrap_or_default();
    req["description"] = json!(edit.describe());
    req
}

/// The JSON answer in a run's output: the last line after the marker.
pub fn answer(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER))
        .and_then(|j| serde_json::from_str(j).ok())
}

impl PhpSsh {
    /// A transport that connects on first use.
    pub fn new(config: ssh::Config) -> PhpSsh {
        PhpSsh {
            config,
            session: OnceCell::new(),
        }
    }

    /// The host, for messages.
    pub fn target_name(&self) -> &str {
        &self.config.target.name
    }

    async fn session(&self) -> Result<&ssh::Session, LbError> {
        self.session
            .get_or_try_init(|| ssh::Session::connect(&self.config))
            .await
            .map_err(LbError::ssh)
    }

    async fn call(&self, request: Value, until: Instant) -> Result<Value, LbError> {
        let op = request["op"].as_str().unwrap_or("?").to_string();
        let session = self.session().await?;
        let cmd = ssh::Cmd::new("php")
            .stdin(program(&request).into_bytes())
            .max_output(MAX_OUTPUT);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LbError::Timeout {
                what: format!("{}: php {op}", self.target_name()),
                deadline: Duration::ZERO,
            });
        }
        let out = session.run(&cmd, left).await.map_err(LbError::ssh)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match answer(&stdout) {
            Some(v) if v["ok"] == json!(true) => Ok(v),
            Some(v) => Err(LbError::from_code(
                format!("{} (pfSense over SSH, {op})", self.target_name()),
                v["code"].as_str().unwrap_or(""),
                v["error"].as_str().unwrap_or("failed"),
            )),
            None => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: String = stderr
                    .lines()
                    .chain(stdout.lines())
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                Err(LbError::Protocol {
                    what: format!("{} (pfSense over SSH, {op})", self.target_name()),
                    detail: format!(
                        "php exited with {:?} without an answer; is this pfSense with the HAProxy package? Output:\n{tail}",
                        out.status
                    ),
                })
            }
        }
    }

    /// The managed part of `config.xml`.
    pub async fn read(&self, until: Instant) -> Result<LbConfig, LbError> {
        let v = self
            .call(json!({"op": "read", "description": ""}), until)
            .await?;
        serde_json::from_value(v["config"].clone()).map_err(|e| LbError::Protocol {
            what: format!("{} (pfSense over SSH, read)", self.target_name()),
            detail: e.to_string(),
        })
    }

    /// Carry one edit out: validated by `haproxy -c` before `write_config`.
    /// Ok(false) when there was nothing to change.
    pub async fn edit(&self, edit: &Edit, until: Instant) -> Result<bool, LbError> {
        let v = self.call(request(edit), until).await?;
        Ok(v["changed"] != json!(false))
    }

    /// Apply what was written but not applied.
    pub async fn apply_pending(&self, until: Instant) -> Result<(), LbError> {
        self.call(
            json!({"op": "apply-haproxy", "description": "apply pending HAProxy changes"}),
            until,
        )
        .await
        .map(|_| ())
    }

    /// `show stat` from the local runtime socket `/tmp/haproxy.socket`.
    pub async fn stat(&self, until: Instant) -> Result<String, LbError> {
        let v = self
            .call(json!({"op": "stat", "description": ""}), until)
            .await?;
        Ok(v["stat"].as_str().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_travels_as_hex_and_the_answer_follows_the_marker() {
        let p = program(&json!({"op": "read", "x": "'; system('id'); '"}));
        let first = p.lines().nth(1).unwrap();
        assert!(first.starts_with("$hacli_request = json_decode(hex2bin('"));
        assert!(!first.contains("system"), "{first}");
        let out = "Warning: noise\n@@hacli@@{\"ok\":true,\"changed\":false}\n";
        assert_eq!(answer(out).unwrap()["changed"], json!(false));
        assert!(answer("no marker").is_none());
    }
}
