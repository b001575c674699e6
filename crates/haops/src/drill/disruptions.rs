//! The unplanned disruptions: a Proxmox hard stop of the node's VM, and
//! the apiserver killed over SSH.

use std::time::Duration;

use super::Disruption;

/// Power the VM off through Proxmox (a hard stop, as a crash), on again
/// at restore.
pub(super) struct PowerOff {
    pub(super) client: proxmox::Client,
    pub(super) hypervisor: String,
    pub(super) vmid: u32,
    pub(super) stopped: bool,
}

/// The deadline of one Proxmox task (stop, start).
const TASK_DEADLINE: Duration = Duration::from_secs(120);

impl Disruption for PowerOff {
    fn describe(&self) -> String {
        format!(
            "power off VM {} on {} (Proxmox hard stop)",
            self.vmid, self.hypervisor
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let until = tokio::time::Instant::now() + TASK_DEADLINE;
        let upid = self
            .client
            .stop(&self.hypervisor, self.vmid)
            .await
            .map_err(|e| e.to_string())?;
        self.stopped = true;
        self.client
            .wait_task(&upid, until)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
    async fn restore(&mut self) -> Result<(), String> {
        if !self.stopped {
            return Ok(());
        }
        let until = tokio::time::Instant::now() + TASK_DEADLINE;
        let upid = self
            .client
            .start(&self.hypervisor, self.vmid)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .wait_task(&upid, until)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Kill the apiserver process over SSH; kubelet restarts it.
pub(super) struct KillApiserver {
    pub(super) ssh: ssh::Config,
}

impl Disruption for KillApiserver {
    fn describe(&self) -> String {
        format!(
            "kill -9 kube-apiserver on {} over SSH (kubelet restarts it)",
            self.ssh.target.describe()
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let s = ssh::Session::connect(&self.ssh)
            .await
            .map_err(|e| e.to_string())?;
        let cmd = ssh::Cmd::new("pkill").args(["-KILL", "-x", "kube-apiserver"]);
        let out = s
            .run(&cmd, Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string());
        s.close().await;
        let out = out?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: `pkill -KILL -x kube-apiserver` found no process to kill (exit {:?}); is the apiserver running there? {}",
                self.ssh.target.describe(),
                out.status,
                out.stderr_str().trim()
            ))
        }
    }
    async fn restore(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn holds(&self) -> bool {
        false
    }
}
