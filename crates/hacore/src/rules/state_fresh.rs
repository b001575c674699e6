//! The observation is recent: a verdict on stale data is no verdict.

use serde::{Deserialize, Serialize};

use super::{Context, pass, unknown};
use crate::units::Dur;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "state-fresh";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Oldest acceptable observation.
    #[serde(default = "five_minutes")]
    pub max_age: Dur,
}

fn five_minutes() -> Dur {
    Dur::secs(300)
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_age: five_minutes(),
        }
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let age = ctx.now.duration_since(ctx.state.observed_at);
    if age > p.max_age.0 {
        out.push(
            unknown(
                ID,
                format!(
                    "the state was observed at {}, more than {} before {}",
                    ctx.state.observed_at, p.max_age, ctx.now
                ),
            )
            .fix("observe again"),
        );
    } else if -age > p.max_age.0 {
        out.push(unknown(
            ID,
            format!(
                "the state claims to be from {}, after {}: check the clocks",
                ctx.state.observed_at, ctx.now
            ),
        ));
    } else {
        out.push(pass(
            ID,
            format!(
                "state observed {} before the verdict",
                Dur(age.abs().round(jiff::Unit::Second).unwrap_or_default())
            ),
        ));
    }
}
