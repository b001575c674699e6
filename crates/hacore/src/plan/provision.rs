//! Provisioning: a VM per new master, cloned from the template, sized and
//! addressed, then started; then checked before anything else touches it:
//! it has not joined the cluster by itself (a template whose cloud-init runs
//! `kubeadm join`), and its kubeadm, kubelet and containerd match the
//! existing master's. A failed check rolls the phase back: the VM is deleted.

use super::{Ctx, Phase, step};
use crate::backend::{CpOp, HvOp, Op};
use crate::topology::Node;
use crate::units::Dur;

/// One phase per new master.
pub(super) fn phases(ctx: &Ctx<'_>) -> Vec<Phase> {
    ctx.new_masters
        .iter()
        .filter_map(|n| provision(ctx, n))
        .collect()
}

/// Clone and start the VM of `n` (none without a host or VM id: refused
/// earlier).
fn provision(ctx: &Ctx<'_>, n: &Node) -> Option<Phase> {
    let (Some(host), Some(vmid)) = (n.hypervisor.clone(), n.vmid) else {
        return None;
    };
    let to = ctx.to;
    let template = ctx.opts.template.unwrap_or(0);
    let prefix = to
        .network
        .as_ref()
        .map(|net| net.cidr.prefix_len())
        .unwrap_or(24);
    let mut clone = step(
        &format!("provision/{}/clone", n.name),
        format!(
            "clone template {template} to VM {vmid} `{}` on {host}: {} vCPU, {} GiB, {} GiB disk, {}/{prefix}",
            n.name,
            n.cpus.unwrap_or(0),
            n.memory_gib.unwrap_or(0),
            n.disk_gib.unwrap_or(0),
            n.address
        ),
        Op::Hypervisor(HvOp::CloneVm {
            host: host.clone(),
            template,
            vmid,
            name: n.name.clone(),
            cpus: n.cpus.unwrap_or(0),
            memory_gib: n.memory_gib.unwrap_or(0),
            disk_gib: n.disk_gib.unwrap_or(0),
            address: format!("{}/{prefix}", n.address),
            gateway: to.network.as_ref().and_then(|net| net.gateway),
            ciuser: None,
            sshkeys: Vec::new(),
            nameservers: Vec::new(),
            storage: None,
        }),
        Dur::secs(180),
    );
    clone.rollback = Some(Op::Hypervisor(HvOp::DeleteVm {
        host: host.clone(),
        vmid,
        name: n.name.clone(),
    }));
    let start = step(
        &format!("provision/{}/start", n.name),
        format!("start VM {vmid} and wait until it runs"),
        Op::Hypervisor(HvOp::StartVm { host, vmid }),
        Dur::secs(120),
    );
    let mut not_joined = step(
        &format!("provision/{}/not-joined", n.name),
        format!(
            "{0} has not joined the cluster by itself: no Node `{0}`, no /etc/kubernetes/kubelet.conf on it",
            n.name
        ),
        Op::ControlPlane(CpOp::VerifyNotJoined {
            node: n.name.clone(),
        }),
        Dur::secs(10),
    );
    not_joined.notes.push(format!(
        "a template whose cloud-init runs kubeadm join is refused; the VM is deleted, `kubectl delete node {}` removes the Node it registered",
        n.name
    ));
    let versions = step(
        &format!("provision/{}/versions", n.name),
        format!(
            "kubeadm, kubelet and containerd on {} have the versions they have on {}",
            n.name, ctx.first
        ),
        Op::ControlPlane(CpOp::CheckVersions {
            node: n.name.clone(),
            like: ctx.first.clone(),
        }),
        Dur::secs(10),
    );
    Some(Phase {
        id: format!("provision/{}", n.name),
        title: format!("Provision VM for {}", n.name),
        steps: vec![clone, start, not_joined, versions],
        rollback: Some(format!(
            "VM {vmid} is stopped and deleted (a Node it registered by itself stays: `kubectl delete node {}`)",
            n.name
        )),
    })
}
