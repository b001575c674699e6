//! `hapy.topology_init`: the CLI's `topology init`, through the same
//! function of the live operations layer (`haops::init::init`): a starting
//! topology from keywords, or read from the running cluster (read-only),
//! with `# FILL IN` where neither says.

use std::net::IpAddr;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use hacore::skeleton::{Host, LbChoice, Skeleton};

use crate::ConfigError;
use crate::ops::{py_err, seconds};
use crate::recovery::log;

/// `{name: address}` as the skeleton's nodes, in the dict's order; a bad
/// name or address is a `ConfigError` naming the keyword and the entry.
fn nodes(what: &str, d: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, IpAddr)>> {
    let Some(d) = d else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let name: String = k.extract()?;
        let addr: String = v.extract()?;
        if !hacore::topology::is_dns_subdomain(&name) {
            return Err(ConfigError::new_err(format!(
                "{what}[{name:?}]: `{name}` is not a valid node name"
            )));
        }
        let ip = addr.parse().map_err(|_| {
            ConfigError::new_err(format!("{what}[{name:?}]: `{addr}` is not an IP address"))
        })?;
        out.push((name, ip));
    }
    Ok(out)
}

fn lb_choice(lb: &str) -> PyResult<LbChoice> {
    match lb {
        "none" => Ok(LbChoice::None),
        "haproxy" => Ok(LbChoice::Haproxy),
        "pfsense" => Ok(LbChoice::Pfsense),
        other => Err(ConfigError::new_err(format!(
            "lb={other:?}: one of \"none\", \"haproxy\", \"pfsense\""
        ))),
    }
}

fn ip(what: &str, s: Option<String>) -> PyResult<Option<IpAddr>> {
    s.map(|s| {
        s.parse()
            .map_err(|_| ConfigError::new_err(format!("{what}={s:?}: not an IP address")))
    })
    .transpose()
}

/// A starting topology, as `hacli topology init` writes it: from
/// `masters` (`{name: address}`, the first is the endpoint without `vip`)
/// and `workers`, the `vip` and the load balancer serving it (`lb`:
/// "none", "haproxy" or "pfsense"; `lb_host`), the network (`cidr`,
/// `gateway`) and the Proxmox host (`proxmox_node`, `host_memory_gib`,
/// `host_cpus`). With `from_cluster=True` the masters, workers, endpoint
/// and etcd members are read from the cluster `kubeconfig` reaches (in
/// `context`), read-only, each read under `deadline` seconds; the
/// keywords given still take precedence. Returns the YAML text (validated;
/// what it cannot know is marked `# FILL IN`); the validation's warnings
/// go to the `hapy` logger. A VIP without `lb`, no master, or a bad entry
/// raises `ConfigError`; a cluster that cannot be read, `ObserveError`.
#[pyfunction]
#[pyo3(signature = (
    *, masters = None, workers = None, name = None, vip = None, port = 6443,
    dns_name = None, lb = "none", lb_host = None, cidr = None, gateway = None,
    proxmox_node = None, host_memory_gib = None, host_cpus = None,
    from_cluster = false, kubeconfig = None, context = None, deadline = 10.0
))]
#[allow(clippy::too_many_arguments)]
pub fn topology_init(
    py: Python<'_>,
    masters: Option<&Bound<'_, PyDict>>,
    workers: Option<&Bound<'_, PyDict>>,
    name: Option<String>,
    vip: Option<String>,
    port: u16,
    dns_name: Option<String>,
    lb: &str,
    lb_host: Option<String>,
    cidr: Option<String>,
    gateway: Option<String>,
    proxmox_node: Option<String>,
    host_memory_gib: Option<u32>,
    host_cpus: Option<u32>,
    from_cluster: bool,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    deadline: f64,
) -> PyResult<String> {
    if from_cluster && (masters.is_some() || workers.is_some()) {
        return Err(ConfigError::new_err(
            "from_cluster=True reads the masters and workers: masters= and workers= are not taken with it",
        ));
    }
    if proxmox_node.is_some() && (host_memory_gib.is_none() || host_cpus.is_none()) {
        return Err(ConfigError::new_err(
            "proxmox_node= needs host_memory_gib= and host_cpus= (the host's capacity)",
        ));
    }
    let flags = Skeleton {
        cluster: name.unwrap_or_default(),
        masters: nodes("masters", masters)?,
        workers: nodes("workers", workers)?,
        vip: ip("vip", vip)?,
        port,
        dns_name,
        cidr,
        gateway: ip("gateway", gateway)?,
        lb: lb_choice(lb)?,
        lb_host,
        host: proxmox_node.map(|name| Host {
            name,
            memory_gib: host_memory_gib.unwrap_or_default(),
            cpus: host_cpus.unwrap_or_default(),
        }),
        etcd_endpoints: Vec::new(),
        notes: Vec::new(),
    };
    let from = from_cluster
        .then(|| {
            Ok::<_, PyErr>(haops::init::FromCluster {
                kubeconfig,
                context,
                deadline: seconds("deadline", deadline)?,
            })
        })
        .transpose()?;
    let written = py.detach(|| haops::init::init(flags, from.as_ref()).map_err(py_err))?;
    log(
        py,
        written
            .warnings
            .iter()
            .map(|w| (true, w.to_string()))
            .collect(),
    )?;
    Ok(written.text)
}
