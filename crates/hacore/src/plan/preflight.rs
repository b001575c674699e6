//! Preflight: the addresses to take are free, and the cluster can be
//! restored (an etcd snapshot, a VM snapshot of every master).

use super::{Ctx, Phase, gate, step};
use crate::action::Action;
use crate::backend::{CpOp, HvOp, Op};
use crate::units::Dur;

/// The preflight phase.
pub(super) fn phase(ctx: &Ctx<'_>) -> Phase {
    let mut steps = Vec::new();
    if !ctx.wanted.is_empty() {
        steps.push(step(
            "preflight/addresses-free",
            format!(
                "check that {} answer nowhere",
                ctx.wanted
                    .iter()
                    .map(|(_, a)| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::ControlPlane(CpOp::AddressesFree {
                addresses: ctx.wanted.iter().map(|(_, a)| *a).collect(),
            }),
            Dur::secs(10),
        ));
    }
    let first = &ctx.first;
    let mut s = step(
        "preflight/etcd-snapshot",
        format!("etcd snapshot on {first}"),
        Op::ControlPlane(CpOp::EtcdSnapshot {
            node: first.clone(),
        }),
        Dur::secs(60),
    );
    s.preconditions
        .push(gate("preflight", Action::Drain, first, &ctx.existing()));
    steps.push(s);
    for m in &ctx.masters_from {
        if let (Some(host), Some(vmid)) = (&m.hypervisor, m.vmid) {
            steps.push(step(
                &format!("preflight/vm-snapshot/{}", m.name),
                format!("VM snapshot of {} ({vmid} on {host})", m.name),
                Op::Hypervisor(HvOp::SnapshotVm {
                    host: host.clone(),
                    vmid,
                    name: "pre-ha-migration".into(),
                }),
                Dur::secs(120),
            ));
        }
    }
    Phase {
        id: "preflight".into(),
        title: "Preflight: the cluster is healthy and can be restored".into(),
        steps,
    }
}
