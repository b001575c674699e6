//! No critical alert is firing, apart from those the policy ignores.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Context, and_list, deny, pass, unknown, warn};
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "alerts";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Alert names to ignore (a regex matched against the whole name).
    #[serde(default = "default_ignore")]
    pub ignore: Pattern,
    /// Lowest severity that blocks: `info`, `warning` or `critical`.
    #[serde(default = "critical")]
    pub min_severity: String,
    /// Whether alerts must have been observed. `true` (the default): a state
    /// with no alerts observed is unknown. `false`: a state with no alert
    /// source at all (no Prometheus configured, no `alerts:` in the file)
    /// passes with a warning that says alerts were not checked. Either way, a
    /// Prometheus that was asked and did not answer (`probeErrors.alerts`)
    /// is unknown, never allow.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

fn default_ignore() -> Pattern {
    // Compiled once: built-in policies are built per verdict by callers that
    // do not cache them, and a regex compile costs more than a verdict.
    static DEFAULT: std::sync::LazyLock<Pattern> =
        std::sync::LazyLock::new(|| Pattern::new("Watchdog|InfoInhibitor").expect("valid"));
    DEFAULT.clone()
}

fn critical() -> String {
    "critical".into()
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ignore: default_ignore(),
            min_severity: critical(),
            required: true,
        }
    }
}

/// A regex anchored to the whole string, compiled when the policy loads.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    re: regex::Regex,
}

impl Pattern {
    /// Compile `source`, anchored.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let re = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Pattern {
            source: source.to_string(),
            re,
        })
    }

    /// Whether `s` matches as a whole.
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(|e| serde::de::Error::custom(format!("invalid regex `{s}`: {e}")))
    }
}

/// Rank of a severity label; unknown labels rank as `warning`.
pub fn rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "none" | "info" | "informational" => 0,
        "warning" | "warn" | "" => 1,
        "error" | "major" => 2,
        "critical" | "page" | "emergency" => 3,
        _ => 1,
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let failed = ctx.state.probe_errors.contains_key(&Probe::Alerts);
    if !p.required && !failed && ctx.state.alerts.is_none() {
        return out.push(
            warn(
                ID,
                "no alert source was observed (no Prometheus configured): firing alerts were not checked",
            )
            .fix("give the gate Prometheus (--prometheus-url) to block on firing alerts, as kured does with its own --prometheus-url"),
        );
    }
    let alerts = match ctx.state.section(Probe::Alerts, ctx.state.alerts.as_ref()) {
        Ok(a) => a,
        Err(e) => {
            return out.push(
                unknown(ID, e)
                    .fix("make Prometheus answer (URL, credentials, network) and observe again"),
            );
        }
    };
    let min = rank(&p.min_severity);
    let firing: Vec<String> = alerts
        .iter()
        .filter(|a| !p.ignore.is_match(&a.name) && rank(&a.severity) >= min)
        .map(|a| {
            format!(
                "{} ({})",
                a.name,
                if a.severity.is_empty() {
                    "no severity"
                } else {
                    &a.severity
                }
            )
        })
        .collect();
    if firing.is_empty() {
        out.push(pass(
            ID,
            format!(
                "no alert at {} or above is firing ({} ignored or below)",
                p.min_severity,
                alerts.len()
            ),
        ));
    } else {
        out.push(
            deny(
                ID,
                format!(
                    "{} firing: {}",
                    if firing.len() == 1 { "alert" } else { "alerts" },
                    and_list(&firing)
                ),
            )
            .fix("resolve them, or add them to the policy's ignore pattern if they are expected"),
        );
    }
}
