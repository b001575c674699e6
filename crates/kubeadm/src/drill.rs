//! The failover drill's measurements: the load balancer's view of the
//! disrupted node ([`LbWatcher`], HAProxy's runtime API polled several
//! times per health-check interval), the traffic through the
//! control-plane endpoint ([`start_traffic`], [`crate::traffic`]), and
//! the report they make ([`report`], [`DrillReport`], `hacli.drill/v1`):
//! requests sent and failed; the longest stretch with no successful
//! answer; p50/p99 latency before, during and after the disruption; when
//! the LB marked the server DOWN and UP; and the bound an unplanned gap
//! must stay within: `fall × interval + interval` of the topology's health
//! check (HAProxy needs `fall` failed checks, one `interval` apart, plus up
//! to one interval until the first check after the failure).
//!
//! The drill's sequence (gate, traffic, disrupt, restore, recover, report)
//! and its disruptions are `haops::drill`: the one place every frontend
//! calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hacore::topology::RuntimeApi;
use pfsense::RuntimeClient;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::traffic::{Connections, Gap, Sample, Stats, Traffic, TrafficConfig, longest_gap, ms};

/// The JSON schema name and version of [`DrillReport`].
pub const SCHEMA: &str = "hacli.drill/v1";

/// The load balancer the drill watches.
#[derive(Debug, Clone)]
pub struct LbWatch {
    /// HAProxy's runtime API.
    pub api: RuntimeApi,
    /// The apiserver pool.
    pub pool: String,
    /// The node's server in it.
    pub server: String,
    /// The health check's `fall`.
    pub fall: u32,
    /// The health check's interval.
    pub interval: Duration,
}

impl LbWatch {
    /// `fall × interval + interval`: how long HAProxy may keep sending new
    /// connections to a server that died.
    pub fn bound(&self) -> Duration {
        self.interval * (self.fall + 1)
    }
}

/// What the drill does.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// The node disrupted.
    pub node: String,
    /// `planned-reboot`, `unplanned-poweroff`, `unplanned-kill-apiserver`...
    pub mode: String,
    /// The URL the traffic goes to (the control-plane endpoint).
    pub endpoint: String,
    /// The traffic.
    pub traffic: TrafficConfig,
    /// Total traffic time (at least; recovery may take longer).
    pub duration: Duration,
    /// Traffic before the disruption.
    pub baseline: Duration,
    /// How long the node stays down before it is restored (a power-off).
    pub down_for: Duration,
    /// Traffic after the server is UP again, at least.
    pub after: Duration,
    /// How long to wait for the server to come UP again after the restore.
    pub recovery_timeout: Duration,
    /// The load balancer, when the topology has one with a runtime API.
    pub lb: Option<LbWatch>,
}

/// A status the load balancer showed for the node's server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbTransition {
    /// When it was first seen, ms since the traffic started.
    pub at_ms: f64,
    /// `show stat`'s status text (`UP`, `UP 1/2`, `DOWN`, `DOWN 1/2`, `MAINT`...),
    /// or `unknown: why` when the runtime API did not answer.
    pub status: String,
}

/// The load balancer's view of the node during the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbReport {
    /// The runtime API polled.
    pub runtime_api: String,
    /// The pool.
    pub pool: String,
    /// The node's server.
    pub server: String,
    /// How often it was polled, ms.
    pub poll_ms: f64,
    /// The health check's `fall`.
    pub fall: u32,
    /// The health check's interval, ms.
    pub interval_ms: f64,
    /// Every status change seen.
    pub transitions: Vec<LbTransition>,
    /// When the server was first seen out of rotation (DOWN, MAINT, or
    /// DRAIN as a planned disruption sets it) after the disruption began.
    pub down_ms: Option<f64>,
    /// When it was first seen UP again after that.
    pub up_ms: Option<f64>,
}

/// The disruption's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionReport {
    /// What was done.
    pub action: String,
    /// When it began, ms since the traffic started.
    pub start_ms: f64,
    /// When the disruptive call returned.
    pub done_ms: Option<f64>,
    /// When the restore (power on) began.
    pub restore_ms: Option<f64>,
    /// When the restore call returned.
    pub restored_ms: Option<f64>,
    /// When the disruption is over: the server UP again in the load
    /// balancer, or (without one) when the restore returned.
    pub end_ms: f64,
    /// What failed, if anything did.
    pub error: Option<String>,
}

