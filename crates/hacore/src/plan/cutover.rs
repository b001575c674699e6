//! The cut-over: every client of the old server moves to the VIP: each
//! node's kubelet, the masters' admin.conf, kube-proxy, cluster-info, and the
//! external kubeconfigs a person updates.

use super::{Ctx, Phase, Step, gate, step};
use crate::action::Action;
use crate::backend::{CpOp, Op};
use crate::units::Dur;

/// The cut-over phase, when the server clients use changes.
pub(super) fn phase(ctx: &Ctx<'_>) -> Option<Phase> {
    let (old_server, new_server) = (&ctx.old_server, &ctx.new_server);
    if old_server == new_server {
        return None;
    }
    let mut steps = vec![vip_smoke_test(ctx)];
    steps.extend(kubeconfigs(ctx));
    let mut s = step(
        "cutover/kube-proxy",
        format!(
            "ConfigMap kube-system/kube-proxy kubeconfig.conf server {new_server}, restart kube-proxy pods"
        ),
        Op::ControlPlane(CpOp::SetKubeProxyServer {
            server: new_server.clone(),
        }),
        Dur::secs(60),
    );
    s.rollback = Some(Op::ControlPlane(CpOp::SetKubeProxyServer {
        server: old_server.clone(),
    }));
    steps.push(s);
    let mut s = step(
        "cutover/cluster-info",
        format!(
            "ConfigMap kube-public/cluster-info kubeconfig server {new_server} (join discovery)"
        ),
        Op::ControlPlane(CpOp::SetClusterInfoServer {
            server: new_server.clone(),
        }),
        Dur::secs(10),
    );
    s.rollback = Some(Op::ControlPlane(CpOp::SetClusterInfoServer {
        server: old_server.clone(),
    }));
    steps.push(s);
    for k in &ctx.to.external_kubeconfigs {
        let mut s = step(
            &format!("cutover/external/{}", k.name),
            format!(
                "update {} ({}) to server {new_server}, then confirm",
                k.name, k.location
            ),
            Op::ControlPlane(CpOp::ExternalKubeconfig {
                name: k.name.clone(),
                location: k.location.clone(),
                server: new_server.clone(),
            }),
            Dur::secs(300),
        );
        s.notes
            .push("manual: keep a kubeconfig pointing straight at one master as a fallback".into());
        steps.push(s);
    }
    Some(Phase {
        id: "cutover".into(),
        title: format!("Cut every client over to {new_server}"),
        steps,
        rollback: Some(format!(
            "every kubelet.conf, admin.conf, kube-proxy and cluster-info changed so far names {old_server} again; an external kubeconfig already updated is changed back by hand"
        )),
    })
}

/// Every existing node's kubelet.conf, then every existing master's
/// admin.conf.
fn kubeconfigs(ctx: &Ctx<'_>) -> Vec<Step> {
    let (old_server, new_server) = (&ctx.old_server, &ctx.new_server);
    let existing = ctx.existing_after_joins();
    let mut steps = Vec::new();
    for n in &ctx.from.nodes {
        let mut s = step(
            &format!("cutover/kubelet/{}", n.name),
            format!(
                "{}: kubelet.conf server {new_server}, restart kubelet",
                n.name
            ),
            Op::ControlPlane(CpOp::SetKubeletServer {
                node: n.name.clone(),
                server: new_server.clone(),
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::ControlPlane(CpOp::SetKubeletServer {
            node: n.name.clone(),
            server: old_server.clone(),
        }));
        s.preconditions
            .push(gate("preflight", Action::Drain, &n.name, &existing));
        s.notes
            .push("the node is NotReady for a few seconds; its pods keep running".into());
        steps.push(s);
    }
    for m in &ctx.masters_from {
        let mut s = step(
            &format!("cutover/admin-conf/{}", m.name),
            format!(
                "{}: admin.conf and super-admin.conf server {new_server}",
                m.name
            ),
            Op::ControlPlane(CpOp::SetAdminConf {
                node: m.name.clone(),
                server: new_server.clone(),
            }),
            Dur::secs(10),
        );
        s.rollback = Some(Op::ControlPlane(CpOp::SetAdminConf {
            node: m.name.clone(),
            server: old_server.clone(),
        }));
        steps.push(s);
    }
    steps
}

/// Before any client uses the VIP: `/readyz` through it answers, verified
/// with the cluster CA, by the API's DNS name and by its address (both must
/// be SANs of the certificate the load balancer's servers present).
fn vip_smoke_test(ctx: &Ctx<'_>) -> Step {
    let name = ctx.to.control_plane_endpoint.dns_name.clone();
    let shown = match &name {
        Some(n) => format!("{n} and {}", ctx.vip),
        None => ctx.vip.to_string(),
    };
    let mut s = step(
        "cutover/vip-smoke-test",
        format!(
            "GET /readyz through the VIP by {shown}, verified with the cluster CA, before any client is moved"
        ),
        Op::ControlPlane(CpOp::ProbeVip {
            name,
            address: ctx.vip,
            port: ctx.port,
        }),
        Dur::secs(5),
    );
    s.notes
        .push("a check: when it fails nothing has been cut over, and the run stops here".into());
    s
}
