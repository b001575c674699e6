//! A policy's `silence:` section: the Alertmanager silences a disruption
//! creates for the alerts it causes itself (a node NotReady while it
//! reboots), one per disrupted node. Pure: the matchers for a node, and the
//! check that no matcher silences an alert the policy's `alerts` rule gates
//! on. The HTTP client lives in `kubeadm::silence`.
//!
//! ```yaml
//! silence:
//!   matchers:
//!     - { name: alertname, value: "KubeNodeNotReady|KubeNodeUnreachable", isRegex: true }
//!     - { name: node, value: "{node}" }
//!   comment: planned reboot by hacli
//! ```

use serde::{Deserialize, Serialize};

use crate::rules::alerts;
use crate::source::Diagnostic;

/// The placeholder for the disrupted node's name in a matcher's value.
pub const NODE: &str = "{node}";

/// The `silence:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceSpec {
    /// Matchers of each node's silence; `{node}` in a value stands for the
    /// node's name (escaped in a regex). At least one names `{node}`.
    pub matchers: Vec<Matcher>,
    /// The silence's comment (the run adds what it is and which node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An Alertmanager (API v2) matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value, or regex when `isRegex`.
    pub value: String,
    /// Whether `value` is a regex (anchored by Alertmanager).
    #[serde(default)]
    pub is_regex: bool,
    /// false: the matcher is negated (`!=`, `!~`).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}\"{}\"", self.name, self.value)
    }
}

