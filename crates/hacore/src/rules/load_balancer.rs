//! The load balancer keeps at least one other healthy backend, and the
//! target's backend is drained first. Without a load balancer, refuse to take
//! down the one master clients talk to.

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, deny, pass, unknown, warn};
use crate::state::{BackendStatus, LbBackend, Probe};
use crate::topology::Node;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "load-balancer";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Other backends that must be UP while the targets are down.
    #[serde(default = "one")]
    pub min_other_backends: usize,
}

fn one() -> usize {
    1
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_other_backends: 1,
        }
    }
}

fn backend_node<'a>(ctx: &Context<'a>, b: &LbBackend) -> Option<&'a Node> {
    ctx.topology
        .nodes
        .iter()
        .find(|n| n.name == b.server || b.address.is_some_and(|a| a.ip() == n.address))
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if !ctx.action.stops_control_plane() || !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} of {} takes no apiserver backend away",
                ctx.action,
                ctx.target_names()
            ),
        ));
        return;
    }
    let endpoint = ctx.topology.control_plane_endpoint.address;
    if !ctx.topology.has_load_balancer() {
        if let Some(n) = ctx.targets.iter().find(|n| n.address == endpoint) {
            out.push(
                deny(
                    ID,
                    format!("clients reach the API only through {} ({endpoint}, no load balancer): it would be down for the whole {}", n.name, ctx.action),
                )
                .fix("put the masters behind a load balancer VIP first (hacli plan)"),
            );
        } else {
            out.push(pass(
                ID,
                format!("no load balancer; the endpoint {endpoint} is not a target"),
            ));
        }
        return;
    }
    let lb = match ctx
        .state
        .section(Probe::LoadBalancer, ctx.state.load_balancer.as_ref())
    {
        Ok(l) => l,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let mut up_others = Vec::new();
    let mut target_up = Vec::new();
    for b in &lb.backends {
        let Some(n) = backend_node(ctx, b) else {
            continue;
        };
        if ctx.is_target(&n.name) {
            if matches!(b.status, BackendStatus::Up | BackendStatus::Nolb) {
                target_up.push(b.server.as_str());
            }
        } else if b.status == BackendStatus::Up {
            up_others.push(b.server.as_str());
        }
    }
    if up_others.len() < p.min_other_backends {
        out.push(
            deny(
                ID,
                format!(
                    "{} UP in the load balancer ({}); {} needed while {} is down",
                    count(up_others.len(), "other backend"),
                    if up_others.is_empty() {
                        "none".into()
                    } else {
                        and_list(&up_others)
                    },
                    p.min_other_backends,
                    ctx.target_phrase()
                ),
            )
            .fix(ctx.host_fix().unwrap_or_else(|| {
                "bring the other masters' backends UP (check their /readyz health checks) first"
                    .into()
            })),
        );
        return;
    }
    if !target_up.is_empty() {
        out.push(
            warn(ID, if target_up.len() == 1 { format!("backend {} still takes traffic", target_up[0]) } else { format!("backends {} still take traffic", and_list(&target_up)) })
                .fix("set the server to drain in the load balancer and wait for sessions to reach 0 before stopping the apiserver"),
        );
    }
    out.push(pass(
        ID,
        format!(
            "{} UP: {}",
            count(up_others.len(), "other backend"),
            and_list(&up_others)
        ),
    ));
}
