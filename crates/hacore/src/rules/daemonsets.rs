//! Named DaemonSet pods (e.g. calico-node) run on every node.

use serde::{Deserialize, Serialize};

use super::{Context, and_list, deny, pass, unknown};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "daemonsets";

/// Parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// DaemonSet names to check; empty checks every DaemonSet observed.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    if let Some(e) = ctx.state.probe_errors.get(&Probe::DaemonSets) {
        return out.push(unknown(ID, format!("probe `daemonSets` failed: {e}")));
    }
    let nodes = match ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        Ok(n) => n,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let mut bad = Vec::new();
    let mut unsure = Vec::new();
    for n in nodes {
        match &n.daemon_set_pods_not_running {
            None => unsure.push(n.name.as_str()),
            Some(list) => {
                for ds in list {
                    if p.names.is_empty() || p.names.iter().any(|x| x == ds) {
                        bad.push(format!("{ds} on {}", n.name));
                    }
                }
            }
        }
    }
    if !bad.is_empty() {
        let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
        out.push(
            deny(
                ID,
                format!(
                    "{} not running: {}",
                    if refs.len() == 1 {
                        "DaemonSet pod"
                    } else {
                        "DaemonSet pods"
                    },
                    and_list(&refs)
                ),
            )
            .fix("wait until those pods run (a node without its CNI pod drops traffic)"),
        );
    } else if !unsure.is_empty() {
        out.push(unknown(
            ID,
            format!("DaemonSet pods were not observed on {}", and_list(&unsure)),
        ));
    } else {
        let what = if p.names.is_empty() {
            "all DaemonSet".to_string()
        } else {
            and_list(&p.names)
        };
        out.push(pass(ID, format!("{what} pods run on every node")));
    }
}
