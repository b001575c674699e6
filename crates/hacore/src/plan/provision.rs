//! Provisioning: a VM per new master, cloned from the template, sized and
//! addressed, then started.

use super::{Ctx, Phase, step};
use crate::backend::{HvOp, Op};
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
    }));
    let start = step(
        &format!("provision/{}/start", n.name),
        format!("start VM {vmid} and wait until it runs"),
        Op::Hypervisor(HvOp::StartVm { host, vmid }),
        Dur::secs(120),
    );
    Some(Phase {
        id: format!("provision/{}", n.name),
        title: format!("Provision VM for {}", n.name),
        steps: vec![clone, start],
    })
}
