//! Quiet baseline: no node's Ready condition changed within a window (the
//! kured gate uses 24h, the upgrade preflight 600s).

use serde::{Deserialize, Serialize};

use super::{Context, and_list, count, deny, pass, unknown};
use crate::state::Probe;
use crate::units::Dur;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "soak";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// How long every node's Ready condition must have been stable.
    #[serde(default = "ten_minutes")]
    pub window: Dur,
}

fn ten_minutes() -> Dur {
    Dur::secs(600)
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window: ten_minutes(),
        }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let nodes = match ctx.state.section(Probe::Nodes, ctx.state.nodes.as_ref()) {
        Ok(n) => n,
        Err(e) => return out.push(unknown(ID, e)),
    };
    let since = ctx.now - p.window.0;
    let mut recent: Vec<(&str, jiff::Timestamp)> = Vec::new();
    let mut unsure = Vec::new();
    for n in nodes {
        match n.ready_since {
            Some(t) if t > since => recent.push((n.name.as_str(), t)),
            Some(_) => {}
            None => unsure.push(n.name.as_str()),
        }
    }
    if let Some(&(name, latest)) = recent.iter().max_by_key(|(_, t)| *t) {
        let ago = Dur((ctx.now - latest)
            .round(jiff::Unit::Second)
            .unwrap_or_default());
        let left = Dur((latest + p.window.0 - ctx.now)
            .round(jiff::Unit::Second)
            .unwrap_or_default());
        out.push(
            deny(
                ID,
                format!(
                    "{} changed readiness within the {} soak window; latest {name} {ago} ago",
                    count(recent.len(), "node"),
                    p.window
                ),
            )
            .fix(format!("wait {left} (until {})", latest + p.window.0)),
        );
    } else if !unsure.is_empty() {
        out.push(unknown(
            ID,
            format!(
                "Ready transition time not observed for {}",
                and_list(&unsure)
            ),
        ));
    } else {
        out.push(pass(
            ID,
            format!("no node changed readiness in the last {}", p.window),
        ));
    }
}
