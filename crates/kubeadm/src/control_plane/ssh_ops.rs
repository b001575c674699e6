//! The operations that run on a node over SSH: kubeadm, systemctl,
//! openssl, and file edits (the original kept once in [`BACKUP_DIR`], the
//! new content staged in a temporary file that no watcher reads, fsynced
//! and renamed over it: see `KubeadmControlPlane::write_remote`).
//!
//! The join secrets (the bootstrap token, the certificate key) reach
//! `kubeadm` only in a configuration file sent on the command's stdin and
//! written with mode 0600 (`KubeadmControlPlane::kubeadm_with_secret_config`),
//! never in its arguments: any local user reads those in `/proc`, and sudo
//! writes them to its log.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ssh::{Cmd, Output, Session};
use tokio::time::Instant;

use super::secret::{
    CertificateKey, JoinTarget, config_api_version, join_configuration, parse_generated_key,
    parse_join_command, upload_certs_configuration,
};
use super::{CpError, KEY_LIFETIME, KubeadmControlPlane};

/// kubelet's kubeconfig.
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// The admin kubeconfig.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// The break-glass admin kubeconfig (kubeadm 1.29+), when present.
pub const SUPER_ADMIN_CONF: &str = "/etc/kubernetes/super-admin.conf";
/// The apiserver's serving certificate.
pub const APISERVER_CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
/// Its key.
pub const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// Where originals are kept before hacli changes them (the first copy
/// only: a second change keeps the true original).
pub const BACKUP_DIR: &str = "/etc/kubernetes/hacli-backup";
/// The kubeadm configuration file hacli writes for `upload-config` and
/// `certs apiserver`.
pub const KUBEADM_CONFIG: &str = "/etc/kubernetes/hacli/kubeadm-config.yaml";
/// The apiserver static pod manifest.
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
/// The kubelet's static pod directory: it starts every file there whose
/// name does not begin with a dot, whatever its extension.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Where a new static pod manifest is staged before it is renamed into
/// [`MANIFESTS_DIR`]: kubeadm's own temporary directory (its upgrades
/// stage manifests there too), on the same file system.
pub const STAGING_DIR: &str = "/etc/kubernetes/tmp";

/// The directory a new version of `path` is staged in: [`STAGING_DIR`]
/// for a file of [`MANIFESTS_DIR`] (where any file is a static pod),
/// else `path`'s own directory (under a name beginning with a dot).
pub fn staging_dir(path: &str) -> String {
    let p = std::path::Path::new(path);
    let dir = p.parent().map(|d| d.to_string_lossy().into_owned());
    match dir.as_deref() {
        Some(d) if d.trim_end_matches('/') == MANIFESTS_DIR => STAGING_DIR.to_string(),
        Some("") | None => ".".to_string(),
        Some(d) => d.to_string(),
    }
}

/// The script of `KubeadmControlPlane::write_remote` (`$1` the file, `$2`
/// the staging directory, the content on stdin): a temporary file made
/// with mode 0600 by `mktemp` in the staging directory, given the
/// original's owner and mode (kubelet.conf, keys) before any content, the
/// content, an fsync, the rename, an fsync of the directory. A failure
/// removes the temporary file.
pub const WRITE_SCRIPT: &str = r#"set -e; f=$1; s=$2; d=$(dirname -- "$f"); mkdir -p -- "$d"; mkdir -p -m 700 -- "$s"
if [ "$(stat -c %d -- "$s")" != "$(stat -c %d -- "$d")" ]; then echo "$s and $d are on different file systems: a rename would not be atomic" >&2; exit 1; fi
t=$(mktemp -- "$s/.$(basename -- "$f").hacli.XXXXXX"); trap 'rm -f -- "$t"' EXIT; trap 'exit 129' HUP INT TERM
if [ -e "$f" ]; then chown --reference="$f" -- "$t"; chmod --reference="$f" -- "$t"; fi
cat > "$t"; sync -- "$t"; mv -f -- "$t" "$f"; sync -- "$d""#;