/// The bound an unplanned gap must stay within, and whether it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundReport {
    /// `fall × interval + interval`, ms.
    pub bound_ms: f64,
    /// How it was computed, e.g. `2 × 200ms + 200ms`.
    pub formula: String,
    /// The longest gap (no successful answer), ms.
    pub gap_ms: f64,
    /// Whether the gap is within the bound.
    pub gap_within: bool,
    /// From the disruption's start to the load balancer showing the server DOWN, ms.
    pub detection_ms: Option<f64>,
    /// From the first to the last failed request of the disruption, ms
    /// (how long clients saw failures at all).
    pub failure_span_ms: Option<f64>,
}

/// Everything the drill measured. Stable JSON (`schema` names the version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// The node disrupted.
    pub node: String,
    /// The drill's mode.
    pub mode: String,
    /// Where the traffic went.
    pub endpoint: String,
    /// The path read.
    pub path: String,
    /// Requests per second.
    pub rate: f64,
    /// `fresh` or `keep-alive`.
    pub connections: Connections,
    /// Each request's deadline, ms.
    pub timeout_ms: f64,
    /// Wall-clock time of the traffic's start (the `*Ms` fields' zero).
    pub started_at: jiff::Timestamp,
    /// How long the traffic ran, ms.
    pub duration_ms: f64,
    /// The disruption.
    pub disruption: DisruptionReport,
    /// The load balancer, when watched.
    pub lb: Option<LbReport>,
    /// The whole run.
    pub total: Stats,
    /// Before the disruption.
    pub before: Stats,
    /// From the disruption's start to its end.
    pub during: Stats,
    /// After it.
    pub after: Stats,
    /// The longest stretch with no successful answer (whole run).
    pub longest_gap: Gap,
    /// The bound for an unplanned gap (with a load balancer).
    pub bound: Option<BoundReport>,
    /// Every request.
    pub requests: Vec<Sample>,
    /// A planned disruption's own account (its steps, etcd leadership, the
    /// lock); absent for the unplanned modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedReport>,
}

/// What a planned disruption (`hacli disrupt`'s plan, run during the
/// drill) did: its outcome, its steps on the drill's time axis, where etcd
/// leadership went, who held the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedReport {
    /// `done`, `denied` (gate or lock: nothing was touched) or `failed`
    /// (a step failed and its phase was rolled back, or the run stopped).
    pub result: String,
    /// One line for people (the disruption report's summary).
    pub summary: String,
    /// The disruption report as `hacli disrupt -o json` prints it.
    pub report: Option<serde_json::Value>,
    /// The journal (resume with `hacli disrupt ... --resume --journal`).
    pub journal: String,
    /// The lock holder identity the disruption ran under.
    pub lock_holder: String,
    /// Whether the lock was released afterwards.
    pub lock_released: Option<bool>,
    /// etcd leadership.
    pub leadership: PlannedLeadership,
    /// Every step the journal recorded, in plan order.
    pub steps: Vec<PlannedStep>,
}

/// Where etcd leadership was, and where it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedLeadership {
    /// The leader observed before the disruption.
    pub before: Option<String>,
    /// The member the plan would move leadership to (observed before).
    pub expected_to: Option<String>,
    /// Whether the move-leader step moved it (false: not needed, or not reached).
    pub moved: bool,
    /// When the move-leader step was done, ms since the traffic started.
    pub moved_at_ms: Option<f64>,
    /// The leader observed right after the move-leader step was done.
    pub after_move: Option<String>,
    /// The leader observed after the disruption.
    pub after: Option<String>,
    /// What could not be observed, if anything.
    pub error: Option<String>,
}

/// One step of the planned disruption, from its journal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// Step id (`reboot/m1/move-leader`).
    pub id: String,
    /// When it started, ms since the traffic started.
    pub started_ms: Option<f64>,
    /// When it was done.
    pub done_ms: Option<f64>,
    /// It was already in place: nothing was done.
    pub skipped: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Its effect was undone.
    pub rolled_back: bool,
}

