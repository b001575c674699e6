//! A starting topology (`hacli topology init`): written from what the
//! operator says or what the cluster shows, with `# FILL IN` comments for
//! what neither says (the hypervisors, the network, how hacli reaches the
//! load balancer). The text is validated as any topology file before it is
//! returned, so what is written always loads.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::error::Error;
use crate::topology::{Report, Topology};

/// The marker on every line the operator has to complete.
pub const FILL_IN: &str = "# FILL IN:";

/// Which load balancer serves the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbChoice {
    /// None: the endpoint is a master's address.
    #[default]
    None,
    /// HAProxy on a Linux host.
    Haproxy,
    /// pfSense's HAProxy package.
    Pfsense,
}

/// A Proxmox host every node runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The Proxmox node name.
    pub name: String,
    /// Its memory, GiB.
    pub memory_gib: u32,
    /// Its CPU threads.
    pub cpus: u32,
}

/// What a starting topology is written from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skeleton {
    /// The cluster's name.
    pub cluster: String,
    /// The masters: name and address.
    pub masters: Vec<(String, IpAddr)>,
    /// The workers: name and address.
    pub workers: Vec<(String, IpAddr)>,
    /// The VIP; None: the first master's address is the endpoint.
    pub vip: Option<IpAddr>,
    /// The apiserver port.
    pub port: u16,
    /// The endpoint's DNS name.
    pub dns_name: Option<String>,
    /// The node network, `10.0.20.0/24`.
    pub cidr: Option<String>,
    /// The network's gateway.
    pub gateway: Option<IpAddr>,
    /// The load balancer.
    pub lb: LbChoice,
    /// The load balancer's host (SSH), for `loadBalancer.manage`.
    pub lb_host: Option<String>,
    /// The Proxmox host the nodes run on.
    pub host: Option<Host>,
    /// etcd's client URLs as the cluster announces them.
    pub etcd_endpoints: Vec<String>,
    /// Where the facts came from, written as comments at the top.
    pub notes: Vec<String>,
}

