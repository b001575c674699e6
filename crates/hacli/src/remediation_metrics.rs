//! The remediation's Prometheus series on the sentinel's `/metrics` (with
//! `hacli sentinel --remediate`): the same decision, class and retry budget
//! `hacore::remediation` gives `hacli remediate --metrics` (its textfile),
//! plus counters over the process's life.
//!
//! - `hacli_remediation_decisions_total{decision,reason_class}`: the
//!   decision that stood at the end of each tick;
//! - `hacli_remediation_attempts_total{result}`: replacements started by
//!   this process, by result (`succeeded`, `failed`);
//! - `hacli_remediation_decision{decision,node,reason,reason_class}`: 1 for
//!   the last decision (as in the textfile);
//! - `hacli_remediation_budget_remaining`, `hacli_remediation_retry_budget`:
//!   attempts the retry budget still allows, and allows in all.

use hacore::remediation::{Attempt, Budget, Decision};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
    reason_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LastLabels {
    decision: String,
    node: String,
    reason: String,
    reason_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The remediation series.
#[derive(Debug, Clone, Default)]
pub struct RemediationMetrics {
    decisions: Family<DecisionLabels, Counter>,
    last: Family<LastLabels, Gauge>,
    attempts: Family<ResultLabels, Counter>,
    budget_remaining: Gauge,
    retry_budget: Gauge,
}

impl RemediationMetrics {
    /// Register every series in `r` (prefixed `hacli_remediation`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "decisions",
            "Remediation decisions, the one that stood at the end of each tick, by decision and reason class",
            self.decisions.clone(),
        );
        r.register(
            "decision",
            "The last remediation decision (1), with its master, reason and reason class",
            self.last.clone(),
        );
        r.register(
            "attempts",
            "Replacements this process started, by result (succeeded, failed)",
            self.attempts.clone(),
        );
        r.register(
            "budget_remaining",
            "Attempts the retry budget still allows within its period",
            self.budget_remaining.clone(),
        );
        r.register(
            "retry_budget",
            "Attempts allowed within the retry period",
            self.retry_budget.clone(),
        );
    }

    /// Set the series from one tick: the decision that stands, the budget
    /// after it, and the attempts that ended during it.
    pub fn record(&self, d: &Decision, budget: Budget, ended: &[Attempt]) {
        let (decision, class) = (d.kind().to_string(), d.class().as_str().to_string());
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: decision.clone(),
                reason_class: class.clone(),
            })
            .inc();
        self.last.clear();
        self.last
            .get_or_create(&LastLabels {
                decision,
                node: d.node().unwrap_or("").to_string(),
                reason: d.reason().replace('\n', " "),
                reason_class: class,
            })
            .set(1);
        for a in ended {
            let result = if a.succeeded { "succeeded" } else { "failed" };
            self.attempts
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .inc();
        }
        self.budget_remaining.set(i64::from(budget.remaining()));
        self.retry_budget.set(i64::from(budget.allowed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::remediation::Class;

    #[test]
    fn a_budget_refusal_counts_by_class_and_the_budget_reads_zero() {
        let m = crate::sentinel_metrics::Metrics::with_remediation(true);
        let r = m.remediation().expect("on");
        let failed = Attempt {
            node: "m1".into(),
            started: jiff::Timestamp::UNIX_EPOCH,
            ended: Some(jiff::Timestamp::UNIX_EPOCH),
            succeeded: false,
        };
        let d = Decision::Refused {
            node: "m1".into(),
            reason: "the replacement of m1 failed: refused".into(),
            class: Class::Failed,
        };
        r.record(
            &d,
            Budget {
                used: 1,
                allowed: 1,
            },
            &[failed],
        );
        let d = Decision::Refused {
            node: "m1".into(),
            reason: "the retry budget is spent".into(),
            class: Class::RetryBudget,
        };
        r.record(
            &d,
            Budget {
                used: 1,
                allowed: 1,
            },
            &[],
        );
        r.record(
            &d,
            Budget {
                used: 1,
                allowed: 1,
            },
            &[],
        );
        let text = m.encode();
        for line in [
            "hacli_remediation_decisions_total{decision=\"refused\",reason_class=\"retry-budget\"} 2",
            "hacli_remediation_decisions_total{decision=\"refused\",reason_class=\"failed\"} 1",
            "hacli_remediation_attempts_total{result=\"failed\"} 1",
            "hacli_remediation_budget_remaining 0",
            "hacli_remediation_retry_budget 1",
            "hacli_remediation_decision{decision=\"refused\",node=\"m1\",reason=\"the retry budget is spent\",reason_class=\"retry-budget\"} 1",
            "hacli_sentinel_cycles_total 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(text.matches("hacli_remediation_decision{").count(), 1);
        let off = crate::sentinel_metrics::Metrics::with_remediation(false).encode();
        assert!(!off.contains("hacli_remediation"), "{off}");
    }
}
