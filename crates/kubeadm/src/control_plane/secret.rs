//! The join material: the certificate key and the bootstrap token, kept in
//! memory only. Their `Debug` and `Display` show `***`; nothing here is
//! ever written to a journal, a log or an error.

use std::fmt;

/// What a secret shows instead of itself.
pub const REDACTED: &str = "***";

/// A secret string. `Debug`/`Display` redact; the value is reachable only
/// through [`Secret::expose`], which callers put in a configuration file
/// sent on a command's stdin (never in its arguments), marking it
/// [`ssh::Cmd::secret`] so that the command's errors mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: only for a configuration sent on stdin.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A certificate key from `kubeadm init phase upload-certs --upload-certs`
/// and when it was issued (the `kubeadm-certs` Secret expires 2 hours later).
#[derive(Clone, Debug)]
pub struct CertificateKey {
    /// The key (64 hex characters).
    pub key: Secret,
    /// When it was issued.
    pub issued: jiff::Timestamp,
}

/// kubeadm's line before the key (DOMAIN.md section 9).
const KEY_MARK: &str = "[upload-certs] Using certificate key:";

/// The certificate key in `upload-certs` output: the line after
/// `[upload-certs] Using certificate key:`, 64 hex characters. The error
/// never repeats the output.
pub fn parse_certificate_key(stdout: &str) -> Result<Secret, String> {
    let mut lines = stdout.lines();
    while let Some(l) = lines.next() {
        if l.trim() == KEY_MARK {
            let key = lines.next().unwrap_or("").trim();
            if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(Secret::new(key));
            }
            return Err(format!(
                "the line after `{KEY_MARK}` is not a 64-hex-character key ({} characters)",
                key.len()
            ));
        }
    }
    Err(format!(
        "no `{KEY_MARK}` line in kubeadm's output ({} lines)",
        stdout.lines().count()
    ))
}

/// The key `kubeadm certs certificate-key` printed: its one line of 64
/// hex characters. The error never repeats the output.
pub fn parse_generated_key(stdout: &str) -> Result<Secret, String> {
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [key] if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Secret::new(*key))
        }
        [key] => Err(format!(
            "`kubeadm certs certificate-key` printed a line of {} characters, not a 64-hex-character key",
            key.len()
        )),
        other => Err(format!(
            "`kubeadm certs certificate-key` printed {} lines, not one key",
            other.len()
        )),
    }
}

/// A YAML double-quoted scalar holding `s` (JSON's string syntax is
/// YAML's).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The kubeadm configuration API version to write: the one of the
/// cluster's stored ClusterConfiguration (kubeadm stores it in the newest
/// version it speaks), else `kubeadm.k8s.io/v1beta4`.
pub fn config_api_version(cluster: &serde_json::Value) -> String {
    cluster["apiVersion"]
        .as_str()
        .filter(|v| v.starts_with("kubeadm.k8s.io/"))
        .unwrap_or("kubeadm.k8s.io/v1beta4")
        .to_string()
}

/// Where a new control-plane node joins and as what (the non-secret part
/// of its JoinConfiguration).
#[derive(Clone, Debug)]
pub struct JoinTarget<'a> {
    /// The node's name (`nodeRegistration.name`).
    pub node: &'a str,
    /// Its apiserver's advertise address.
    pub address: std::net::IpAddr,
    /// Its apiserver's port.
    pub port: u16,
    /// `kubeadm.k8s.io/v1beta3` or `v1beta4`.
    pub api_version: &'a str,
}

/// The JoinConfiguration `kubeadm join --config FILE` reads for a
/// control-plane join: the bootstrap token and the certificate key in the
/// file, never on a command line. A secret itself: write it only to a
/// 0600 file (or stdin) and drop it.
pub fn join_configuration(jc: &JoinCommand, key: &Secret, t: &JoinTarget<'_>) -> String {
    format!(
        "apiVersion: {api}\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: {ep}\n    token: {token}\n    caCertHashes:\n    - {hash}\n  tlsBootstrapToken: {token}\ncontrolPlane:\n  certificateKey: {key}\n  localAPIEndpoint:\n    advertiseAddress: {addr}\n    bindPort: {port}\nnodeRegistration:\n  name: {node}\n",
        api = t.api_version,
        ep = quoted(&jc.endpoint),
        token = quoted(jc.token.expose()),
        hash = quoted(&jc.ca_cert_hash),
        key = quoted(key.expose()),
        addr = quoted(&t.address.to_string()),
        port = t.port,
        node = quoted(t.node),
    )
}

/// The configuration `kubeadm init phase upload-certs --upload-certs
/// --config FILE` reads: an InitConfiguration carrying `certificateKey`
/// (and naming the node and its address, so kubeadm detects nothing), then
/// the cluster's ClusterConfiguration (its `certificatesDir`, external
/// etcd). A secret itself, as [`join_configuration`].
pub fn upload_certs_configuration(
    cluster: &serde_json::Value,
    key: &Secret,
    t: &JoinTarget<'_>,
) -> Result<String, String> {
    let cc = serde_saphyr::to_string(cluster).map_err(|e| e.to_string())?;
    Ok(format!(
        "apiVersion: {api}\nkind: InitConfiguration\ncertificateKey: {key}\nlocalAPIEndpoint:\n  advertiseAddress: {addr}\n  bindPort: {port}\nnodeRegistration:\n  name: {node}\n---\n{cc}",
        api = t.api_version,
        key = quoted(key.expose()),
        addr = quoted(&t.address.to_string()),
        port = t.port,
        node = quoted(t.node),
    ))
}

/// What `kubeadm token create --print-join-command` prints, parsed.
#[derive(Clone, Debug)]
pub struct JoinCommand {
    /// `HOST:PORT` the join discovers the cluster through.
    pub endpoint: String,
    /// The bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: Secret,
    /// `sha256:<64 hex>` (public: the CA's key hash).
    pub ca_cert_hash: String,
}

