//! How to reach the Proxmox API (`--proxmox*`): the flags `plan`, `apply`,
//! `replace-master`, `remove-master`, `hypervisor show` and `drill`
//! flatten, as `haops::reach::ProxmoxReach`.

use std::path::PathBuf;

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
    /// These flags as the live operations' Proxmox reach.
    pub fn reach(&self) -> haops::reach::ProxmoxReach {
        haops::reach::ProxmoxReach {
            endpoint: self.endpoint.clone(),
            fingerprint: self.fingerprint.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            token_env: self.token_env.clone(),
        }
    }

    /// A client from the flags over the environment over the topology's
    /// `proxmox` section.
    pub fn client_for(
        &self,
        topology: Option<&hacore::Topology>,
    ) -> anyhow::Result<proxmox::Client> {
        Ok(self.as_reach().proxmox_client(topology)?.0)
    }

    /// A reach with these flags only.
    pub fn as_reach(&self) -> haops::Reach {
        haops::Reach {
            proxmox: self.reach(),
            ..haops::Reach::default()
        }
    }
}