/// The script of `KubeadmControlPlane::kubeadm_with_secret_config`
/// (`kubeadm "$@" --config FILE`, FILE's content on stdin): FILE is made
/// with mode 0600 (umask 077, in a 0700 directory of its own) before the
/// content is written, and removed when the script ends, however it ends
/// short of SIGKILL; such a leftover of an earlier run older than the
/// certificate key's lifetime (2 h) is swept first.
pub const SECRET_CONFIG_SCRIPT: &str = r#"set -e; umask 077; r=${TMPDIR:-/tmp}
find "$r" -maxdepth 1 -type d -name 'hacli-secret.*' -mmin +120 -exec rm -rf -- {} + 2>/dev/null || :
d=$(mktemp -d -- "$r/hacli-secret.XXXXXX"); trap 'rm -rf -- "$d"' EXIT; trap 'exit 129' HUP INT TERM
cat > "$d/config.yaml"; kubeadm "$@" --config "$d/config.yaml""#;

/// Where the backup of `path` goes.
pub fn backup_path(path: &str) -> String {
    format!(
        "{BACKUP_DIR}/{}",
        path.trim_start_matches('/').replace('/', "_")
    )
}

/// Every `server:` value of a kubeconfig, in order.
pub fn kubeconfig_servers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("server:"))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

/// `text` with every `server:` value set to `server`, everything else
/// byte for byte as it was.
pub fn set_kubeconfig_servers(text: &str, server: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = &body[..body.len() - body.trim_start().len()];
        if body.trim_start().starts_with("server:") {
            out.push_str(indent);
            out.push_str("server: ");
            out.push_str(server);
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The SANs `openssl x509 -noout -ext subjectAltName` printed: `DNS:` and
/// `IP Address:` entries, IPs normalised.
pub fn parse_openssl_sans(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.contains("Subject Alternative Name"))
        .flat_map(|l| l.split(','))
        .filter_map(|e| {
            let e = e.trim();
            if let Some(d) = e.strip_prefix("DNS:") {
                Some(d.trim().to_ascii_lowercase())
            } else {
                e.strip_prefix("IP Address:").map(|ip| {
                    let ip = ip.trim();
                    ip.parse::<IpAddr>()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| ip.to_string())
                })
            }
        })
        .collect()
}

/// The SANs of `want` that `have` lacks (IPs compared as addresses, names
/// without case).
pub fn missing_sans(have: &[String], want: &[String]) -> Vec<String> {
    want.iter()
        .filter(|w| {
            let norm = w
                .parse::<IpAddr>()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| w.to_ascii_lowercase());
            !have.contains(&norm)
        })
        .cloned()
        .collect()
}

fn fingerprint_of(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.split_once("Fingerprint="))
        .map(|(_, f)| f.trim().to_ascii_uppercase())
        .filter(|f| !f.is_empty())
}