impl JoinCommand {
    /// The token's id (the part before the dot: public, used to delete it).
    pub fn token_id(&self) -> &str {
        self.token.expose().split('.').next().unwrap_or("")
    }
}

fn is_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

/// Parse the join line. Errors say what is missing, never the line.
pub fn parse_join_command(stdout: &str) -> Result<JoinCommand, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("kubeadm join "))
        .ok_or_else(|| {
            format!(
                "no `kubeadm join` line in the output ({} lines)",
                stdout.lines().count()
            )
        })?;
    let words = shlex::split(line)
        .ok_or_else(|| "the `kubeadm join` line does not split into words".to_string())?;
    let endpoint = words
        .get(2)
        .filter(|w| !w.starts_with('-'))
        .cloned()
        .ok_or_else(|| "the `kubeadm join` line names no endpoint".to_string())?;
    let value = |flag: &str| {
        words
            .iter()
            .position(|w| w == flag)
            .and_then(|i| words.get(i + 1))
            .cloned()
    };
    let token = value("--token")
        .filter(|t| is_token(t))
        .ok_or_else(|| "the `kubeadm join` line has no well-formed --token".to_string())?;
    let hash = value("--discovery-token-ca-cert-hash")
        .filter(|h| {
            h.strip_prefix("sha256:")
                .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .ok_or_else(|| {
            "the `kubeadm join` line has no --discovery-token-ca-cert-hash sha256:<64 hex>"
                .to_string()
        })?;
    Ok(JoinCommand {
        endpoint,
        token: Secret::new(token),
        ca_cert_hash: hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "8f1c2b7a9e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b";

    #[test]
    fn key_is_read_from_the_line_after_the_mark_and_never_shown() {
        let out = format!(
            "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n{KEY_MARK}\n{KEY}\n"
        );
        let k = parse_certificate_key(&out).unwrap();
        assert_eq!(k.expose(), KEY);
        assert_eq!(format!("{k:?} {k}"), "*** ***");
        let e = parse_certificate_key(&format!("{KEY_MARK}\nnot-a-key {KEY}\n")).unwrap_err();
        assert!(!e.contains(KEY), "{e}");
        assert!(parse_certificate_key("nothing").is_err());
    }

    #[test]
    fn a_generated_key_is_one_line_of_64_hex_characters() {
        let k = parse_generated_key(&format!("{KEY}\n")).unwrap();
        assert_eq!(k.expose(), KEY);
        let e = parse_generated_key(&format!("W0101 warning\n{KEY}\n")).unwrap_err();
        assert!(e.contains("2 lines") && !e.contains(KEY), "{e}");
        let e = parse_generated_key(&format!("{KEY}00\n")).unwrap_err();
        assert!(e.contains("66 characters") && !e.contains(KEY), "{e}");
    }

    #[test]
    fn the_join_configuration_carries_token_key_and_node_as_kubeadm_reads_them() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let jc = parse_join_command(&format!(
            "kubeadm join 198.18.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash {hash}\n"
        ))
        .unwrap();
        let t = JoinTarget {
            node: "k8s-master-2",
            address: "198.18.0.12".parse().unwrap(),
            port: 6443,
            api_version: "kubeadm.k8s.io/v1beta4",
        };
        let text = join_configuration(&jc, &Secret::new(KEY), &t);
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v["kind"], "JoinConfiguration");
        assert_eq!(v["apiVersion"], "kubeadm.k8s.io/v1beta4");
        let bt = &v["discovery"]["bootstrapToken"];
        assert_eq!(bt["token"], "abcdef.0123456789abcdef");
        assert_eq!(bt["apiServerEndpoint"], "198.18.0.10:6443");
        assert_eq!(bt["caCertHashes"][0], hash.as_str());
        assert_eq!(v["controlPlane"]["certificateKey"], KEY);
        assert_eq!(
            v["controlPlane"]["localAPIEndpoint"]["advertiseAddress"],
            "198.18.0.12"
        );
        assert_eq!(v["controlPlane"]["localAPIEndpoint"]["bindPort"], 6443);
        assert_eq!(v["nodeRegistration"]["name"], "k8s-master-2");

        let cluster = serde_json::json!({"apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration", "certificatesDir": "/etc/kubernetes/pki"});
        assert_eq!(config_api_version(&cluster), "kubeadm.k8s.io/v1beta3");
        assert_eq!(
            config_api_version(&serde_json::json!({})),
            "kubeadm.k8s.io/v1beta4"
        );
        let text = upload_certs_configuration(&cluster, &Secret::new(KEY), &t).unwrap();
        let docs: Vec<serde_json::Value> = text
            .split("\n---\n")
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "InitConfiguration");
        assert_eq!(docs[0]["certificateKey"], KEY);
        assert_eq!(docs[1], cluster);
    }

    #[test]
    fn join_line_is_parsed_and_its_token_redacted() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let out = format!(
            "kubeadm join 198.18.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash {hash} --control-plane --certificate-key {KEY}\n"
        );
        let j = parse_join_command(&out).unwrap();
        assert_eq!(j.endpoint, "198.18.0.10:6443");
        assert_eq!(j.token.expose(), "abcdef.0123456789abcdef");
        assert_eq!(j.token_id(), "abcdef");
        assert_eq!(j.ca_cert_hash, hash);
        let shown = format!("{j:?}");
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains(KEY),
            "{shown}"
        );
        let bad = parse_join_command("kubeadm join 1.2.3.4:6443 --token SECRET.X\n").unwrap_err();
        assert!(!bad.contains("SECRET"), "{bad}");
    }
}
