//! Where the Proxmox API is (`--proxmox`, `--proxmox-*`): the flags
//! `hypervisor show`, `plan`, `apply`, the master commands and `drill`
//! flatten.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use proxmox::{Client, InventoryView, Settings, Token};

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

impl ProxmoxArgs {
    /// These flags as the live operations' Proxmox reach settings (the
    /// environment and the topology fill the rest, as `haops::reach`
    /// documents).
    pub fn reach(&self) -> haops::reach::ProxmoxReach {
        haops::reach::ProxmoxReach {
            endpoint: self.endpoint.clone(),
            fingerprint: self.fingerprint.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            token_env: self.token_env.clone(),
        }
    }
}