impl KubeadmControlPlane {
    /// The kept SSH connection to `node` (at its topology address).
    pub(crate) async fn session(&self, node: &str) -> Result<Session, CpError> {
        if let Some(s) = self.sessions.lock().ok().and_then(|m| m.get(node).cloned())
            && !s.is_closed()
        {
            return Ok(s);
        }
        let addr = self.node_address(node)?;
        let mut cfg = self.ssh_base.clone();
        cfg.target.name = node.to_string();
        cfg.target.host = addr.to_string();
        let s = Session::connect(&cfg).await.map_err(CpError::ssh)?;
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(node.to_string(), s.clone());
        }
        Ok(s)
    }

    /// Run `cmd` on `node`; its status is not checked.
    pub(crate) async fn run_raw(
        &self,
        node: &str,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<Output, CpError> {
        let s = self.session(node).await?;
        s.run(cmd, timeout).await.map_err(CpError::ssh)
    }

    /// Run `cmd` on `node`; a non-zero status is an error naming the node,
    /// the masked command and the end of its stderr.
    pub(crate) async fn run(
        &self,
        node: &str,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<Output, CpError> {
        let s = self.session(node).await?;
        s.run_checked(cmd, timeout).await.map_err(CpError::ssh)
    }

    /// A file's contents on `node`; None when it does not exist.
    pub async fn read_remote(&self, node: &str, path: &str) -> Result<Option<String>, CpError> {
        let cmd = Cmd::shell(r#"if [ -e "$1" ]; then exec cat -- "$1"; else exit 3; fi"#).arg(path);
        let s = self.session(node).await?;
        let out = s.run(&cmd, self.opts.timeout).await.map_err(CpError::ssh)?;
        if out.status == ssh::ExitStatus::Code(3) {
            return Ok(None);
        }
        let out = out.check(&cmd, s.target()).map_err(CpError::ssh)?;
        Ok(Some(out.stdout_str().into_owned()))
    }

    /// Whether a path exists on `node`.
    pub(crate) async fn exists_remote(&self, node: &str, path: &str) -> Result<bool, CpError> {
        let cmd = Cmd::shell(r#"[ -e "$1" ]"#).arg(path);
        let out = self.run_raw(node, &cmd, self.opts.timeout).await?;
        Ok(out.success())
    }

    /// Keep the original of `path` in [`BACKUP_DIR`] (only the first time).
    pub(crate) async fn backup_once(&self, node: &str, path: &str) -> Result<(), CpError> {
        let cmd = Cmd::shell(
            r#"set -e; mkdir -p -m 700 "$2"; if [ -e "$1" ] && [ ! -e "$3" ]; then cp -p -- "$1" "$3.tmp"; mv -f -- "$3.tmp" "$3"; fi"#,
        )
        .arg(path)
        .arg(BACKUP_DIR)
        .arg(backup_path(path));
        self.run(node, &cmd, self.opts.timeout).await.map(|_| ())
    }

    /// Write `content` to `path` on `node` as kubeadm writes a static pod
    /// manifest: staged in a temporary file outside any directory a
    /// watcher reads whole ([`staging_dir`]), with the original's owner
    /// and mode (else 0600) before any content, fsynced, then renamed over
    /// `path` ([`WRITE_SCRIPT`]).
    pub(crate) async fn write_remote(
        &self,
        node: &str,
        path: &str,
        content: &[u8],
    ) -> Result<(), CpError> {
        let cmd = Cmd::shell(WRITE_SCRIPT)
            .arg(path)
            .arg(staging_dir(path))
            .stdin(content.to_vec());
        self.run(node, &cmd, self.opts.timeout).await.map(|_| ())
    }

    /// `kubeadm ARGS --config FILE` on `node`, FILE holding `config`, which
    /// carries a secret: it travels on the command's stdin into a file made
    /// with mode 0600 and removed afterwards ([`SECRET_CONFIG_SCRIPT`]), so
    /// that it is in no command line (`/proc/PID/cmdline`, sudo's log).
    /// `secrets` are masked in errors.
    pub(crate) async fn kubeadm_with_secret_config(
        &self,
        node: &str,
        args: &[&str],
        config: String,
        secrets: &[&super::secret::Secret],
        timeout: Duration,
    ) -> Result<Output, CpError> {
        let mut cmd = Cmd::shell(SECRET_CONFIG_SCRIPT)
            .args(args.iter().copied())
            .stdin(config.into_bytes());
        for s in secrets {
            cmd = cmd.secret(s.expose());
        }
        self.run(node, &cmd, timeout).await
    }

    /// Whether every `server:` in the kubeconfig `path` on `node` is `server`.
    pub(crate) async fn kubeconfig_server_is(
        &self,
        node: &str,
        path: &str,
        server: &str,
    ) -> Result<bool, CpError> {
        let Some(text) = self.read_remote(node, path).await? else {
            return Ok(false);
        };
        let servers = kubeconfig_servers(&text);
        Ok(!servers.is_empty() && servers.iter().all(|s| s == server))
    }

    /// Point the kubeconfig `path` on `node` at `server` (backup first).
    /// Ok(false) when it already named it.
    async fn set_kubeconfig_server(
        &self,
        node: &str,
        path: &str,
        server: &str,
    ) -> Result<bool, CpError> {
        let Some(text) = self.read_remote(node, path).await? else {
            return Err(CpError::Refused(format!(
                "{node}: {path} does not exist: is {node} a kubeadm node?"
            )));
        };
        if kubeconfig_servers(&text).is_empty() {
            return Err(CpError::Protocol {
                what: format!("{node}: {path}"),
                detail: "no `server:` line: not a kubeconfig hacli can edit".into(),
            });
        }
        let new = set_kubeconfig_servers(&text, server);
        if new == text {
            return Ok(false);
        }
        self.backup_once(node, path).await?;
        self.write_remote(node, path, new.as_bytes()).await?;
        Ok(true)
    }

    pub(crate) async fn set_kubelet_server(&self, node: &str, server: &str) -> Result<(), CpError> {
        let changed = self
            .set_kubeconfig_server(node, KUBELET_CONF, server)
            .await?;
        let mut restarted = None;
        if changed || !self.node_ready(node).await.unwrap_or(false) {
            self.run(
                node,
                &Cmd::new("systemctl").arg("restart").arg("kubelet"),
                self.opts.timeout,
            )
            .await?;
            // After the restart returned: a heartbeat stamped later than this
            // (whole seconds) comes from the new kubelet, not the old one.
            restarted = Some(jiff::Timestamp::now());
        }
        // kubelet reports through the new server: the node is Ready again,
        // by a heartbeat sent after the restart (the Ready from before it
        // says nothing about the new server).
        let until = Instant::now() + self.opts.timeout.max(Duration::from_secs(60));
        loop {
            let ready = match restarted {
                Some(t) => self.node_ready_since(node, t).await,
                None => self.node_ready(node).await,
            };
            if ready.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(CpError::Timeout {
                    what: format!(
                        "{node}: Node Ready after kubelet restarted with server {server}"
                    ),
                    deadline: self.opts.timeout.max(Duration::from_secs(60)),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(crate) async fn admin_conf_is(&self, node: &str, server: &str) -> Result<bool, CpError> {
        if !self.kubeconfig_server_is(node, ADMIN_CONF, server).await? {
            return Ok(false);
        }
        if self.exists_remote(node, SUPER_ADMIN_CONF).await? {
            return self
                .kubeconfig_server_is(node, SUPER_ADMIN_CONF, server)
                .await;
        }
        Ok(true)
    }

    pub(crate) async fn set_admin_conf(&self, node: &str, server: &str) -> Result<(), CpError> {
        self.set_kubeconfig_server(node, ADMIN_CONF, server).await?;
        if self.exists_remote(node, SUPER_ADMIN_CONF).await? {
            self.set_kubeconfig_server(node, SUPER_ADMIN_CONF, server)
                .await?;
        }
        Ok(())
    }

    /// The SANs of a certificate file on `node` (None: no file).
    pub async fn file_sans(&self, node: &str, path: &str) -> Result<Option<Vec<String>>, CpError> {
        if !self.exists_remote(node, path).await? {
            return Ok(None);
        }
        let out = self
            .run(
                node,
                &Cmd::new("openssl")
                    .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
                    .arg(path),
                self.opts.timeout,
            )
            .await?;
        Ok(Some(parse_openssl_sans(&out.stdout_str())))
    }

    async fn file_fingerprint(&self, node: &str, path: &str) -> Result<Option<String>, CpError> {
        if !self.exists_remote(node, path).await? {
            return Ok(None);
        }
        let out = self
            .run(
                node,
                &Cmd::new("openssl")
                    .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                    .arg(path),
                self.opts.timeout,
            )
            .await?;
        Ok(fingerprint_of(&out.stdout_str()))
    }

    /// The SHA-256 fingerprint of the certificate `node`'s apiserver
    /// presents in a TLS handshake on its own address (None: no handshake).
    pub async fn served_fingerprint(&self, node: &str) -> Result<Option<String>, CpError> {
        let addr = SocketAddr::new(self.node_address(node)?, self.apiserver_port());
        let cmd = Cmd::shell(
            r#"openssl s_client -connect "$1" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"#,
        )
        .arg(addr.to_string());
        let out = self.run_raw(node, &cmd, self.opts.timeout).await?;
        Ok(if out.success() {
            fingerprint_of(&out.stdout_str())
        } else {
            None
        })
    }

    /// Whether the apiserver on `node` serves the certificate on disk.
    async fn serves_file_cert(&self, node: &str) -> Result<bool, CpError> {
        let file = self.file_fingerprint(node, APISERVER_CRT).await?;
        let served = self.served_fingerprint(node).await?;
        Ok(file.is_some() && file == served)
    }

    pub(crate) async fn cert_is_renewed(
        &self,
        node: &str,
        sans: &[String],
    ) -> Result<bool, CpError> {
        let Some(have) = self.file_sans(node, APISERVER_CRT).await? else {
            return Ok(false);
        };
        Ok(missing_sans(&have, sans).is_empty() && self.serves_file_cert(node).await?)
    }

    /// Wait until the apiserver on `node` serves the certificate on disk;
    /// after [`super::ControlPlaneOptions::cert_reload_bound`] restart its
    /// static pod (saying so) and wait again.
    async fn wait_served(&self, node: &str) -> Result<(), CpError> {
        let bound = self.opts.cert_reload_bound;
        let until = Instant::now() + bound;
        loop {
            if self.serves_file_cert(node).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.notice(&format!(
            "{node}: the apiserver did not serve its new certificate within {bound:?}: restarting its static pod (a short API outage on {node})"
        ));
        let restart = Cmd::shell(
            r#"if command -v crictl >/dev/null 2>&1 && ids=$(crictl ps -q --name kube-apiserver) && [ -n "$ids" ]; then crictl stop $ids; else m="$1"; t=/etc/kubernetes/kube-apiserver.yaml.hacli-restart; mv -f -- "$m" "$t" && sleep 20 && mv -f -- "$t" "$m"; fi"#,
        )
        .arg(APISERVER_MANIFEST);
        self.run(node, &restart, self.opts.timeout + Duration::from_secs(30))
            .await?;
        let wait = self.opts.join_timeout.min(Duration::from_secs(300));
        let until = Instant::now() + wait;
        loop {
            if self.serves_file_cert(node).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(CpError::Timeout {
                    what: format!(
                        "{node}: the apiserver serving {APISERVER_CRT} after its static pod restarted"
                    ),
                    deadline: wait,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub(crate) async fn renew_cert(&self, node: &str, sans: &[String]) -> Result<(), CpError> {
        let have = self.file_sans(node, APISERVER_CRT).await?;
        let needs_new = have
            .as_ref()
            .is_none_or(|h| !missing_sans(h, sans).is_empty());
        if needs_new {
            let (bcrt, bkey) = (backup_path(APISERVER_CRT), backup_path(APISERVER_KEY));
            let kept = self.exists_remote(node, &bcrt).await?;
            if have.is_some() && kept {
                return Err(CpError::Refused(format!(
                    "{node}: {APISERVER_CRT} lacks SANs {:?} but an earlier pair is already kept in {bcrt}: restore it (RestoreApiserverCert) or remove {bcrt} and {bkey} after checking which pair is the original",
                    missing_sans(have.as_deref().unwrap_or_default(), sans)
                )));
            }
            // Move the pair aside (kubeadm never overwrites one).
            if have.is_some() {
                let aside = Cmd::shell(
                    r#"set -e; mkdir -p -m 700 "$5"; mv -f -- "$1" "$3"; mv -f -- "$2" "$4""#,
                )
                .args([APISERVER_CRT, APISERVER_KEY, &bcrt, &bkey, BACKUP_DIR]);
                self.run(node, &aside, self.opts.timeout).await?;
            }
            let cfg = self.kubeadm_config_for(node, sans).await?;
            self.write_remote(node, KUBEADM_CONFIG, cfg.as_bytes())
                .await?;
            self.run(
                node,
                &Cmd::new("kubeadm")
                    .args(["init", "phase", "certs", "apiserver", "--config"])
                    .arg(KUBEADM_CONFIG),
                self.opts.timeout.max(Duration::from_secs(60)),
            )
            .await?;
            let got =
                self.file_sans(node, APISERVER_CRT)
                    .await?
                    .ok_or_else(|| CpError::Protocol {
                        what: format!("{node}: kubeadm init phase certs apiserver"),
                        detail: format!("{APISERVER_CRT} was not written"),
                    })?;
            let missing = missing_sans(&got, sans);
            if !missing.is_empty() {
                return Err(CpError::Protocol {
                    what: format!("{node}: {APISERVER_CRT}"),
                    detail: format!(
                        "the new certificate lacks SANs {missing:?} (openssl); the old pair is kept in {BACKUP_DIR}"
                    ),
                });
            }
        }
        self.wait_served(node).await
    }

    pub(crate) async fn cert_is_restored(&self, node: &str) -> Result<bool, CpError> {
        Ok(!self
            .exists_remote(node, &backup_path(APISERVER_CRT))
            .await?)
    }

    pub(crate) async fn restore_cert(&self, node: &str) -> Result<(), CpError> {
        let (bcrt, bkey) = (backup_path(APISERVER_CRT), backup_path(APISERVER_KEY));
        if !self.exists_remote(node, &bcrt).await? {
            return Ok(());
        }
        if !self.exists_remote(node, &bkey).await? {
            return Err(CpError::Refused(format!(
                "{node}: {bcrt} is kept but its key {bkey} is not: put the pair back by hand"
            )));
        }
        // Key first, then the certificate: each an atomic rename.
        let back = Cmd::shell(r#"set -e; mv -f -- "$4" "$2"; mv -f -- "$3" "$1""#).args([
            APISERVER_CRT,
            APISERVER_KEY,
            &bcrt,
            &bkey,
        ]);
        self.run(node, &back, self.opts.timeout).await?;
        self.wait_served(node).await
    }

    /// Every node's apiserver certificate carries every SAN.
    pub(crate) async fn sans_on_all(
        &self,
        nodes: &[String],
        sans: &[String],
    ) -> Result<bool, CpError> {
        for n in nodes {
            match self.file_sans(n, APISERVER_CRT).await? {
                Some(have) if missing_sans(&have, sans).is_empty() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    pub(crate) async fn kubeconfigs_name(
        &self,
        nodes: &[String],
        server: &str,
    ) -> Result<bool, CpError> {
        for n in nodes {
            if !self.kubeconfig_server_is(n, KUBELET_CONF, server).await? {
                return Ok(false);
            }
            let master = self.topology.node(n).is_some_and(|x| x.is_control_plane());
            if master && !self.admin_conf_is(n, server).await? {
                return Ok(false);
            }
        }
        Ok(self.kube_proxy_server_is(server).await? && self.cluster_info_server_is(server).await?)
    }

    /// A new certificate key from `kubeadm certs certificate-key` on the
    /// primary master, uploaded with `kubeadm init phase upload-certs
    /// --upload-certs --config FILE` (an InitConfiguration carrying it:
    /// never on a command line); the key is kept in memory only.
    pub(crate) async fn upload_certs(&self) -> Result<jiff::Timestamp, CpError> {
        let primary = self.primary().await?;
        let long = self.opts.timeout.max(Duration::from_secs(60));
        let out = self
            .run(
                &primary,
                &Cmd::new("kubeadm").args(["certs", "certificate-key"]),
                self.opts.timeout,
            )
            .await?;
        let key = parse_generated_key(&out.stdout_str()).map_err(|detail| CpError::Protocol {
            what: format!("{primary}: kubeadm certs certificate-key"),
            detail,
        })?;
        drop(out);
        let (_, cluster) = self.cluster_configuration().await?;
        let api_version = config_api_version(&cluster);
        let target = JoinTarget {
            node: &primary,
            address: self.node_address(&primary)?,
            port: self.apiserver_port(),
            api_version: &api_version,
        };
        let config = upload_certs_configuration(&cluster, &key, &target).map_err(|detail| {
            CpError::Protocol {
                what: format!("{primary}: the upload-certs configuration"),
                detail,
            }
        })?;
        self.kubeadm_with_secret_config(
            &primary,
            &[
                "init",
                "phase",
                "upload-certs",
                "--upload-certs",
                "--skip-certificate-key-print",
            ],
            config,
            &[&key],
            long,
        )
        .await?;
        let issued = jiff::Timestamp::now();
        if let Ok(mut k) = self.key.lock() {
            *k = Some(CertificateKey { key, issued });
        }
        Ok(issued)
    }

    fn current_key(&self) -> Option<CertificateKey> {
        let k = self.key.lock().ok()?.clone()?;
        let age = jiff::Timestamp::now().duration_since(k.issued);
        (age < jiff::SignedDuration::try_from(KEY_LIFETIME).unwrap_or_default()).then_some(k)
    }

    pub(crate) async fn key_is_fresh(&self) -> Result<bool, CpError> {
        if self.current_key().is_none() {
            return Ok(false);
        }
        self.kubeadm_certs_secret_exists().await
    }

    pub(crate) async fn join(&self, node: &str, address: IpAddr) -> Result<(), CpError> {
        if self.is_joined(node, address).await? {
            return Ok(());
        }
        let key = match self.current_key() {
            Some(k) if self.kubeadm_certs_secret_exists().await.unwrap_or(false) => k,
            _ => {
                self.notice(&format!(
                    "{node}: no certificate key in memory (a resumed run, or an expired one): uploading the certificates again"
                ));
                self.upload_certs().await?;
                self.current_key().ok_or_else(|| {
                    CpError::Refused("the certificate key just issued is not usable".into())
                })?
            }
        };
        let primary = self.primary().await?;
        // The token is printed (stdout only); the key never leaves memory
        // but in the join's configuration file.
        let out = self
            .run(
                &primary,
                &Cmd::new("kubeadm").args([
                    "token",
                    "create",
                    "--ttl",
                    "1h",
                    "--print-join-command",
                ]),
                self.opts.timeout,
            )
            .await?;
        let jc = parse_join_command(&out.stdout_str()).map_err(|detail| CpError::Protocol {
            what: format!("{primary}: kubeadm token create --print-join-command"),
            detail,
        })?;
        drop(out);
        let api_version = match self.cluster_configuration().await {
            Ok((_, cluster)) => config_api_version(&cluster),
            Err(e) => {
                self.delete_token(&primary, &jc).await;
                return Err(e);
            }
        };
        let config = join_configuration(
            &jc,
            &key.key,
            &JoinTarget {
                node,
                address,
                port: self.apiserver_port(),
                api_version: &api_version,
            },
        );
        let result = self
            .kubeadm_with_secret_config(
                node,
                &["join"],
                config,
                &[&jc.token, &key.key],
                self.opts.join_timeout,
            )
            .await;
        // The token has done its work either way.
        self.delete_token(&primary, &jc).await;
        result?;
        Ok(())
    }

    /// Delete the join's bootstrap token on `primary` (by its public id);
    /// a failure is said, not fatal: it expires within the hour.
    async fn delete_token(&self, primary: &str, jc: &super::secret::JoinCommand) {
        let del = Cmd::new("kubeadm")
            .args(["token", "delete"])
            .arg(jc.token_id());
        if let Err(e) = self.run(primary, &del, self.opts.timeout).await {
            self.notice(&format!(
                "{primary}: could not delete the join's bootstrap token (id {}): {e}; it expires within an hour",
                jc.token_id()
            ));
        }
    }

    pub(crate) async fn reset(&self, node: &str) -> Result<(), CpError> {
        if self.node_exists(node).await? {
            self.drain(node).await?;
        }
        match self.session(node).await {
            Ok(_) => {
                let has_files = self.exists_remote(node, KUBELET_CONF).await?
                    || self
                        .exists_remote(node, "/etc/kubernetes/manifests/etcd.yaml")
                        .await?;
                if has_files {
                    self.run(
                        node,
                        &Cmd::new("kubeadm").args(["reset", "-f"]),
                        self.opts.join_timeout,
                    )
                    .await?;
                }
            }
            Err(CpError::Ssh(e))
                if matches!(
                    *e,
                    ssh::SshError::Connect { .. } | ssh::SshError::Timeout { .. }
                ) =>
            {
                self.notice(&format!(
                    "{node}: not reachable over SSH ({e}): skipping `kubeadm reset -f`; removing its etcd member and Node"
                ));
            }
            Err(e) => return Err(e),
        }
        self.remove_member_of(node).await?;
        self.delete_node(node).await
    }

    pub(crate) async fn is_reset(&self, node: &str) -> Result<bool, CpError> {
        Ok(!self.node_exists(node).await? && self.member_of(node).await?.is_none())
    }

    /// Whether every one of `addresses` is free on its own network, asked
    /// of the topology's nodes over SSH (`crate::addresses`): Ok(true) when
    /// each was probed free; an address in use is a refusal naming it and
    /// what answered; one the probe cannot decide is an error naming it
    /// (unknown is never free).
    pub(crate) async fn addresses_free(&self, addresses: &[IpAddr]) -> Result<bool, CpError> {
        if addresses.is_empty() {
            return Ok(true);
        }
        let nodes = crate::addresses::node_ssh_configs(&self.topology, &self.opts);
        let verdicts =
            crate::addresses::probe(&nodes, addresses, crate::addresses::DEFAULT_WAIT).await;
        let mut in_use = Vec::new();
        let mut unknown = Vec::new();
        for (a, v) in &verdicts {
            match v {
                crate::addresses::AddressUse::Free { .. } => {}
                crate::addresses::AddressUse::InUse { .. } => in_use.push(format!("{a} is {v}")),
                crate::addresses::AddressUse::Unknown { .. } => unknown.push(format!("{a}: {v}")),
            }
        }
        if !in_use.is_empty() {
            return Err(CpError::Refused(format!(
                "addresses to take are not free: {}",
                in_use.join("; ")
            )));
        }
        if !unknown.is_empty() {
            return Err(CpError::Protocol {
                what: "whether the addresses to take are free".into(),
                detail: unknown.join("; "),
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAAA\n    server: https://10.0.0.11:6443\n  name: kubernetes\nusers: []\n";

    #[test]
    fn kubeconfig_server_lines_change_and_nothing_else() {
        assert_eq!(kubeconfig_servers(KC), ["https://10.0.0.11:6443"]);
        let new = set_kubeconfig_servers(KC, "https://10.0.0.10:6443");
        assert_eq!(new, KC.replace("10.0.0.11", "10.0.0.10"));
        assert_eq!(kubeconfig_servers(&new), ["https://10.0.0.10:6443"]);
        let crlf = KC.replace('\n', "\r\n");
        assert_eq!(
            set_kubeconfig_servers(&crlf, "https://x:1"),
            crlf.replace("https://10.0.0.11:6443", "https://x:1")
        );
    }

    #[test]
    fn staging_is_outside_the_manifests_directory() {
        assert_eq!(staging_dir(APISERVER_MANIFEST), STAGING_DIR);
        assert_eq!(
            staging_dir("/etc/kubernetes/manifests//etcd.yaml"),
            STAGING_DIR
        );
        assert_eq!(staging_dir(KUBELET_CONF), "/etc/kubernetes");
        assert_eq!(
            staging_dir("/etc/kubernetes/audit/policy.yaml"),
            "/etc/kubernetes/audit"
        );
        // The staging directory is no static pod directory, and the
        // temporary file is made there, given the owner and mode before
        // its content, fsynced, then renamed.
        assert!(!STAGING_DIR.starts_with(MANIFESTS_DIR));
        let order = [
            "mktemp -- \"$s/.",
            "chown --reference",
            "chmod --reference",
            "cat > \"$t\"",
            "sync -- \"$t\"",
            "mv -f -- \"$t\" \"$f\"",
            "sync -- \"$d\"",
        ]
        .map(|w| {
            WRITE_SCRIPT
                .find(w)
                .unwrap_or_else(|| panic!("{w} not in the script"))
        });
        assert!(order.is_sorted(), "{order:?}");
        let secret = [
            "umask 077",
            "mktemp -d",
            "trap 'rm -rf",
            "cat > \"$d/config.yaml\"",
            "kubeadm \"$@\" --config",
        ]
        .map(|w| SECRET_CONFIG_SCRIPT.find(w).unwrap());
        assert!(secret.is_sorted(), "{secret:?}");
    }

    #[test]
    fn openssl_sans_are_parsed_and_compared() {
        let out = "X509v3 Subject Alternative Name: \n    DNS:k8s-api.lab.lan, DNS:Kubernetes, IP Address:10.96.0.1, IP Address:FD00:0:0:0:0:0:0:1\n";
        let sans = parse_openssl_sans(out);
        assert_eq!(
            sans,
            ["k8s-api.lab.lan", "kubernetes", "10.96.0.1", "fd00::1"]
        );
        let want: Vec<String> = ["K8S-API.lab.lan", "fd00::1", "10.0.0.10"]
            .map(String::from)
            .to_vec();
        assert_eq!(missing_sans(&sans, &want), ["10.0.0.10"]);
        assert_eq!(
            backup_path(APISERVER_CRT),
            "/etc/kubernetes/hacli-backup/etc_kubernetes_pki_apiserver.crt"
        );
        assert_eq!(
            fingerprint_of("sha256 Fingerprint=ab:CD:01\n").as_deref(),
            Some("AB:CD:01")
        );
    }
}
