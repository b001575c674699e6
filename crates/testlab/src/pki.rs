//! Certificates generated at run time, laid out like kubeadm's
//! `/etc/kubernetes/pki` (`pki/ca.crt`, `pki/apiserver.{crt,key}`,
//! `pki/etcd/{ca.crt,ca.key,server.crt,server.key,peer.crt,peer.key,
//! healthcheck-client.crt,healthcheck-client.key}`).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::LabError;

/// A certificate and its key, PEM-encoded.
#[derive(Clone)]
pub struct Pair {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM.
    pub key: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").field("key", &"<redacted>").finish()
    }
}

pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) pem: Pair,
}

fn err(what: &str, e: rcgen::Error) -> LabError {
    LabError::Pki(format!("{what}: {e}"))
}

pub(crate) fn ca(cn: &str) -> Result<Ca, LabError> {
    let key = KeyPair::generate().map_err(|e| err(cn, e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(cn, e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| err(cn, e))?;
    let pem = Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    Ok(Ca {
        issuer: Issuer::new(params, key),
        pem,
    })
}

pub(crate) fn leaf(
    ca: &Ca,
    cn: &str,
    dns: &[&str],
    ips: &[IpAddr],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<Pair, LabError> {
    let key = KeyPair::generate().map_err(|e| err(cn, e))?;
    let names: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(|e| err(cn, e))?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &ca.issuer).map_err(|e| err(cn, e))?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Where the lab's certificates are.
#[derive(Debug, Clone)]
pub struct Pki {
    /// `.../pki`: `ca.crt`, `apiserver.crt`, `apiserver.key`.
    pub dir: PathBuf,
    /// `.../pki/etcd`, as on a kubeadm master.
    pub etcd_dir: PathBuf,
    /// The Kubernetes CA (PEM).
    pub kube_ca: String,
    /// The apiserver serving pair.
    pub apiserver: Pair,
}

impl Pki {
    /// Generate every certificate for an etcd cluster on `etcd_ips` and an
    /// apiserver answering on `api_ips`, and write them under `root/pki`.
    pub fn generate(root: &Path, etcd_ips: &[IpAddr], api_ips: &[IpAddr]) -> Result<Pki, LabError> {
        let server = [ExtendedKeyUsagePurpose::ServerAuth];
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let client = [ExtendedKeyUsagePurpose::ClientAuth];

        let dir = root.join("pki");
        let etcd_dir = dir.join("etcd");
        fs::create_dir_all(&etcd_dir).map_err(|e| LabError::io(&etcd_dir, e))?;

        let etcd_ca = ca("etcd-ca")?;
        let mut ips: Vec<IpAddr> = etcd_ips.to_vec();
        ips.push(IpAddr::from([127, 0, 0, 1]));
        let etcd_server = leaf(&etcd_ca, "etcd-server", &["localhost"], &ips, &both)?;
        let etcd_peer = leaf(&etcd_ca, "etcd-peer", &["localhost"], &ips, &both)?;
        let healthcheck = leaf(&etcd_ca, "kube-etcd-healthcheck-client", &[], &[], &client)?;
        let apiserver_etcd = leaf(&etcd_ca, "kube-apiserver-etcd-client", &[], &[], &client)?;

        let kube_ca = ca("kubernetes")?;
        let mut api = api_ips.to_vec();
        api.push(IpAddr::from([127, 0, 0, 1]));
        let apiserver = leaf(
            &kube_ca,
            "kube-apiserver",
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "localhost",
            ],
            &api,
            &server,
        )?;

        let write = |path: PathBuf, text: &str| -> Result<(), LabError> {
            fs::write(&path, text).map_err(|e| LabError::io(&path, e))
        };
        write(etcd_dir.join("ca.crt"), &etcd_ca.pem.cert)?;
        write(etcd_dir.join("ca.key"), &etcd_ca.pem.key)?;
        for (name, p) in [
            ("server", &etcd_server),
            ("peer", &etcd_peer),
            ("healthcheck-client", &healthcheck),
        ] {
            write(etcd_dir.join(format!("{name}.crt")), &p.cert)?;
            write(etcd_dir.join(format!("{name}.key")), &p.key)?;
        }
        write(dir.join("apiserver-etcd-client.crt"), &apiserver_etcd.cert)?;
        write(dir.join("apiserver-etcd-client.key"), &apiserver_etcd.key)?;
        write(dir.join("ca.crt"), &kube_ca.pem.cert)?;
        write(dir.join("ca.key"), &kube_ca.pem.key)?;
        write(dir.join("apiserver.crt"), &apiserver.cert)?;
        write(dir.join("apiserver.key"), &apiserver.key)?;
        Ok(Pki {
            dir,
            etcd_dir,
            kube_ca: kube_ca.pem.cert,
            apiserver,
        })
    }
}

/// A certificate authority kept in memory, to issue serving certificates
/// for the lab's stand-ins (the pfSense stand-in's pfrest API, ...).
pub struct Authority {
    ca: Ca,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Result<Authority, LabError> {
        Ok(Authority { ca: ca(cn)? })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.ca.pem.cert
    }

    /// A server certificate for `dns` names and `ips`, signed by this CA.
    pub fn issue_server(&self, cn: &str, dns: &[&str], ips: &[IpAddr]) -> Result<Pair, LabError> {
        leaf(
            &self.ca,
            cn,
            dns,
            ips,
            &[ExtendedKeyUsagePurpose::ServerAuth],
        )
    }
}

/// A TLS acceptor serving `pair` (PEM) with rustls and ring, offering
/// `alpn` (e.g. `h2`, `http/1.1`); `what` names the pair in errors.
pub fn acceptor(
    pair: &Pair,
    alpn: &[&[u8]],
    what: &str,
) -> Result<tokio_rustls::TlsAcceptor, LabError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LabError::Pki(format!("{what} certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes())
        .map_err(|e| LabError::Pki(format!("{what} key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LabError::Pki(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| LabError::Pki(format!("{what} pair: {e}")))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg)))
}
