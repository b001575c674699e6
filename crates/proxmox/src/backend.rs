//! hacore's [`Hypervisor`] on the Proxmox API: each [`HvOp`] with a precise
//! `is_done`, so a resumed plan never doubles a step (never clones twice).

use std::net::IpAddr;
use std::time::Duration;

use hacore::backend::{BackendError, HvOp, Hypervisor};
use hacore::units::Dur;
use serde_json::{Map, Value};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::client::{Client, CloneParams, Params, VmStatus, encode_sshkeys};
use crate::error::Error;
use crate::mark::{Found, Owner, judge, tags_with_mark};

const GIB: u64 = 1024 * 1024 * 1024;

/// Disks a template boots from, in the order they are looked for.
const DISKS: &[&str] = &["scsi0", "virtio0", "sata0", "ide0"];

/// Called once a started VM runs: `(vm name, vmid)`; returns whether the
/// guest is reachable (e.g. its SSH answers on the cloud-init address).
pub type ReadyCheck = Box<dyn FnMut(&str, u32) -> Result<(), String> + Send>;

/// The Proxmox [`Hypervisor`] backend: a blocking face on the async
/// [`Client`], every operation under [`ProxmoxHypervisor::deadline`].
pub struct ProxmoxHypervisor {
    rt: Runtime,
    client: Client,
    /// Deadline of one operation (clone + configure, start, delete...).
    pub deadline: Duration,
    /// Which disk to resize; none: the template's first of scsi0, virtio0, sata0, ide0.
    pub disk: Option<String>,
    /// Checked after a start, until it passes or the deadline.
    pub ready_check: Option<ReadyCheck>,
    /// The run's cluster and journal: written into each clone's mark, and
    /// checked before any stop or delete ([`crate::mark`]).
    pub owner: Owner,
}

impl std::fmt::Debug for ProxmoxHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxHypervisor")
            .field("client", &self.client)
            .field("deadline", &self.deadline)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, e: Error) -> BackendError {
    match e {
        Error::Timeout { what: w, deadline } => BackendError::Timeout {
            what: format!("{what}: {w}"),
            deadline: Dur::secs(deadline.as_secs_f64().ceil() as i64),
        },
        other => BackendError::Failed {
            what: what.to_string(),
            message: other.to_string(),
        },
    }
}

