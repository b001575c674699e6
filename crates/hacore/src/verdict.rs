//! Findings and verdicts.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::action::Action;

/// How one finding bears on the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule's condition holds.
    Pass,
    /// Worth knowing; does not change the decision.
    Warn,
    /// The rule could not decide (a probe failed or data is missing): the
    /// verdict cannot be "allow".
    Unknown,
    /// The action is unsafe.
    Deny,
}

impl Severity {
    /// Its name as serialized: `pass`, `warn`, `unknown`, `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Pass => "pass",
            Severity::Warn => "warn",
            Severity::Unknown => "unknown",
            Severity::Deny => "deny",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule's conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id, such as `etcd-quorum`.
    pub rule: String,
    /// Effect on the decision.
    pub severity: Severity,
    /// What the rule found, in one sentence.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
}

impl Finding {
    /// A finding without remediation.
    pub fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.to_string(),
            severity,
            message: message.into(),
            remediation: None,
        }
    }

    /// Add a remediation hint.
    pub fn fix(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = Some(remediation.into());
        self
    }
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Every rule passed (warnings allowed).
    Allow,
    /// At least one rule found the action unsafe.
    Deny,
    /// Nothing denied, but at least one rule could not decide. Never "allow".
    Unknown,
}

impl Decision {
    /// Its name as serialized: `allow`, `deny`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Unknown => "unknown",
        }
    }

    /// From findings: any deny denies; else any unknown makes it unknown;
    /// else allow. Adding findings can never move a deny to allow.
    pub fn from_findings<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Decision {
        let worst = findings
            .into_iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Pass);
        match worst {
            Severity::Deny => Decision::Deny,
            Severity::Unknown => Decision::Unknown,
            Severity::Pass | Severity::Warn => Decision::Allow,
        }
    }

    /// The CLI's exit code: 0 allow, 1 deny, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Decision::Allow => 0,
            Decision::Deny => 1,
            Decision::Unknown => 3,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to "may I do ACTION to TARGET now?", with every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// allow, deny or unknown.
    pub decision: Decision,
    /// The action asked about.
    pub action: Action,
    /// The target as given (a node or a hypervisor host).
    pub target: String,
    /// The nodes the action affects.
    pub affected: Vec<String>,
    /// The policy applied.
    pub policy: String,
    /// The time the verdict was evaluated for.
    pub at: Timestamp,
    /// When the state was observed.
    #[serde(alias = "observed_at")]
    pub observed_at: Timestamp,
    /// Every rule's findings, in policy order.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Whether the action may go ahead.
    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// Findings that decide the outcome (deny and unknown).
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.severity, Severity::Deny | Severity::Unknown))
    }
}
