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

/// An age for people: whole seconds, with days counted out when there are
/// any ("213d 4h 10m 5s", "7m 30s").
fn age(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    let days = secs / 86_400;
    let rest = Dur(jiff::SignedDuration::from_secs((secs % 86_400) as i64));
    match (days, secs % 86_400) {
        (0, _) => rest.to_string(),
        (d, 0) => format!("{d}d"),
        (d, _) => format!("{d}d {rest}"),
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let age_d = ctx.now.duration_since(ctx.state.observed_at);
    if age_d > p.max_age.0 {
        out.push(
            unknown(
                ID,
                format!(
                    "the state is {} old (observed at {}, verdict at {}); the policy accepts at most {}",
                    age(age_d),
                    ctx.state.observed_at,
                    ctx.now,
                    p.max_age
                ),
            )
            .fix("observe again right before asking (`hacli observe -t TOPOLOGY -O STATE`), or ask the live gate (`hacli gate`); `--at` evaluates a saved state as of another time"),
        );
    } else if -age_d > p.max_age.0 {
        out.push(unknown(
            ID,
            format!(
                "the state claims to be from {}, {} after the verdict's time {}: check the clocks",
                ctx.state.observed_at,
                age(-age_d),
                ctx.now
            ),
        ));
    } else {
        out.push(pass(
            ID,
            format!(
                "state observed {} before the verdict",
                Dur(age_d.abs().round(jiff::Unit::Second).unwrap_or_default())
            ),
        ));
    }
}