/// A disk's `size=` in a VM config entry (`local-lvm:vm-100-disk-0,size=32G`), bytes.
pub fn disk_size(entry: &str) -> Option<u64> {
    let size = entry.split(',').find_map(|kv| kv.strip_prefix("size="))?;
    let (num, unit) = size.split_at(
        size.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(size.len()),
    );
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

/// The disk to resize in `config`: `preferred`, else the first of scsi0,
/// virtio0, sata0, ide0 that is not a CD-ROM or the cloud-init drive.
pub fn boot_disk(config: &Map<String, Value>, preferred: Option<&str>) -> Option<(String, u64)> {
    let candidates: Vec<&str> = match preferred {
        Some(d) => vec![d],
        None => DISKS.to_vec(),
    };
    candidates.into_iter().find_map(|d| {
        let e = config.get(d)?.as_str()?;
        if e.contains("media=cdrom") || e.contains("cloudinit") {
            return None;
        }
        Some((d.to_string(), disk_size(e)?))
    })
}

/// The `ipconfig0` value for an address with prefix and a gateway.
pub fn ipconfig(address: &str, gateway: Option<IpAddr>) -> String {
    match gateway {
        Some(gw) => format!("ip={address},gw={gw}"),
        None => format!("ip={address}"),
    }
}

impl ProxmoxHypervisor {
    /// A backend on `client`, with its own runtime. Operations default to a
    /// 10-minute deadline (a full clone of a large disk is slow).
    pub fn new(client: Client) -> Result<ProxmoxHypervisor, BackendError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::Failed {
                what: "proxmox backend".into(),
                message: format!("cannot start a runtime: {e}"),
            })?;
        Ok(ProxmoxHypervisor {
            rt,
            client,
            deadline: Duration::from_secs(600),
            disk: None,
            ready_check: None,
            owner: Owner::default(),
        })
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Status of a VM, `None` if it does not exist.
    async fn find(client: &Client, node: &str, vmid: u32) -> Result<Option<VmStatus>, Error> {
        match client.vm_status(node, vmid).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_missing_vm() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the clone is complete: the VM exists with the planned name,
    /// is not locked, and has the planned vCPUs, memory, address and at least
    /// the planned disk.
    async fn clone_done(
        client: &Client,
        owner: &Owner,
        disk: Option<&str>,
        op: &HvOp,
    ) -> Result<bool, Error> {
        let HvOp::CloneVm {
            host,
            vmid,
            name,
            cpus,
            memory_gib,
            disk_gib,
            address,
            gateway,
            ..
        } = op
        else {
            return Ok(false);
        };
        let Some(st) = Self::find(client, host, *vmid).await? else {
            return Ok(false);
        };
        if st.lock.is_some() || st.name.as_deref() != Some(name.as_str()) {
            return Ok(false);
        }
        let cfg = client.vm_config(host, *vmid).await?;
        // Done only once it carries the mark: a VM that is not ours is never
        // taken for our clone, and a cut clone gets its mark on resume.
        if judge(
            owner,
            &Found::from_config(*vmid, &st.status, &cfg),
            name,
            false,
        )
        .is_err()
        {
            return Ok(false);
        }
        let cores = cfg.get("cores").and_then(Value::as_u64).unwrap_or(1)
            * cfg.get("sockets").and_then(Value::as_u64).unwrap_or(1);
        let mem_mib = cfg
            .get("memory")
            .and_then(|m| {
                m.as_u64().or_else(|| {
                    m.as_str().and_then(|s| {
                        s.split(',')
                            .next()?
                            .trim_start_matches("current=")
                            .parse()
                            .ok()
                    })
                })
            })
            .unwrap_or(0);
        let ip_ok = cfg
            .get("ipconfig0")
            .and_then(Value::as_str)
            .is_some_and(|v| v == ipconfig(address, *gateway));
        let disk_ok = boot_disk(&cfg, disk).is_some_and(|(_, b)| b >= *disk_gib as u64 * GIB);
        Ok(cores == *cpus as u64 && mem_mib == *memory_gib as u64 * 1024 && ip_ok && disk_ok)
    }

    /// The clone's boot disk grown to `disk_gib` (never shrunk).
    async fn grow_disk(
        client: &Client,
        host: &str,
        vmid: u32,
        disk: Option<&str>,
        disk_gib: u64,
        deadline: Instant,
    ) -> Result<(), Error> {
        let cfg = client.vm_config(host, vmid).await?;
        let Some((d, bytes)) = boot_disk(&cfg, disk) else {
            return Err(Error::Decode {
                method: "GET".into(),
                endpoint: format!("/nodes/{host}/qemu/{vmid}/config"),
                detail: format!(
                    "no disk to resize ({}); set the backend's disk",
                    disk.map(str::to_string).unwrap_or_else(|| DISKS.join(", "))
                ),
            });
        };
        // Absolute sizes are idempotent; never ask to shrink (Proxmox refuses).
        if bytes < disk_gib * GIB {
            let size = format!("{disk_gib}G");
            let task = client
                .unlocked(host, vmid, deadline, || {
                    client.resize(host, vmid, &d, &size)
                })
                .await?;
            if let Some(t) = task {
                client.wait_task(&t, deadline).await?;
            }
        }
        Ok(())
    }

    async fn do_clone(
        client: &Client,
        owner: &Owner,
        disk: Option<&str>,
        op: &HvOp,
        deadline: Instant,
    ) -> Result<(), Error> {
        let HvOp::CloneVm {
            host,
            template,
            vmid,
            name,
            cpus,
            memory_gib,
            disk_gib,
            address,
            gateway,
            ciuser,
            sshkeys,
            nameservers,
            storage,
        } = op
        else {
            return Ok(());
        };
        // Resumed after the clone? Then the VM is there with our name and
        // our mark (or its clone was cut before the mark, by this journal's
        // run): never clone again. Any other VM there is left alone.
        match Self::find(client, host, *vmid).await? {
            Some(st) if st.name.as_deref() == Some(name.as_str()) => {
                let cfg = client.vm_config(host, *vmid).await?;
                judge(
                    owner,
                    &Found::from_config(*vmid, &st.status, &cfg),
                    name,
                    true,
                )
                .map_err(|m| Error::NotOurs(format!("{m}: not taking it for {name}")))?;
            }
            Some(st) => {
                return Err(Error::NotOurs(format!(
                    "VM {vmid} already exists as {} ({}), not {name}: not cloning over it; choose another vmid in the topology",
                    st.name.unwrap_or_else(|| "unnamed".into()),
                    st.status
                )));
            }
            None => {
                let upid = client
                    .clone_vm(
                        host,
                        *template,
                        &CloneParams {
                            newid: *vmid,
                            name: Some(name.clone()),
                            full: true,
                            target: None,
                            storage: storage.clone(),
                        },
                    )
                    .await?;
                client.wait_task(&upid, deadline).await?;
            }
        }
        client.wait_unlocked(host, *vmid, deadline).await?;

        // The mark goes in with the size and address, in one call.
        let template_tags =
            crate::client::split_tags(client.vm_config(host, *vmid).await?.get("tags"));
        let mut params: Params = vec![
            ("tags".into(), tags_with_mark(&template_tags)),
            ("description".into(), owner.description(name, *vmid)),
            ("cores".into(), cpus.to_string()),
            ("memory".into(), (*memory_gib as u64 * 1024).to_string()),
            ("ipconfig0".into(), ipconfig(address, *gateway)),
        ];
        if let Some(u) = ciuser {
            params.push(("ciuser".into(), u.clone()));
        }
        if !sshkeys.is_empty() {
            params.push(("sshkeys".into(), encode_sshkeys(sshkeys)));
        }
        if !nameservers.is_empty() {
            let ns: Vec<String> = nameservers.iter().map(|a| a.to_string()).collect();
            params.push(("nameserver".into(), ns.join(" ")));
        }
        client
            .unlocked(host, *vmid, deadline, || {
                client.put_config(host, *vmid, &params)
            })
            .await?;

        Self::grow_disk(client, host, *vmid, disk, *disk_gib as u64, deadline).await?;
        client
            .unlocked(host, *vmid, deadline, || {
                client.cloudinit_regenerate(host, *vmid)
            })
            .await
    }

    async fn do_start(
        client: &Client,
        host: &str,
        vmid: u32,
        deadline: Instant,
    ) -> Result<VmStatus, Error> {
        let st = client.wait_unlocked(host, vmid, deadline).await?;
        if st.status != "running" {
            let upid = client
                .unlocked(host, vmid, deadline, || client.start(host, vmid))
                .await?;
            client.wait_task(&upid, deadline).await?;
        }
        let st = client.vm_status(host, vmid).await?;
        if st.status != "running" {
            return Err(Error::Api {
                method: "GET".into(),
                endpoint: format!("/nodes/{host}/qemu/{vmid}/status/current"),
                status: 200,
                message: format!("VM {vmid} is {} after its start task ended", st.status),
                errors: Default::default(),
            });
        }
        Ok(st)
    }

    /// Whether VM `vmid` is ours and is `name`; `Err(NotOurs)` naming what
    /// it is otherwise.
    async fn check_ours(
        client: &Client,
        owner: &Owner,
        host: &str,
        vmid: u32,
        name: &str,
        status: &str,
    ) -> Result<(), Error> {
        let cfg = client.vm_config(host, vmid).await?;
        judge(owner, &Found::from_config(vmid, status, &cfg), name, true)
            .map_err(|m| Error::NotOurs(format!("{m}: not deleting it")))
    }

    async fn do_delete(
        client: &Client,
        owner: &Owner,
        host: &str,
        vmid: u32,
        name: &str,
        deadline: Instant,
    ) -> Result<(), Error> {
        let Some(st) = Self::find(client, host, vmid).await? else {
            return Ok(());
        };
        // Before anything: is it ours, and the VM the plan names?
        Self::check_ours(client, owner, host, vmid, name, &st.status).await?;
        let st = client.wait_unlocked(host, vmid, deadline).await?;
        if st.status == "running" {
            let upid = client
                .unlocked(host, vmid, deadline, || client.stop(host, vmid))
                .await?;
            client.wait_task(&upid, deadline).await?;
        }
        // The stop (or the lock) took time: look again before the delete.
        let st = client.wait_unlocked(host, vmid, deadline).await?;
        Self::check_ours(client, owner, host, vmid, name, &st.status).await?;
        let upid = client
            .unlocked(host, vmid, deadline, || client.delete_vm(host, vmid, true))
            .await?;
        client.wait_task(&upid, deadline).await?;
        Ok(())
    }
}

impl Hypervisor for ProxmoxHypervisor {
    fn is_done(&mut self, op: &HvOp) -> Result<bool, BackendError> {
        let what = format!("is_done {}", hacore::backend::Op::Hypervisor(op.clone()));
        let client = self.client.clone();
        let disk = self.disk.clone();
        let owner = self.owner.clone();
        let deadline = self.deadline;
        let fut = async move {
            match op {
                HvOp::SnapshotVm { host, vmid, name } => Ok(client
                    .snapshots(host, *vmid)
                    .await?
                    .iter()
                    .any(|s| s == name)),
                HvOp::CloneVm { .. } => {
                    Self::clone_done(&client, &owner, disk.as_deref(), op).await
                }
                HvOp::StartVm { host, vmid } => Ok(Self::find(&client, host, *vmid)
                    .await?
                    .is_some_and(|s| s.status == "running" && s.lock.is_none())),
                HvOp::DeleteVm { host, vmid, .. } => {
                    Ok(Self::find(&client, host, *vmid).await?.is_none())
                }
                HvOp::HaAntiAffinity { rule, vmids } => {
                    crate::ha::anti_affinity_done(&client, rule, vmids).await
                }
            }
        };
        self.rt
            .block_on(async { tokio::time::timeout(deadline, fut).await })
            .map_err(|_| BackendError::Timeout {
                what: what.clone(),
                deadline: Dur::secs(deadline.as_secs_f64().ceil() as i64),
            })?
            .map_err(|e| failed(&what, e))
    }

    fn apply(&mut self, op: &HvOp) -> Result<(), BackendError> {
        let what = hacore::backend::Op::Hypervisor(op.clone()).to_string();
        let client = self.client.clone();
        let disk = self.disk.clone();
        let owner = self.owner.clone();
        let deadline = Instant::now() + self.deadline;
        let result = self.rt.block_on(async {
            match op {
                HvOp::SnapshotVm { host, vmid, name } => {
                    let upid = client
                        .unlocked(host, *vmid, deadline, || client.snapshot(host, *vmid, name))
                        .await?;
                    client.wait_task(&upid, deadline).await.map(|_| ())
                }
                HvOp::CloneVm { .. } => {
                    Self::do_clone(&client, &owner, disk.as_deref(), op, deadline).await
                }
                HvOp::StartVm { host, vmid } => Self::do_start(&client, host, *vmid, deadline)
                    .await
                    .map(|_| ()),
                HvOp::DeleteVm { host, vmid, name } => {
                    Self::do_delete(&client, &owner, host, *vmid, name, deadline).await
                }
                HvOp::HaAntiAffinity { rule, vmids } => {
                    crate::ha::keep_apart(&client, rule, vmids, &owner.cluster).await
                }
            }
        });
        result.map_err(|e| failed(&what, e))?;
        if let (HvOp::StartVm { host, vmid }, Some(check)) = (op, self.ready_check.as_mut()) {
            let name = self
                .rt
                .block_on(client.vm_status(host, *vmid))
                .map_err(|e| failed(&what, e))?
                .name
                .unwrap_or_default();
            let mut last = String::new();
            while Instant::now() < deadline {
                match check(&name, *vmid) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            return Err(BackendError::Failed {
                what,
                message: format!("VM {vmid} runs but is not ready: {last}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_sizes_and_boot_disk() {
        assert_eq!(
            disk_size("local-lvm:vm-100-disk-0,size=32G"),
            Some(32 * GIB)
        );
        assert_eq!(
            disk_size("local:100/vm-100-disk-0.qcow2,size=512M,ssd=1"),
            Some(512 << 20)
        );
        assert_eq!(disk_size("local-lvm:vm-100-disk-0"), None);
        let cfg: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "ide2": "local-lvm:vm-100-cloudinit,media=cdrom",
            "scsi0": "local-lvm:vm-100-disk-0,size=10G",
        }))
        .unwrap();
        assert_eq!(boot_disk(&cfg, None), Some(("scsi0".into(), 10 * GIB)));
        assert_eq!(boot_disk(&cfg, Some("ide2")), None);
    }

    #[test]
    fn ipconfig_value() {
        assert_eq!(
            ipconfig("10.0.20.105/24", Some("10.0.20.1".parse().unwrap())),
            "ip=10.0.20.105/24,gw=10.0.20.1"
        );
        assert_eq!(ipconfig("10.0.20.105/24", None), "ip=10.0.20.105/24");
    }
}