/// A YAML scalar: plain when that reads back as the same string (no
/// number, boolean or null look-alike), quoted otherwise.
fn scalar(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let plain = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
        && !s.contains(": ")
        && s.parse::<f64>().is_err()
        && !lower.starts_with("0x")
        && !lower.starts_with("0o")
        && !matches!(
            lower.as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "inf" | "nan"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

impl Skeleton {
    /// The endpoint's address: the VIP, else the first master's.
    fn endpoint(&self) -> Option<IpAddr> {
        self.vip.or_else(|| self.masters.first().map(|m| m.1))
    }

    /// The topology text, validated: errors (a VIP that is a node's
    /// address, a duplicate name) are returned as a topology file's would
    /// be, naming the field.
    pub fn render(&self) -> Result<(String, Report), Error> {
        let text = self.text();
        let (_, report) = Topology::from_yaml("the new topology", &text)?;
        Ok((text, report))
    }

    fn text(&self) -> String {
        let mut t = String::new();
        t.push_str("# A starting topology written by `hacli topology init`. Complete the\n");
        t.push_str("# lines marked FILL IN, then check it: hacli topology validate FILE\n");
        for n in &self.notes {
            let _ = writeln!(t, "# {n}");
        }
        let _ = writeln!(t, "cluster: {}", scalar(&self.cluster));
        t.push_str("controlPlaneEndpoint:\n");
        match self.endpoint() {
            Some(a) => {
                let _ = writeln!(t, "  address: {a}");
            }
            None => t.push_str("  address: null   # FILL IN: no master was named\n"),
        }
        let _ = writeln!(t, "  port: {}", self.port);
        if let Some(d) = &self.dns_name {
            let _ = writeln!(t, "  dnsName: {}", scalar(d));
        }
        self.network(&mut t);
        t.push_str("etcd:\n  mode: stacked\n  learnerJoins: true\n");
        if !self.etcd_endpoints.is_empty() {
            let urls: Vec<String> = self.etcd_endpoints.iter().map(|u| scalar(u)).collect();
            let _ = writeln!(t, "  endpoints: [{}]", urls.join(", "));
        }
        self.load_balancer(&mut t);
        self.nodes(&mut t);
        t
    }

    fn network(&self, t: &mut String) {
        match &self.cidr {
            Some(c) => {
                let _ = writeln!(t, "network:\n  cidr: {}", scalar(c));
                if let Some(g) = self.gateway {
                    let _ = writeln!(t, "  gateway: {g}");
                }
            }
            None => {
                let _ = writeln!(
                    t,
                    "{FILL_IN} the node network, so that addresses (the VIP, new masters) are checked"
                );
                t.push_str("# network:\n#   cidr: 10.0.20.0/24\n#   gateway: 10.0.20.1\n");
            }
        }
    }

    fn load_balancer(&self, t: &mut String) {
        let kind = match self.lb {
            LbChoice::None => {
                t.push_str("loadBalancer:\n  kind: none\n");
                return;
            }
            LbChoice::Haproxy => "haproxy",
            LbChoice::Pfsense => "pfsense-haproxy",
        };
        let _ = writeln!(t, "loadBalancer:\n  kind: {kind}");
        if let Some(vip) = self.endpoint() {
            let _ = writeln!(
                t,
                "  frontend: {}",
                std::net::SocketAddr::new(vip, self.port)
            );
        }
        t.push_str("  pool: k8s-apiserver\n");
        t.push_str(
            "  healthCheck: { type: https, path: /readyz, interval: 2s, fall: 3, rise: 2 }\n",
        );
        let _ = writeln!(
            t,
            "  {FILL_IN} where HAProxy's runtime API answers, so that gates see the pool"
        );
        t.push_str("  # runtimeApi: tcp:ADDRESS:9999   # or unix:/run/haproxy/admin.sock\n");
        match &self.lb_host {
            Some(h) => {
                let _ = writeln!(t, "  manage:\n    transport: ssh\n    host: {}", scalar(h));
                if self.lb == LbChoice::Pfsense {
                    t.push_str(
                        "    vipInterface: lan   # the pfSense interface the VIP is an alias on\n",
                    );
                }
            }
            None => {
                let _ = writeln!(
                    t,
                    "  {FILL_IN} how hacli changes the load balancer (docs/load-balancer.md)"
                );
                t.push_str("  # manage: { transport: ssh, host: ADDRESS }\n");
            }
        }
    }

    fn nodes(&self, t: &mut String) {
        let host = match &self.host {
            Some(h) => {
                let _ = writeln!(
                    t,
                    "hypervisors:\n  - {{ name: {}, memoryGiB: {}, cpus: {} }}",
                    scalar(&h.name),
                    h.memory_gib,
                    h.cpus
                );
                format!(", hypervisor: {}", scalar(&h.name))
            }
            None => {
                let _ = writeln!(
                    t,
                    "{FILL_IN} the Proxmox hosts (each a failure domain), then each node's\n\
                     # `hypervisor`, `vmid`, `cpus`, `memoryGiB`, `diskGiB`\n\
                     # hypervisors:\n#   - {{ name: pve, memoryGiB: 256, cpus: 64 }}"
                );
                String::new()
            }
        };
        t.push_str("nodes:\n");
        let roles = [("control-plane", &self.masters), ("worker", &self.workers)];
        for (role, nodes) in roles {
            for (name, address) in nodes {
                let _ = writeln!(
                    t,
                    "  - {{ name: {}, role: {role}, address: {address}{host} }}",
                    scalar(name)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Skeleton {
        Skeleton {
            cluster: "lab".into(),
            masters: (1..=3)
                .map(|i| (format!("m{i}"), format!("198.18.0.{i}").parse().unwrap()))
                .collect(),
            port: 6443,
            ..Skeleton::default()
        }
    }

    #[test]
    fn three_masters_behind_a_vip_load_as_written() {
        let mut s = three();
        s.vip = Some("198.18.0.99".parse().unwrap());
        s.lb = LbChoice::Pfsense;
        s.cidr = Some("198.18.0.0/24".into());
        s.host = Some(Host {
            name: "pve".into(),
            memory_gib: 64,
            cpus: 16,
        });
        let (text, report) = s.render().expect("valid");
        let (t, _) = Topology::from_yaml("t", &text).unwrap();
        assert_eq!(t.control_plane_nodes().count(), 3);
        assert_eq!(
            t.load_balancer.frontend.unwrap().to_string(),
            "198.18.0.99:6443"
        );
        assert!(text.contains(FILL_IN), "{text}");
        // All three masters on one host is a warning, not an error.
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.to_string().contains("pve"))
        );
    }

    #[test]
    fn a_vip_that_is_a_masters_address_is_refused_naming_the_field() {
        let mut s = three();
        s.vip = Some("198.18.0.2".parse().unwrap());
        s.lb = LbChoice::Haproxy;
        let e = s.render().unwrap_err().to_string();
        assert!(
            e.contains("controlPlaneEndpoint.address") && e.contains("m2"),
            "{e}"
        );
    }

    #[test]
    fn odd_names_are_quoted_so_they_read_back() {
        let mut s = three();
        for name in ["yes", "1.5", "0x1F", "a: b", "10"] {
            s.cluster = name.into();
            let (text, _) = s.render().unwrap();
            let (t, _) = Topology::from_yaml("t", &text).unwrap();
            assert_eq!(t.cluster, name, "{text}");
        }
        assert_eq!(scalar("10.0.20.1"), "10.0.20.1");
    }
}
