//! A starting topology from the running cluster (`hacli topology init
//! --from-cluster`): what the Kubernetes API says (read-only, see
//! [`kubeadm::discover`]) made into a [`Skeleton`], the operator's flags
//! taking precedence, and what it does not say left to fill in.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hacore::skeleton::{LbChoice, Skeleton};
use kubeadm::discover::Discovered;

use crate::Error;
use crate::observe::runtime;

/// Read the cluster `kubeconfig` (else kube's inference) reaches, in its
/// `context` (else the current one), each request under `deadline`.
pub fn discover(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    deadline: Duration,
) -> Result<Discovered, Error> {
    runtime()?.block_on(async {
        let client = kubeadm::discover::client(kubeconfig, context).await?;
        Ok(kubeadm::discover::discover(&client, deadline).await?)
    })
}

/// `host:port` (`[v6]:port`), the port 6443 when absent.
fn host_port(endpoint: &str) -> (String, Option<u16>) {
    if let Ok(sa) = endpoint.parse::<std::net::SocketAddr>() {
        return (sa.ip().to_string(), Some(sa.port()));
    }
    match endpoint.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (endpoint.to_string(), None),
    }
}

/// What the cluster says, under what `flags` say (the cluster's name, the
/// VIP, the DNS name, the load balancer and its host, the network, the
/// Proxmox host). A VIP that no load balancer is named for is refused:
/// hacli cannot tell which kind serves it.
pub fn skeleton(d: &Discovered, flags: Skeleton) -> Result<Skeleton, Error> {
    let mut s = flags;
    if s.cluster.is_empty() {
        s.cluster = d
            .cluster_name
            .clone()
            .unwrap_or_else(|| "kubernetes".into());
    }
    s.masters = d.masters.clone();
    s.workers = d.workers.clone();
    s.etcd_endpoints = d.etcd_client_urls.clone();
    if let Some(v) = &d.kubernetes_version {
        s.notes
            .push(format!("kubeadm-config: kubernetesVersion {v}"));
    }
    for gap in &d.gaps {
        s.notes.push(format!("FILL IN: {gap}"));
    }
    if s.masters.is_empty() {
        return Err(Error::Setting {
            what: "--from-cluster".into(),
            why: "no Node with a control-plane role and an InternalIP: nothing to start from"
                .into(),
        });
    }
    let Some(endpoint) = &d.control_plane_endpoint else {
        s.notes.push(
            "FILL IN: kubeadm-config sets no controlPlaneEndpoint; the first master's address is written"
                .into(),
        );
        return Ok(s);
    };
    let (host, port) = host_port(endpoint);
    if let Some(p) = port {
        s.port = p;
    }
    s.notes
        .push(format!("kubeadm-config: controlPlaneEndpoint {endpoint}"));
    match host.parse::<IpAddr>() {
        Ok(ip) if s.masters.iter().any(|m| m.1 == ip) => {}
        Ok(ip) => {
            s.vip.get_or_insert(ip);
        }
        Err(_) => {
            s.dns_name.get_or_insert(host.clone());
            if s.vip.is_none() {
                s.notes.push(format!(
                    "FILL IN: `{host}` is a DNS name; the address written is the first master's (give --vip for a VIP)"
                ));
            }
        }
    }
    if s.vip.is_some() && s.lb == LbChoice::None {
        return Err(Error::Setting {
            what: "--lb".into(),
            why: format!(
                "the cluster's endpoint {endpoint} is a VIP (no master's address): say which load balancer serves it, --lb haproxy or --lb pfsense"
            ),
        });
    }
    Ok(s)
}

/// Where `hacli topology init --from-cluster` reads the cluster.
#[derive(Debug, Clone)]
pub struct FromCluster {
    /// kubeconfig (else kube's inference: KUBECONFIG, ~/.kube/config).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig's context (else its current one).
    pub context: Option<String>,
    /// How long each read may take.
    pub deadline: Duration,
}

/// A starting topology: its text (validated), the validation's warnings and
/// how many lines are marked `# FILL IN`.
#[derive(Debug, Clone)]
pub struct Written {
    /// The topology's YAML text.
    pub text: String,
    /// What the validation warned of.
    pub warnings: Vec<hacore::source::Diagnostic>,
    /// Lines marked for the operator to fill in.
    pub fill_in: usize,
}

/// `hacli topology init` and `hapy.topology_init`: `flags` alone, or what
/// the cluster says (read-only) under `flags`. A VIP without a load
/// balancer is refused; the text is validated before it is returned.
pub fn init(flags: Skeleton, from_cluster: Option<&FromCluster>) -> Result<Written, Error> {
    if let (Some(vip), LbChoice::None) = (flags.vip, flags.lb) {
        return Err(Error::Setting {
            what: format!("--vip {vip}"),
            why: "a VIP needs the load balancer that serves it, --lb haproxy or --lb pfsense"
                .into(),
        });
    }
    let mut s = flags;
    match from_cluster {
        Some(c) => {
            let d = discover(c.kubeconfig.as_deref(), c.context.as_deref(), c.deadline)?;
            s = skeleton(&d, s)?;
        }
        None if s.masters.is_empty() => {
            return Err(Error::Setting {
                what: "--master".into(),
                why: "at least one master, NAME=ADDRESS (or read them with --from-cluster)".into(),
            });
        }
        None if s.cluster.is_empty() => s.cluster = "kubernetes".into(),
        None => {}
    }
    let (text, report) = s.render()?;
    let fill_in = text
        .lines()
        .filter(|l| l.contains(hacore::skeleton::FILL_IN))
        .count();
    Ok(Written {
        text,
        warnings: report.warnings,
        fill_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(endpoint: Option<&str>) -> Discovered {
        Discovered {
            cluster_name: Some("lab".into()),
            control_plane_endpoint: endpoint.map(Into::into),
            kubernetes_version: Some("v1.33.1".into()),
            masters: vec![("m1".into(), "198.18.0.11".parse().unwrap())],
            workers: vec![("w1".into(), "198.18.0.21".parse().unwrap())],
            etcd_client_urls: vec!["https://198.18.0.11:2379".into()],
            gaps: vec![],
        }
    }

    fn flags() -> Skeleton {
        Skeleton {
            port: 6443,
            ..Skeleton::default()
        }
    }

    #[test]
    fn a_vip_endpoint_needs_the_load_balancer_named() {
        let e = skeleton(&cluster(Some("198.18.0.99:6443")), flags()).unwrap_err();
        assert!(e.to_string().contains("--lb haproxy"), "{e}");
        let mut f = flags();
        f.lb = LbChoice::Haproxy;
        let s = skeleton(&cluster(Some("198.18.0.99:6443")), f).unwrap();
        assert_eq!(s.vip, Some("198.18.0.99".parse().unwrap()));
        s.render().expect("a valid topology");
    }

    #[test]
    fn a_dns_endpoint_on_one_master_is_written_with_its_name() {
        let s = skeleton(&cluster(Some("k8s-api.lab:8443")), flags()).unwrap();
        assert_eq!((s.dns_name.as_deref(), s.port), (Some("k8s-api.lab"), 8443));
        let (text, _) = s.render().expect("a valid topology");
        assert!(
            text.contains("address: 198.18.0.11") && text.contains("FILL IN"),
            "{text}"
        );
    }
}
