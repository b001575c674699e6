//! The sentinel's Prometheus metrics and its `/metrics` + `/healthz`
//! server (axum on the sentinel's own runtime), as kured offers them.
//!
//! Every series is set from the outcome of one cycle; nothing here decides.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hacore::state::Probe;
use hacore::{Decision, Severity, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// What one cycle found, for the metrics.
#[derive(Debug)]
pub struct CycleMetrics<'a> {
    /// The verdict on rebooting this node; None when not evaluated (no
    /// reboot pending: nothing was observed) or when the cycle failed.
    pub verdict: Option<&'a Verdict>,
    /// Probes that failed this cycle.
    pub probe_errors: Vec<Probe>,
    /// Whether the host's reboot-required file exists.
    pub reboot_required: bool,
    /// Since when (Unix seconds: the file's modification time).
    pub reboot_required_since: Option<f64>,
    /// Whether this sentinel holds the disruption lock after the cycle.
    pub lock_held: bool,
    /// Since when this process has seen it hold the lock (Unix seconds).
    pub lock_held_since: Option<f64>,
    /// Whether the gated sentinel file exists after the cycle.
    pub gated_file: bool,
    /// How long the cycle took.
    pub duration: Duration,
    /// Whether the cycle ended in an error.
    pub failed: bool,
}

/// The sentinel's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    verdict: Family<DecisionLabels, Gauge>,
    rule: Family<RuleLabels, Gauge>,
    probe_errors: Family<ProbeLabels, Counter>,
    cycle_duration: Gauge<f64, AtomicU64>,
    cycles: Counter,
    cycle_errors: Counter,
    last_cycle: Gauge<f64, AtomicU64>,
    reboot_required: Gauge,
    reboot_required_since: Gauge<f64, AtomicU64>,
    evaluated: Gauge,
    not_evaluated: Family<ReasonLabels, Gauge>,
    lock_held: Gauge,
    lock_held_since: Gauge<f64, AtomicU64>,
    lock_plan: Gauge<f64, AtomicU64>,
    period: Gauge<f64, AtomicU64>,
    gated_file: Gauge,
    /// The remediation series, with `--remediate`.
    remediation: Option<crate::remediation_metrics::RemediationMetrics>,
    /// Unix seconds of the last finished cycle (0: none yet).
    last_done: Arc<AtomicI64>,
    started: Arc<Mutex<std::time::Instant>>,
}

const DECISIONS: [Decision; 3] = [Decision::Allow, Decision::Deny, Decision::Unknown];
const RESULTS: [Severity; 4] = [
    Severity::Pass,
    Severity::Warn,
    Severity::Unknown,
    Severity::Deny,
];

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Pass => 0,
        Severity::Warn => 1,
        Severity::Unknown => 2,
        Severity::Deny => 3,
    }
}

