//! The load balancer: the VIP and the API's DNS name first, then the pool
//! with the existing masters, the frontend on the VIP, and a check that the
//! pool reports them UP.

use std::net::SocketAddr;

use super::{Ctx, Phase, Step, api_socket, step};
use crate::backend::{LbOp, Op};
use crate::topology::LbKind;
use crate::units::Dur;

/// The load balancer phase, when the cluster has none yet.
pub(super) fn phase(ctx: &Ctx<'_>) -> Option<Phase> {
    if ctx.from.has_load_balancer() {
        return None;
    }
    let (to, pool, frontend) = (ctx.to, &ctx.pool, ctx.frontend);
    let hc = &to.load_balancer.health_check;
    let servers: Vec<(String, SocketAddr)> = ctx
        .masters_from
        .iter()
        .map(|m| (m.name.clone(), api_socket(m, ctx.port)))
        .collect();
    let names = servers
        .iter()
        .map(|s| s.0.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // The VIP and the API name come first: HAProxy cannot bind an
    // address the box does not have, while `haproxy -c` still passes.
    let mut steps = vip_and_name(ctx);
    let mut s = step(
        "load-balancer/pool",
        format!(
            "create pool {pool} with {names} and health check {:?} {} every {}",
            hc.kind,
            hc.path.as_deref().unwrap_or(""),
            hc.interval
        ),
        Op::LoadBalancer(LbOp::CreatePool {
            pool: pool.clone(),
            check: hc.kind,
            path: hc.path.clone(),
            interval: hc.interval,
            fall: hc.fall,
            rise: hc.rise,
            servers: servers.clone(),
        }),
        Dur::secs(30),
    );
    s.rollback = Some(Op::LoadBalancer(LbOp::DeletePool { pool: pool.clone() }));
    steps.push(s);
    let mut s = step(
        "load-balancer/frontend",
        format!("create TCP frontend {frontend} -> {pool}"),
        Op::LoadBalancer(LbOp::CreateFrontend {
            frontend,
            pool: pool.clone(),
        }),
        Dur::secs(30),
    );
    s.rollback = Some(Op::LoadBalancer(LbOp::DeleteFrontend { frontend }));
    steps.push(s);
    steps.push(step(
        "load-balancer/verify",
        format!("the pool reports {names} UP through the VIP"),
        Op::LoadBalancer(LbOp::VerifyServersUp {
            pool: pool.clone(),
            servers: servers.iter().map(|s| s.0.clone()).collect(),
        }),
        Dur::secs(30),
    ));
    Some(Phase {
        id: "load-balancer".into(),
        title: format!("Load balancer frontend {frontend} and pool {pool}"),
        steps,
    })
}

/// The VIP on the load balancer's interface, and the API's DNS record on a
/// pfSense resolver.
fn vip_and_name(ctx: &Ctx<'_>) -> Vec<Step> {
    let (to, vip) = (ctx.to, ctx.vip);
    let prefix = to
        .network
        .as_ref()
        .map_or(if vip.is_ipv4() { 32 } else { 128 }, |n| {
            n.cidr.prefix_len()
        });
    let interface = to
        .load_balancer
        .manage
        .as_ref()
        .map_or("lan", |m| m.vip_interface())
        .to_string();
    let mut s = step(
        "load-balancer/vip",
        format!("add the VIP {vip}/{prefix} to the load balancer's {interface} interface"),
        Op::LoadBalancer(LbOp::CreateVip {
            address: vip,
            prefix,
            interface,
            description: format!("{} Kubernetes API VIP (hacli)", to.cluster),
        }),
        Dur::secs(30),
    );
    s.rollback = Some(Op::LoadBalancer(LbOp::DeleteVip { address: vip }));
    let mut steps = vec![s];
    if let (Some(name), LbKind::PfsenseHaproxy) =
        (&to.control_plane_endpoint.dns_name, to.load_balancer.kind)
    {
        let mut s = step(
            "load-balancer/dns",
            format!("DNS record {name} -> {vip} in the load balancer's resolver"),
            Op::LoadBalancer(LbOp::CreateDnsRecord {
                name: name.clone(),
                address: vip,
            }),
            Dur::secs(30),
        );
        s.rollback = Some(Op::LoadBalancer(LbOp::DeleteDnsRecord {
            name: name.clone(),
        }));
        steps.push(s);
    }
    steps
}
