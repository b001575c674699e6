//! `hacli hypervisor show`: the Proxmox cluster as it really is (per host,
//! committed against physical memory and CPUs, and the VMs on it); and the
//! Proxmox flags `hacli plan --proxmox` shares.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use proxmox::{Client, InventoryView, Settings, Token};

use crate::Exit;
use crate::args::runtime;

/// Where the Proxmox API is. Unset flags fall back to bpg's
/// `PROXMOX_VE_ENDPOINT`/`PROXMOX_VE_API_TOKEN`/`PROXMOX_VE_INSECURE` and
/// Telmate's `PM_API_URL`/`PM_API_TOKEN_ID`/`PM_API_TOKEN_SECRET`/`PM_TLS_INSECURE`.
#[derive(Debug, Default, clap::Args)]
pub struct ProxmoxArgs {
    /// Proxmox API endpoint, `https://HOST:8006`; plans read the cluster's inventory from it.
    #[arg(long = "proxmox", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Pin the server certificate's SHA-256 fingerprint (`pvenode cert info`).
    #[arg(long = "proxmox-fingerprint", env = "HACLI_PROXMOX_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// Trust this CA file (PEM) for the Proxmox API.
    #[arg(long = "proxmox-ca", env = "HACLI_PROXMOX_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do NOT verify the Proxmox certificate (a warning is printed).
    #[arg(long = "proxmox-insecure-skip-tls-verify")]
    pub insecure: bool,
    /// Name of the variable holding the API token (`user@realm!id=secret`).
    #[arg(long = "proxmox-token-env", value_name = "VAR")]
    pub token_env: Option<String>,
}

impl ProxmoxArgs {
    /// Whether a Proxmox endpoint is given (flag or environment).
    pub fn wanted(&self) -> bool {
        self.endpoint.is_some()
            || std::env::var_os("PROXMOX_VE_ENDPOINT").is_some()
            || std::env::var_os("PM_API_URL").is_some()
    }

    /// Whether a Proxmox endpoint is given (flag, environment or the
    /// topology's `proxmox`).
    pub fn wanted_for(&self, topology: Option<&hacore::Topology>) -> bool {
        self.wanted() || topology.is_some_and(|t| t.proxmox.is_some())
    }

    /// A client from the flags over the environment over the topology's
    /// `proxmox` section.
    pub fn client_for(&self, topology: Option<&hacore::Topology>) -> anyhow::Result<Client> {
        let mut flags = Settings {
            endpoint: self.endpoint.clone(),
            ca_file: self.ca_file.clone(),
            fingerprint: self.fingerprint.clone(),
            insecure: self.insecure,
            ..Settings::default()
        };
        if self.insecure {
            flags.warnings.push(
                "--proxmox-insecure-skip-tls-verify: the Proxmox certificate is NOT verified"
                    .into(),
            );
        }
        if let Some(var) = &self.token_env {
            let text = std::env::var(var)
                .with_context(|| format!("--proxmox-token-env {var}: the variable is not set"))?;
            flags.token = Some(Token::parse(&text, var)?);
        }
        let mut settings = flags.or(Settings::from_env()?);
        if let Some(p) = topology.and_then(|t| t.proxmox.as_ref()) {
            settings = settings.or(Settings {
                endpoint: Some(p.endpoint.clone()),
                ca_file: p.ca_file.clone(),
                fingerprint: p.fingerprint.clone(),
                ..Settings::default()
            });
        }
        let cfg = settings.build()?;
        Ok(Client::new(&cfg)?)
    }

    /// Read the cluster's inventory through `client` (from
    /// [`ProxmoxArgs::client_for`]: a configuration error is the caller's
    /// exit 2, an unreadable inventory its exit 3), under a 30 s deadline.
    pub fn inventory(client: &Client) -> anyhow::Result<InventoryView> {
        let rt = runtime()?;
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), InventoryView::read(client)).await
        })
        .map_err(|_| anyhow::anyhow!("{}: no inventory within 30 s", client.base()))?
        .map_err(anyhow::Error::from)
    }
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per host: committed memory and vCPUs (running and stopped VMs) against
    /// physical memory and CPUs, and its VMs. Exit 0, or 3 if unreadable.
    Show {
        #[command(flatten)]
        proxmox: ProxmoxArgs,
        /// A topology whose `proxmox` section names the API (flags and the
        /// environment override it).
        #[arg(long, short = 't')]
        topology: Option<PathBuf>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    match c {
        Command::Show {
            proxmox,
            topology,
            json,
        } => {
            let topology = match topology {
                Some(p) => {
                    let (t, report) = hacore::Topology::load(&p)?;
                    crate::print_warnings(&report.warnings);
                    Some(t)
                }
                None => None,
            };
            let client = proxmox.client_for(topology.as_ref())?;
            let inv = match ProxmoxArgs::inventory(&client) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("hacli hypervisor show: {e:#}");
                    return Ok(Exit::Unknown);
                }
            };
            if json {
                let hosts: Vec<serde_json::Value> = inv
                    .hosts
                    .iter()
                    .map(|h| {
                        let c = h.committed();
                        serde_json::json!({
                            "node": h.node, "status": h.status, "memoryBytes": h.memory, "cpus": h.cpus,
                            "runningMemoryBytes": c.running_memory, "stoppedMemoryBytes": c.stopped_memory,
                            "runningCpus": c.running_cpus, "stoppedCpus": c.stopped_cpus,
                            "vms": h.vms.iter().map(|v| serde_json::json!({
                                "vmid": v.vmid, "name": v.name, "status": v.status,
                                "memoryBytes": v.memory, "cpus": v.cpus, "template": v.template,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                crate::print_json(&serde_json::json!({ "hosts": hosts }))?;
            } else {
                out!("{}", inv.render());
                // Placement (issue 26): where the masters run, the HA rules.
                out!(
                    "{}",
                    super::placement::text(&client, &inv, topology.as_ref())
                );
            }
            Ok(Exit::Ok)
        }
    }
}