/// A status text that means "not routed to": DOWN (with or without
/// progress), MAINT, DRAIN (no new connections).
fn is_down(status: &str) -> bool {
    status.starts_with("DOWN") || status.starts_with("MAINT") || status.starts_with("DRAIN")
}

/// Whether a status text means "in rotation" (`UP`).
pub fn is_up(status: &str) -> bool {
    status == "UP"
}

/// The load balancer's view of the node's server while the drill runs:
/// polled every [`LbWatcher::poll`], each status change recorded with its
/// time since the traffic started.
#[derive(Debug)]
pub struct LbWatcher {
    lb: LbWatch,
    poll: Duration,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<LbTransition>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LbWatcher {
    /// Start polling (within a tokio runtime): several polls per check
    /// interval, so a change is seen within a fraction of it.
    pub fn start(lb: LbWatch, started: Instant) -> LbWatcher {
        let poll = (lb.interval / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = watch_lb(lb.clone(), started, poll, stop.clone(), seen.clone());
        LbWatcher {
            lb,
            poll,
            stop,
            seen,
            task,
        }
    }

    /// How often the server is polled.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// The last status seen.
    pub fn last_status(&self) -> Option<String> {
        last_status(&self.seen)
    }

    /// When the server was first seen out of rotation at or after
    /// `from_ms`, and UP again after that.
    pub fn down_up(&self, from_ms: f64) -> (Option<f64>, Option<f64>) {
        down_up(
            &self.seen.lock().unwrap_or_else(|p| p.into_inner()),
            from_ms,
        )
    }

    /// Stop polling (the poll under way may still record its answer).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stop polling; the load balancer's part of the report.
    pub async fn finish(self, from_ms: f64) -> LbReport {
        self.stop();
        let _ = self.task.await;
        let transitions = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (down_ms, up_ms) = down_up(&transitions, from_ms);
        LbReport {
            runtime_api: self.lb.api.to_string(),
            pool: self.lb.pool.clone(),
            server: self.lb.server.clone(),
            poll_ms: ms(self.poll),
            fall: self.lb.fall,
            interval_ms: ms(self.lb.interval),
            transitions,
            down_ms,
            up_ms,
        }
    }
}

/// Poll the node's server until stopped, recording status changes.
fn watch_lb(
    lb: LbWatch,
    started: Instant,
    poll: Duration,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<LbTransition>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = RuntimeClient::new(lb.api.clone());
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let t = Instant::now();
            let status = match client
                .server(
                    &lb.pool,
                    &lb.server,
                    t + poll.max(Duration::from_millis(500)),
                )
                .await
            {
                Ok(s) => s.status_text,
                Err(e) => format!("unknown: {e}"),
            };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.last().map(|l| &l.status) != Some(&status) {
                seen.push(LbTransition {
                    at_ms: ms(t - started),
                    status,
                });
            }
        }
    })
}

fn last_status(seen: &std::sync::Mutex<Vec<LbTransition>>) -> Option<String> {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .last()
        .map(|t| t.status.clone())
}

/// Start the drill's traffic (within a tokio runtime): `kube`'s
/// credentials and CA, to `endpoint` (the control-plane endpoint).
pub fn start_traffic(
    kube: kube::Config,
    endpoint: &str,
    traffic: TrafficConfig,
) -> Result<Traffic, crate::Error> {
    let mut kube = kube;
    kube.cluster_url =
        endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| crate::Error::BadUrl {
                what: "control-plane endpoint",
                url: endpoint.to_string(),
                reason: e.to_string(),
            })?;
    Traffic::start(kube, traffic)
}

/// When the server was first seen DOWN at or after `from_ms`, and first UP
/// after that.
pub fn down_up(seen: &[LbTransition], from_ms: f64) -> (Option<f64>, Option<f64>) {
    let down = seen
        .iter()
        .find(|t| t.at_ms >= from_ms && is_down(&t.status))
        .map(|t| t.at_ms);
    let up = down.and_then(|d| {
        seen.iter()
            .find(|t| t.at_ms > d && is_up(&t.status))
            .map(|t| t.at_ms)
    });
    (down, up)
}

