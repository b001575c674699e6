//! The endpoint retrofit (DOMAIN.md section 3): a stable
//! `controlPlaneEndpoint` in kubeadm-config, and apiserver certificates that
//! carry the VIP's SANs, before anything points at the VIP.

use super::{Ctx, Outage, Phase, Step, gate, step};
use crate::action::Action;
use crate::backend::{CpOp, Op};
use crate::topology::Node;
use crate::units::Dur;

/// The retrofit phase, when the endpoint changes or there is no load
/// balancer yet.
pub(super) fn phase(ctx: &Ctx<'_>) -> Option<Phase> {
    let (from, to) = (ctx.from, ctx.to);
    if from.control_plane_endpoint.socket() == to.control_plane_endpoint.socket()
        && from.has_load_balancer()
    {
        return None;
    }
    let existing = ctx.existing();
    let mut s = step(
        "endpoint/cluster-configuration",
        format!(
            "set controlPlaneEndpoint {} and certSANs {} in kubeadm-config (kubeadm init phase upload-config)",
            to.control_plane_endpoint.socket(),
            ctx.sans.join(", ")
        ),
        Op::ControlPlane(CpOp::SetControlPlaneEndpoint {
            endpoint: to.control_plane_endpoint.socket().to_string(),
            sans: ctx.sans.clone(),
        }),
        Dur::secs(30),
    );
    s.rollback = Some(Op::ControlPlane(CpOp::RestoreClusterConfiguration));
    s.preconditions
        .push(gate("preflight", Action::Drain, &ctx.first, &existing));
    s.notes.push(
        "kubeadm join --control-plane refuses a cluster without a stable controlPlaneEndpoint"
            .into(),
    );
    let mut steps = vec![s];
    steps.extend(
        ctx.masters_from
            .iter()
            .map(|m| apiserver_cert(ctx, m, &existing)),
    );
    Some(Phase {
        id: "endpoint".into(),
        title: "Retrofit controlPlaneEndpoint and apiserver SANs".into(),
        steps,
    })
}

/// Renew one master's apiserver certificate with the SANs.
fn apiserver_cert(ctx: &Ctx<'_>, m: &Node, existing: &[String]) -> Step {
    let mut s = step(
        &format!("endpoint/apiserver-cert/{}", m.name),
        format!(
            "renew {}'s apiserver certificate with SANs {} (old pair kept for rollback), restart the apiserver",
            m.name,
            ctx.sans.join(", ")
        ),
        Op::ControlPlane(CpOp::RenewApiserverCert {
            node: m.name.clone(),
            sans: ctx.sans.clone(),
        }),
        Dur::secs(120),
    );
    s.rollback = Some(Op::ControlPlane(CpOp::RestoreApiserverCert {
        node: m.name.clone(),
    }));
    s.preconditions
        .push(gate("preflight", Action::Drain, &m.name, existing));
    s.outage = Some(if ctx.single {
        Outage {
            up_to: Dur::secs(60),
            what: format!(
                "the whole API: {} is the only apiserver; schedule this restart",
                m.name
            ),
        }
    } else {
        Outage {
            up_to: Dur::secs(0),
            what: format!(
                "none through the VIP; direct clients of {} for up to 60s",
                m.name
            ),
        }
    });
    s
}
