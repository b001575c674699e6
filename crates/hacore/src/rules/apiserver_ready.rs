//! The API stays served: other masters' apiservers answer `/readyz`, and the
//! control-plane endpoint does too.

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "apiserver-ready";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Other apiservers that must answer `/readyz` while the targets are down.
    #[serde(default = "one")]
    pub min_ready: usize,
}

fn one() -> usize {
    1
}

impl Default for Params {
    fn default() -> Self {
        Params { min_ready: 1 }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if !ctx.action.stops_control_plane() || !ctx.targets_control_plane() {
        out.push(pass(
            ID,
            format!(
                "{} of {} stops no apiserver",
                ctx.action,
                ctx.target_names()
            ),
        ));
        return;
    }
    let api = match ctx
        .state
        .section(Probe::Apiservers, ctx.state.apiservers.as_ref())
    {
        Ok(a) => a,
        Err(e) => return out.push(unknown(ID, e)),
    };
    if ctx.topology.has_load_balancer() {
        match api.via_endpoint {
            Some(true) => {}
            Some(false) => {
                return out.push(
                    deny(
                        ID,
                        format!(
                            "the API does not answer /readyz through the endpoint {} now",
                            ctx.topology.control_plane_endpoint.socket()
                        ),
                    )
                    .fix("fix the load balancer before disrupting a master"),
                );
            }
            None => return out.push(unknown(ID, "/readyz through the endpoint was not observed")),
        }
    }
    let mut ready = Vec::new();
    let mut unsure = Vec::new();
    for n in ctx
        .topology
        .control_plane_nodes()
        .filter(|n| !ctx.is_target(&n.name))
    {
        match api.per_node.get(&n.name) {
            Some(true) => ready.push(n.name.as_str()),
            Some(false) => {}
            None => unsure.push(n.name.as_str()),
        }
    }
    if ready.len() >= p.min_ready {
        out.push(pass(ID, format!("apiserver ready on {}", and_list(&ready))));
    } else if ready.len() + unsure.len() >= p.min_ready {
        out.push(unknown(
            ID,
            format!("/readyz of {} was not observed", and_list(&unsure)),
        ));
    } else {
        out.push(
            deny(
                ID,
                format!(
                    "{} ready; {} needed while {} is down: the API would be unavailable",
                    count(ready.len(), "other apiserver"),
                    p.min_ready,
                    ctx.target_phrase()
                ),
            )
            .fix(
                ctx.host_fix()
                    .unwrap_or_else(|| "bring another master's apiserver to ready first".into()),
            ),
        );
    }
}