/// Alternatives of a regex that is a plain alternation of literal names
/// (`A|B|C`); None when it is anything else.
fn literal_alternatives(re: &str) -> Option<Vec<&str>> {
    let names: Vec<&str> = re.split('|').collect();
    names
        .iter()
        .all(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .then_some(names)
}

impl SilenceSpec {
    /// The matchers of `node`'s silence.
    pub fn for_node(&self, node: &str) -> Vec<Matcher> {
        self.matchers
            .iter()
            .map(|m| Matcher {
                value: if m.is_regex {
                    m.value.replace(NODE, &regex::escape(node))
                } else {
                    m.value.replace(NODE, node)
                },
                ..m.clone()
            })
            .collect()
    }

    /// Problems, each naming its field (`silence.matchers[i]`): no matcher
    /// names the node, an invalid regex, or a silence that could mute an
    /// alert the `alerts` rule gates on (`gated`: its parameters when the
    /// policy has that rule).
    pub fn check(&self, gated: Option<&alerts::Params>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if self.matchers.is_empty() {
            out.push(Diagnostic::error(
                "silence.matchers",
                "a silence needs matchers, one of them naming the node as `{node}`",
            ));
            return out;
        }
        if !self
            .matchers
            .iter()
            .any(|m| m.is_equal && m.value.contains(NODE))
        {
            out.push(Diagnostic::error(
                "silence.matchers",
                "no matcher names the node (`{node}` in a value): the silence would mute that alert on every node",
            ));
        }
        for (i, m) in self.matchers.iter().enumerate() {
            if m.name.is_empty() {
                out.push(Diagnostic::error(
                    format!("silence.matchers[{i}].name"),
                    "a matcher needs a label name",
                ));
            }
            if m.is_regex
                && let Err(e) = regex::Regex::new(&m.value.replace(NODE, "node"))
            {
                out.push(Diagnostic::error(
                    format!("silence.matchers[{i}].value"),
                    format!("invalid regex `{}`: {e}", m.value),
                ));
            }
        }
        if let Some(p) = gated
            && let Some(why) = self.mutes_gated(p)
        {
            out.push(why);
        }
        out
    }

    /// Whether these matchers could mute an alert the `alerts` rule gates
    /// on (severity at or above its minimum, name not ignored): refused,
    /// naming the matcher. A silence is safe when a `severity` matcher
    /// keeps it below the minimum, or when its `alertname` matcher names
    /// only alerts the rule ignores.
    fn mutes_gated(&self, p: &alerts::Params) -> Option<Diagnostic> {
        let min = alerts::rank(&p.min_severity);
        let below = self.matchers.iter().any(|m| {
            m.name == "severity"
                && m.is_equal
                && match m.is_regex {
                    false => alerts::rank(&m.value) < min && !m.value.is_empty(),
                    true => literal_alternatives(&m.value).is_some_and(|vs| {
                        vs.iter().all(|v| alerts::rank(v) < min && !v.is_empty())
                    }),
                }
        });
        if below {
            return None;
        }
        let names = self
            .matchers
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == "alertname" && m.is_equal);
        let Some((i, m)) = names else {
            return Some(Diagnostic::error(
                "silence.matchers",
                format!(
                    "without an `alertname` matcher (or a `severity` matcher below {}) the silence could mute an alert the `alerts` rule gates on",
                    p.min_severity
                ),
            ));
        };
        let listed: Vec<&str> = if m.is_regex {
            match literal_alternatives(&m.value) {
                Some(v) => v,
                None => {
                    return Some(Diagnostic::error(
                        format!("silence.matchers[{i}]"),
                        format!(
                            "{m}: cannot tell which alerts this regex mutes; list the names (`A|B`) so none is one the `alerts` rule gates on, or add a `severity` matcher below {}",
                            p.min_severity
                        ),
                    ));
                }
            }
        } else {
            vec![m.value.as_str()]
        };
        let gated: Vec<&str> = listed
            .into_iter()
            .filter(|n| !p.ignore.is_match(n))
            .collect();
        if gated.is_empty() {
            return None;
        }
        Some(Diagnostic::error(
            format!("silence.matchers[{i}]"),
            format!(
                "{m} would mute {} that the `alerts` rule gates on (at {} or above, not ignored): refused; add a `severity` matcher below {}, or make the `alerts` rule ignore {}",
                gated.join(", "),
                p.min_severity,
                p.min_severity,
                if gated.len() == 1 { "it" } else { "them" }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SilenceSpec {
        crate::source::parse("t.yaml", yaml).unwrap()
    }

    #[test]
    fn the_node_is_substituted_and_escaped_in_a_regex() {
        let s = spec(
            "matchers:\n  - { name: alertname, value: KubeNodeNotReady }\n  - { name: node, value: '{node}' }\n  - { name: instance, value: '{node}:.*', isRegex: true }\n",
        );
        let m = s.for_node("w1.lab");
        assert_eq!(m[0].value, "KubeNodeNotReady");
        assert_eq!(m[1].value, "w1.lab");
        assert_eq!(m[2].value, "w1\\.lab:.*");
        assert!(m.iter().all(|m| m.is_equal));
    }

    #[test]
    fn a_matcher_for_an_alert_the_alerts_rule_gates_on_is_refused_by_name() {
        let gated = alerts::Params::default(); // critical and above, Watchdog|InfoInhibitor ignored
        let s = spec(
            "matchers:\n  - { name: alertname, value: 'KubeNodeNotReady|KubeletDown', isRegex: true }\n  - { name: node, value: '{node}' }\n",
        );
        let e = s.check(Some(&gated));
        assert_eq!(e.len(), 1, "{e:?}");
        let text = format!("{e:?}");
        assert!(text.contains("silence.matchers[0]"), "{text}");
        assert!(text.contains("KubeNodeNotReady, KubeletDown"), "{text}");
        // Without an alerts rule nothing is gated.
        assert!(s.check(None).is_empty());
        // A severity matcher below the rule's minimum makes it safe.
        let s = spec(
            "matchers:\n  - { name: alertname, value: 'KubeNodeNotReady|KubeletDown', isRegex: true }\n  - { name: severity, value: warning }\n  - { name: node, value: '{node}' }\n",
        );
        assert!(s.check(Some(&gated)).is_empty());
        // A severity at the minimum does not.
        let s = spec(
            "matchers:\n  - { name: alertname, value: KubeNodeNotReady }\n  - { name: severity, value: critical }\n  - { name: node, value: '{node}' }\n",
        );
        assert_eq!(s.check(Some(&gated)).len(), 1);
        // Names the rule ignores are fine.
        let s = spec(
            "matchers:\n  - { name: alertname, value: Watchdog }\n  - { name: node, value: '{node}' }\n",
        );
        assert!(s.check(Some(&gated)).is_empty());
        // A regex that is not a list of names cannot be judged: refused.
        let s = spec(
            "matchers:\n  - { name: alertname, value: 'Kube.*', isRegex: true }\n  - { name: node, value: '{node}' }\n",
        );
        let e = format!("{:?}", s.check(Some(&gated)));
        assert!(e.contains("cannot tell which alerts"), "{e}");
        // No alertname at all: refused.
        let s = spec("matchers:\n  - { name: node, value: '{node}' }\n");
        assert_eq!(s.check(Some(&gated)).len(), 1);
    }

    #[test]
    fn a_silence_that_names_no_node_is_refused() {
        let s = spec("matchers:\n  - { name: alertname, value: KubeNodeNotReady }\n");
        let e = format!("{:?}", s.check(None));
        assert!(e.contains("no matcher names the node"), "{e}");
        let s = spec(
            "matchers:\n  - { name: node, value: '{node}', isEqual: false }\n  - { name: alertname, value: A }\n",
        );
        assert!(
            format!("{:?}", s.check(None)).contains("no matcher names the node"),
            "a negated node matcher mutes every other node"
        );
    }
}