impl Metrics {
    /// Register every series, and the remediation's (`hacli_remediation_*`)
    /// when `remediation` is on.
    pub fn with_remediation(remediation: bool) -> Metrics {
        let mut root = Registry::default();
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            verdict: Family::default(),
            rule: Family::default(),
            probe_errors: Family::default(),
            cycle_duration: Gauge::default(),
            cycles: Counter::default(),
            cycle_errors: Counter::default(),
            last_cycle: Gauge::default(),
            reboot_required: Gauge::default(),
            reboot_required_since: Gauge::default(),
            evaluated: Gauge::default(),
            not_evaluated: Family::default(),
            lock_held: Gauge::default(),
            lock_held_since: Gauge::default(),
            lock_plan: Gauge::default(),
            period: Gauge::default(),
            gated_file: Gauge::default(),
            remediation: remediation.then(Default::default),
            last_done: Arc::new(AtomicI64::new(0)),
            started: Arc::new(Mutex::new(std::time::Instant::now())),
        };
        m.register(root.sub_registry_with_prefix("hacli_sentinel"));
        if let Some(rm) = &m.remediation {
            rm.register(root.sub_registry_with_prefix("hacli_remediation"));
        }
        Metrics {
            registry: Arc::new(root),
            ..m
        }
    }

    /// Register every series in `r`.
    fn register(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "verdict",
            "The last verdict on rebooting this node: 1 for its decision (allow, deny, unknown), 0 for the others",
            m.verdict.clone(),
        );
        r.register(
            "rule_result",
            "Each rule's result in the last verdict (its worst finding): 1 for the result, 0 for the others",
            m.rule.clone(),
        );
        r.register(
            "probe_errors",
            "Observations that failed, by probe",
            m.probe_errors.clone(),
        );
        r.register(
            "cycle_duration_seconds",
            "How long the last cycle took (observe, decide, lock, sentinel file)",
            m.cycle_duration.clone(),
        );
        r.register("cycles", "Cycles run", m.cycles.clone());
        r.register(
            "cycle_errors",
            "Cycles that ended in an error",
            m.cycle_errors.clone(),
        );
        r.register(
            "last_cycle_timestamp_seconds",
            "When the last cycle ended (Unix time)",
            m.last_cycle.clone(),
        );
        r.register(
            "reboot_required",
            "Whether the host's reboot-required file exists",
            m.reboot_required.clone(),
        );
        r.register(
            "reboot_required_since_timestamp_seconds",
            "When the host's reboot-required file appeared (its modification time, Unix time; 0: no file)",
            m.reboot_required_since.clone(),
        );
        r.register(
            "evaluated",
            "Whether the last cycle evaluated the policy (1), or observed nothing (0)",
            m.evaluated.clone(),
        );
        r.register(
            "not_evaluated",
            "1 when the last cycle did not evaluate, by reason (no reboot pending: no request was made)",
            m.not_evaluated.clone(),
        );
        r.register(
            "lock_held",
            "Whether this sentinel holds the disruption lock",
            m.lock_held.clone(),
        );
        r.register(
            "lock_held_since_timestamp_seconds",
            "Since when this sentinel has held the disruption lock (Unix time; 0: not held)",
            m.lock_held_since.clone(),
        );
        r.register(
            "lock_plan_seconds",
            "How long the sentinel plans to hold the lock: its TTL (--lock-ttl), which covers the reboot",
            m.lock_plan.clone(),
        );
        r.register(
            "period_seconds",
            "The time between cycles (--period)",
            m.period.clone(),
        );
        r.register(
            "gated_file_exists",
            "Whether the gated sentinel file (kured's --reboot-sentinel) exists",
            m.gated_file.clone(),
        );
    }

    /// The remediation series (with `--remediate`).
    pub fn remediation(&self) -> Option<&crate::remediation_metrics::RemediationMetrics> {
        self.remediation.as_ref()
    }

    /// Set the configured period and lock plan.
    pub fn set_plan(&self, period: Duration, lock_ttl: Duration) {
        self.period.set(period.as_secs_f64());
        self.lock_plan.set(lock_ttl.as_secs_f64());
    }

    /// Set the series from one cycle.
    pub fn record(&self, c: &CycleMetrics<'_>) {
        self.cycles.inc();
        if c.failed {
            self.cycle_errors.inc();
        }
        for p in &c.probe_errors {
            self.probe_errors
                .get_or_create(&ProbeLabels {
                    probe: p.to_string(),
                })
                .inc();
        }
        if let Some(v) = c.verdict {
            for d in DECISIONS {
                self.verdict
                    .get_or_create(&DecisionLabels {
                        decision: d.to_string(),
                    })
                    .set(i64::from(v.decision == d));
            }
            // The worst finding of each rule.
            let mut worst: Vec<(&str, Severity)> = Vec::new();
            for f in &v.findings {
                match worst.iter_mut().find(|(r, _)| *r == f.rule) {
                    Some((_, s)) if rank(f.severity) > rank(*s) => *s = f.severity,
                    Some(_) => {}
                    None => worst.push((&f.rule, f.severity)),
                }
            }
            self.rule.clear();
            for (rule, sev) in worst {
                for s in RESULTS {
                    self.rule
                        .get_or_create(&RuleLabels {
                            rule: rule.to_string(),
                            result: s.as_str().into(),
                        })
                        .set(i64::from(s == sev));
                }
            }
        } else if !c.failed {
            // Not evaluated (no reboot pending): no decision stands.
            for d in DECISIONS {
                self.verdict
                    .get_or_create(&DecisionLabels {
                        decision: d.to_string(),
                    })
                    .set(0);
            }
            self.rule.clear();
        } else {
            // No verdict this cycle (an error): never leave "allow" standing.
            for d in DECISIONS {
                self.verdict
                    .get_or_create(&DecisionLabels {
                        decision: d.to_string(),
                    })
                    .set(i64::from(d == Decision::Unknown));
            }
            self.rule.clear();
        }
        let evaluated = c.verdict.is_some();
        self.evaluated.set(i64::from(evaluated));
        self.not_evaluated
            .get_or_create(&ReasonLabels {
                reason: crate::cmd::sentinel::NOT_EVALUATED
                    .trim_start_matches("not evaluated: ")
                    .into(),
            })
            .set(i64::from(!evaluated && !c.failed));
        self.reboot_required.set(i64::from(c.reboot_required));
        self.reboot_required_since
            .set(c.reboot_required_since.unwrap_or(0.0));
        self.lock_held.set(i64::from(c.lock_held));
        self.lock_held_since.set(c.lock_held_since.unwrap_or(0.0));
        self.gated_file.set(i64::from(c.gated_file));
        self.cycle_duration.set(c.duration.as_secs_f64());
        let now = jiff::Timestamp::now();
        self.last_cycle.set(now.as_millisecond() as f64 / 1000.0);
        self.last_done.store(now.as_second(), Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Healthy while cycles keep finishing: the last one ended less than
    /// `stale` ago (or, before the first, the process started less than
    /// `stale` ago).
    pub fn healthy(&self, stale: Duration) -> Result<String, String> {
        let last = self.last_done.load(Ordering::Relaxed);
        if last == 0 {
            let up = self.started.lock().map(|s| s.elapsed()).unwrap_or_default();
            return if up < stale {
                Ok("ok: starting, no cycle finished yet\n".into())
            } else {
                Err(format!(
                    "no cycle finished in {}s since the start\n",
                    up.as_secs()
                ))
            };
        }
        let age = jiff::Timestamp::now().as_second() - last;
        if age <= stale.as_secs() as i64 {
            Ok(format!("ok: last cycle ended {age}s ago\n"))
        } else {
            Err(format!(
                "the last cycle ended {age}s ago (more than {}s): the loop is stuck\n",
                stale.as_secs()
            ))
        }
    }

    /// Serve `/metrics` and `/healthz` on `addr`; returns the bound address.
    pub async fn serve(&self, addr: SocketAddr, stale: Duration) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
        let bound = listener.local_addr()?;
        let metrics = self.clone();
        let health = self.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    async move {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            m.encode(),
                        )
                    }
                }),
            )
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let h = health.clone();
                    async move {
                        match h.healthy(stale) {
                            Ok(s) => (StatusCode::OK, s).into_response(),
                            Err(s) => (StatusCode::SERVICE_UNAVAILABLE, s).into_response(),
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("error: the metrics server stopped: {e}");
            }
        });
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_until_cycles_stop() {
        let m = Metrics::with_remediation(false);
        assert!(m.healthy(Duration::from_secs(60)).is_ok());
        assert!(m.healthy(Duration::ZERO).is_err(), "no cycle ever finished");
        m.record(&CycleMetrics {
            verdict: None,
            probe_errors: vec![Probe::Etcd, Probe::Etcd],
            reboot_required: true,
            reboot_required_since: Some(1_700_000_000.0),
            lock_held: false,
            lock_held_since: None,
            gated_file: false,
            duration: Duration::from_millis(5),
            failed: true,
        });
        assert!(m.healthy(Duration::from_secs(60)).is_ok());
        m.last_done.store(1, Ordering::Relaxed);
        let e = m.healthy(Duration::from_secs(60)).unwrap_err();
        assert!(e.contains("stuck"), "{e}");
        // An error cycle reads as unknown, never allow.
        let text = m.encode();
        assert!(
            text.contains("hacli_sentinel_verdict{decision=\"unknown\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hacli_sentinel_verdict{decision=\"allow\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hacli_sentinel_probe_errors_total{probe=\"etcd\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hacli_sentinel_cycle_errors_total 1"),
            "{text}"
        );
    }

    #[test]
    fn an_idle_cycle_reads_as_not_evaluated_never_as_a_decision() {
        let m = Metrics::with_remediation(false);
        m.set_plan(Duration::from_secs(60), Duration::from_secs(1800));
        m.record(&CycleMetrics {
            verdict: None,
            probe_errors: Vec::new(),
            reboot_required: false,
            reboot_required_since: None,
            lock_held: false,
            lock_held_since: None,
            gated_file: false,
            duration: Duration::from_micros(40),
            failed: false,
        });
        let text = m.encode();
        for d in ["allow", "deny", "unknown"] {
            let line = format!("hacli_sentinel_verdict{{decision=\"{d}\"}} 0");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("hacli_sentinel_evaluated 0"), "{text}");
        assert!(
            text.contains("hacli_sentinel_not_evaluated{reason=\"no reboot pending\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hacli_sentinel_lock_plan_seconds 1800"),
            "{text}"
        );
        assert!(text.contains("hacli_sentinel_period_seconds 60"), "{text}");
        assert_eq!(m.cycle_errors.get(), 0);
    }
}