/// Put the measurements together (pure: the tests call it with made-up samples).
pub fn report(
    cfg: &DrillConfig,
    started_at: jiff::Timestamp,
    end_ms: f64,
    disruption: DisruptionReport,
    lb: Option<LbReport>,
    requests: Vec<Sample>,
) -> DrillReport {
    let (d0, d1) = (
        disruption.start_ms,
        disruption.end_ms.max(disruption.start_ms),
    );
    let longest = longest_gap(&requests, 0.0, end_ms);
    let during = Stats::of(&requests, d0, d1);
    let bound = cfg.lb.as_ref().map(|l| {
        let failures: Vec<f64> = requests
            .iter()
            .filter(|s| !s.outcome.is_ok() && s.at_ms >= d0 && s.at_ms < end_ms)
            .map(|s| s.at_ms)
            .collect();
        let failure_span_ms = match (failures.first(), failures.last()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        BoundReport {
            bound_ms: ms(l.bound()),
            formula: format!(
                "{} × {}ms + {}ms",
                l.fall,
                l.interval.as_millis(),
                l.interval.as_millis()
            ),
            gap_ms: longest.ms,
            gap_within: longest.ms <= ms(l.bound()),
            detection_ms: lb.as_ref().and_then(|r| r.down_ms).map(|d| d - d0),
            failure_span_ms,
        }
    });
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in requests.iter().filter(|s| !s.outcome.is_ok()) {
        *errors.entry(s.outcome.label()).or_insert(0) += 1;
    }
    DrillReport {
        schema: SCHEMA.into(),
        node: cfg.node.clone(),
        mode: cfg.mode.clone(),
        endpoint: cfg.endpoint.clone(),
        path: cfg.traffic.path.clone(),
        rate: cfg.traffic.rate,
        connections: cfg.traffic.connections,
        timeout_ms: ms(cfg.traffic.timeout),
        started_at,
        duration_ms: end_ms,
        total: Stats::of(&requests, 0.0, f64::INFINITY),
        before: Stats::of(&requests, 0.0, d0),
        during,
        after: Stats::of(&requests, d1, f64::INFINITY),
        longest_gap: longest,
        bound,
        disruption,
        lb,
        requests,
        planned: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Outcome;

    fn cfg(lb: bool) -> DrillConfig {
        DrillConfig {
            node: "m1".into(),
            mode: "unplanned-poweroff".into(),
            endpoint: "https://10.0.0.100:6443".into(),
            traffic: TrafficConfig {
                rate: 10.0,
                path: "/api/v1/namespaces/kube-system".into(),
                timeout: Duration::from_secs(2),
                connections: Connections::Fresh,
            },
            duration: Duration::from_secs(10),
            baseline: Duration::from_secs(3),
            down_for: Duration::from_secs(2),
            after: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(60),
            lb: lb.then(|| LbWatch {
                api: "tcp:127.0.0.1:9999".parse().unwrap(),
                pool: "k8s".into(),
                server: "m1".into(),
                fall: 2,
                interval: Duration::from_millis(200),
            }),
        }
    }

    fn t(at: f64, s: &str) -> LbTransition {
        LbTransition {
            at_ms: at,
            status: s.into(),
        }
    }

    #[test]
    fn down_and_up_are_the_first_after_the_disruption() {
        let seen = vec![
            t(0.0, "UP"),
            t(100.0, "DOWN"),
            t(150.0, "UP"),
            t(3000.0, "UP 1/2"),
            t(3200.0, "DOWN"),
            t(5000.0, "DOWN 1/2"),
            t(5400.0, "UP"),
        ];
        assert_eq!(down_up(&seen, 3000.0), (Some(3200.0), Some(5400.0)));
        assert_eq!(down_up(&seen[..5], 3000.0), (Some(3200.0), None));
        assert_eq!(down_up(&seen[..3], 1000.0), (None, None));
        // A planned disruption drains the server first: out of rotation.
        let planned = vec![t(0.0, "UP"), t(6000.0, "DRAIN"), t(42500.0, "UP")];
        assert_eq!(down_up(&planned, 5000.0), (Some(6000.0), Some(42500.0)));
    }

    #[test]
    fn the_report_splits_before_during_after_and_checks_the_bound() {
        // 10 req/s for 10 s; the node dies at 3 s, two requests in three
        // fail until 3.5 s; the LB marks it DOWN at 3.45 s and UP at 6 s.
        let mut requests = Vec::new();
        for i in 0..100 {
            let at = f64::from(i) * 100.0;
            let failed = (3000.0..3500.0).contains(&at) && i % 3 != 0;
            requests.push(Sample {
                at_ms: at,
                latency_ms: if at < 3000.0 { 5.0 } else { 7.0 },
                outcome: if failed {
                    Outcome::Error {
                        kind: "refused".into(),
                        detail: "x".into(),
                    }
                } else {
                    Outcome::Ok { status: 200 }
                },
            });
        }
        let disruption = DisruptionReport {
            action: "power off".into(),
            start_ms: 3000.0,
            done_ms: Some(3010.0),
            restore_ms: Some(5000.0),
            restored_ms: Some(5010.0),
            end_ms: 6000.0,
            error: None,
        };
        let lb = LbReport {
            runtime_api: "tcp:127.0.0.1:9999".into(),
            pool: "k8s".into(),
            server: "m1".into(),
            poll_ms: 50.0,
            fall: 2,
            interval_ms: 200.0,
            transitions: vec![t(0.0, "UP"), t(3450.0, "DOWN"), t(6000.0, "UP")],
            down_ms: Some(3450.0),
            up_ms: Some(6000.0),
        };
        let r = report(
            &cfg(true),
            jiff::Timestamp::UNIX_EPOCH,
            10000.0,
            disruption,
            Some(lb),
            requests,
        );
        assert_eq!(r.total.sent, 100);
        assert_eq!((r.before.sent, r.before.failed), (30, 0));
        assert_eq!((r.during.sent, r.during.failed), (30, 3));
        assert_eq!((r.after.sent, r.after.failed), (40, 0));
        assert_eq!(r.before.p50_ms, Some(5.0));
        assert_eq!(r.during.p99_ms, Some(7.0));
        // 3.0 ok, 3.1 and 3.2 fail, 3.3 ok: the gap is 300 ms.
        assert_eq!(r.longest_gap.ms, 300.0);
        let b = r.bound.as_ref().unwrap();
        assert_eq!(b.bound_ms, 600.0);
        assert!(b.gap_within);
        assert_eq!(b.detection_ms, Some(450.0));
        assert_eq!(b.failure_span_ms, Some(300.0));
        assert_eq!(r.total.errors.get("refused"), Some(&3));
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "schema",
            "node",
            "mode",
            "endpoint",
            "rate",
            "connections",
            "startedAt",
            "disruption",
            "lb",
            "total",
            "before",
            "during",
            "after",
            "longestGap",
            "bound",
            "requests",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["connections"], "fresh");
    }

    #[test]
    fn a_gap_longer_than_the_bound_is_reported_outside_it() {
        let requests: Vec<Sample> = (0..20)
            .map(|i| Sample {
                at_ms: f64::from(i) * 100.0,
                latency_ms: 1.0,
                outcome: if (5..15).contains(&i) {
                    Outcome::Timeout
                } else {
                    Outcome::Ok { status: 200 }
                },
            })
            .collect();
        let d = DisruptionReport {
            action: "kill".into(),
            start_ms: 500.0,
            done_ms: Some(500.0),
            restore_ms: None,
            restored_ms: None,
            end_ms: 1500.0,
            error: None,
        };
        let r = report(
            &cfg(true),
            jiff::Timestamp::UNIX_EPOCH,
            2000.0,
            d,
            None,
            requests,
        );
        let b = r.bound.unwrap();
        assert_eq!(b.gap_ms, 1100.0);
        assert!(!b.gap_within);
        assert_eq!(b.detection_ms, None);
        let r = report(
            &cfg(false),
            jiff::Timestamp::UNIX_EPOCH,
            2000.0,
            r.disruption,
            None,
            r.requests,
        );
        assert!(r.bound.is_none());
    }
}
