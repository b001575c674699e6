//! The endpoint retrofit (DOMAIN.md section 3): a stable
//! `controlPlaneEndpoint` in kubeadm-config, and apiserver certificates that
//! carry the VIP's SANs, before anything points at the VIP.
//!
//! The apiserver reloads its serving certificate from disk, so the new pair
//! is installed and the step waits until a TLS handshake presents the new
//! SANs: no outage. Only if that does not happen within
//! [`APISERVER_CERT_RELOAD_BOUND`] is the static pod restarted, and only
//! then is there an outage: the step declares it as conditional.

use super::{Ctx, Outage, Phase, Step, gate, step};
use crate::action::Action;
use crate::backend::{APISERVER_CERT_RELOAD_BOUND, CpOp, Op};
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
        rollback: Some(
            "each apiserver certificate renewed so far gets its previous pair back (reloaded from disk like the new one), then kubeadm-config gets its previous ClusterConfiguration back".into(),
        ),
    })
}

/// Renew one master's apiserver certificate with the SANs.
fn apiserver_cert(ctx: &Ctx<'_>, m: &Node, existing: &[String]) -> Step {
    let mut s = step(
        &format!("endpoint/apiserver-cert/{}", m.name),
        format!(
            "renew {}'s apiserver certificate with SANs {} (old pair kept for rollback), wait until the apiserver presents them (it reloads the pair from disk); restart it only if it has not within {}",
            m.name,
            ctx.sans.join(", "),
            APISERVER_CERT_RELOAD_BOUND
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
    let only_if = Some(format!(
        "the fallback restart is taken ({}'s apiserver has not presented the new SANs within {})",
        m.name, APISERVER_CERT_RELOAD_BOUND
    ));
    s.outage = Some(if ctx.single {
        Outage {
            up_to: Dur::secs(60),
            what: format!("the whole API: {} is the only apiserver", m.name),
            only_if,
        }
    } else {
        Outage {
            up_to: Dur::secs(0),
            what: format!(
                "none through the VIP; direct clients of {} for up to 60s",
                m.name
            ),
            only_if,
        }
    });
    s
}
