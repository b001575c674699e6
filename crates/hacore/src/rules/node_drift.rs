//! Drift: a node the cluster reports that the topology does not list. The
//! node rules count it all the same; this rule names it, so that the
//! topology is brought up to date. A policy chooses how much it weighs.

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, pass, unknown};
use crate::state::Probe;
use crate::verdict::{Finding, Severity};

/// Rule id.
pub const ID: &str = "node-drift";

/// Parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// The severity of a finding of drift: `warn` (the default), `unknown`
    /// (no allow until the topology is fixed) or `deny`.
    #[serde(default)]
    pub severity: DriftSeverity,
}

/// How much drift weighs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftSeverity {
    /// Report it; the verdict stands.
    #[default]
    Warn,
    /// The verdict cannot be allow.
    Unknown,
    /// Deny.
    Deny,
}

impl From<DriftSeverity> for Severity {
    fn from(s: DriftSeverity) -> Severity {
        match s {
            DriftSeverity::Warn => Severity::Warn,
            DriftSeverity::Unknown => Severity::Unknown,
            DriftSeverity::Deny => Severity::Deny,
        }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let nodes = match ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        Ok(n) => n,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let extra: Vec<&str> = nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|name| ctx.topology.node(name).is_none())
        .collect();
    if extra.is_empty() {
        out.push(pass(
            ID,
            format!(
                "every observed node is in the topology ({})",
                count(nodes.len(), "node")
            ),
        ));
        return;
    }
    let (noun, them, they, is, have) = if extra.len() == 1 {
        ("node", "it", "it", "is", "has")
    } else {
        ("nodes", "them", "they", "are", "have")
    };
    out.push(
        Finding::new(
            ID,
            p.severity.into(),
            format!(
                "{noun} {} {is} in the cluster but not in the topology: the node rules count {them}, but the topology does not say what role or hypervisor {they} {have}",
                and_list(&extra),
            ),
        )
        .fix(format!(
            "add {them} to the topology file (name, role, address, hypervisor); if {they} should not be in this cluster, check what {they} {is} first (`kubectl get node {} -o wide`)",
            extra.join(" ")
        )),
    );
}
