//! `hacli topology init`: a starting topology from flags, or from the
//! running cluster (`--from-cluster`, read-only), with `# FILL IN` comments
//! for what neither says. What it writes passes `hacli topology validate`.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::skeleton::{Host, LbChoice, Skeleton};

use crate::Exit;
use crate::args::live::parse_duration;

/// The load balancer in front of the masters.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Lb {
    /// None: the endpoint is a master's address.
    #[default]
    None,
    /// HAProxy on a Linux host.
    Haproxy,
    /// pfSense's HAProxy package.
    Pfsense,
}

/// Arguments of `hacli topology init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The cluster's name (with --from-cluster: kubeadm-config's clusterName).
    #[arg(long)]
    pub name: Option<String>,
    /// A master, NAME=ADDRESS; once per master (the first is the endpoint
    /// without --vip).
    #[arg(long = "master", value_name = "NAME=ADDRESS", value_parser = node_spec,
          required_unless_present = "from_cluster")]
    pub masters: Vec<(String, IpAddr)>,
    /// A worker, NAME=ADDRESS; once per worker.
    #[arg(long = "worker", value_name = "NAME=ADDRESS", value_parser = node_spec)]
    pub workers: Vec<(String, IpAddr)>,
    /// The VIP clients reach the apiservers on (needs --lb).
    #[arg(long)]
    pub vip: Option<IpAddr>,
    /// The apiserver port.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// The endpoint's DNS name.
    #[arg(long)]
    pub dns_name: Option<String>,
    /// The load balancer serving the VIP.
    #[arg(long, value_enum, default_value_t)]
    pub lb: Lb,
    /// The load balancer's host, reached over SSH to change it.
    #[arg(long, requires = "lb")]
    pub lb_host: Option<String>,
    /// The node network, e.g. 10.0.20.0/24.
    #[arg(long)]
    pub cidr: Option<String>,
    /// The network's gateway.
    #[arg(long, requires = "cidr")]
    pub gateway: Option<IpAddr>,
    /// The Proxmox host every node runs on (with its memory and CPUs).
    #[arg(long, requires_all = ["host_memory_gib", "host_cpus"])]
    pub proxmox_node: Option<String>,
    /// The Proxmox host's memory, GiB.
    #[arg(long, requires = "proxmox_node")]
    pub host_memory_gib: Option<u32>,
    /// The Proxmox host's CPU threads.
    #[arg(long, requires = "proxmox_node")]
    pub host_cpus: Option<u32>,
    /// Read the masters, workers, endpoint and etcd members from the
    /// cluster the kubeconfig reaches (read-only).
    #[arg(long, conflicts_with_all = ["masters", "workers"])]
    pub from_cluster: bool,
    /// kubeconfig for --from-cluster; by default KUBECONFIG, ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context for --from-cluster; its current one by default.
    #[arg(long)]
    pub context: Option<String>,
    /// How long each read of the cluster may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// Write the topology to FILE (stdout by default); an existing file is
    /// refused unless --force.
    #[arg(long, short = 'O', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long, requires = "out")]
    pub force: bool,
}

fn node_spec(s: &str) -> Result<(String, IpAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=ADDRESS, such as k8s-master=10.0.20.100"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("`{s}`: `{addr}` is not an IP address"))?;
    if !hacore::topology::is_dns_subdomain(name) {
        return Err(format!("`{s}`: `{name}` is not a valid node name"));
    }
    Ok((name.to_string(), addr))
}

fn flags(a: &InitArgs) -> Skeleton {
    Skeleton {
        cluster: a.name.clone().unwrap_or_default(),
        masters: a.masters.clone(),
        workers: a.workers.clone(),
        vip: a.vip,
        port: a.port,
        dns_name: a.dns_name.clone(),
        cidr: a.cidr.clone(),
        gateway: a.gateway,
        lb: match a.lb {
            Lb::None => LbChoice::None,
            Lb::Haproxy => LbChoice::Haproxy,
            Lb::Pfsense => LbChoice::Pfsense,
        },
        lb_host: a.lb_host.clone(),
        host: a.proxmox_node.clone().map(|name| Host {
            name,
            memory_gib: a.host_memory_gib.unwrap_or_default(),
            cpus: a.host_cpus.unwrap_or_default(),
        }),
        etcd_endpoints: Vec::new(),
        notes: Vec::new(),
    }
}

/// Run.
pub fn run(a: InitArgs) -> anyhow::Result<Exit> {
    if let Some(out) = a.out.as_ref().filter(|o| o.exists() && !a.force) {
        anyhow::bail!(
            "--out {}: the file exists; --force replaces it",
            out.display()
        );
    }
    let from = a.from_cluster.then(|| haops::init::FromCluster {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
        deadline: a.deadline,
    });
    let w = haops::init::init(flags(&a), from.as_ref())?;
    crate::print_warnings(&w.warnings);
    match &a.out {
        Some(out) => {
            let mut f =
                std::fs::File::create(out).with_context(|| format!("writing {}", out.display()))?;
            f.write_all(w.text.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "{}: written, {} item(s) marked FILL IN",
                out.display(),
                w.fill_in
            );
        }
        None => out!("{}", w.text),
    }
    Ok(Exit::Ok)
}
