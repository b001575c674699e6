//! etcd's disk latency and churn, from each member's `/metrics` (the
//! Prometheus text exposition etcd serves on its client URLs, read with
//! the etcd client certificate): the WAL fsync and backend commit
//! histograms' p99, slow applies and leader changes, as their increase
//! between two reads a window apart (or, with a window of 0, the
//! histograms since each member started).
//!
//! The first read of a long-lived observer (a roll, the sentinel) is kept:
//! a later observation at least a window after it reads once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hacore::state::{EtcdLatency, EtcdState, MemberLatency};
use prometheus_parse::{Scrape, Value};
use tokio::time::Instant;

/// WAL fsync latency histogram.
pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// Backend commit latency histogram.
pub const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds";
/// Slow applies counter.
pub const SLOW_APPLY: &str = "etcd_server_slow_apply_total";
/// Leader changes counter.
pub const LEADER_CHANGES: &str = "etcd_server_leader_changes_seen_total";

/// One read of one member's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// WAL fsync buckets: (upper bound, cumulative count).
    pub wal: Vec<(f64, f64)>,
    /// Backend commit buckets.
    pub commit: Vec<(f64, f64)>,
    /// Slow applies so far.
    pub slow_applies: Option<f64>,
    /// Leader changes so far.
    pub leader_changes: Option<f64>,
}

/// Parse etcd's `/metrics` text. An error names what is missing.
pub fn parse(text: &str) -> Result<Sample, String> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok::<_, std::io::Error>(l.to_string())))
        .map_err(|e| format!("not Prometheus text: {e}"))?;
    let mut s = Sample::default();
    for sample in &scrape.samples {
        match (sample.metric.as_str(), &sample.value) {
            (WAL_FSYNC, Value::Histogram(h)) => {
                s.wal = h.iter().map(|b| (b.less_than, b.count)).collect()
            }
            (BACKEND_COMMIT, Value::Histogram(h)) => {
                s.commit = h.iter().map(|b| (b.less_than, b.count)).collect()
            }
            (SLOW_APPLY, Value::Counter(v) | Value::Untyped(v)) => s.slow_applies = Some(*v),
            (LEADER_CHANGES, Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v)) => {
                s.leader_changes = Some(*v)
            }
            _ => {}
        }
    }
    for (name, h) in [(WAL_FSYNC, &s.wal), (BACKEND_COMMIT, &s.commit)] {
        if h.is_empty() {
            return Err(format!("no {name} histogram in the metrics"));
        }
    }
    for b in [&mut s.wal, &mut s.commit] {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    Ok(s)
}

/// The q-quantile of cumulative buckets, as Prometheus's
/// `histogram_quantile` computes it (linear within the bucket; the highest
/// finite bound when it falls in `+Inf`); None with no observation.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// Bucket counts of `now` less `then` (a member restarted in between:
/// `now` alone).
fn delta(now: &[(f64, f64)], then: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let same = now.len() == then.len() && now.iter().zip(then).all(|(a, b)| a.0 == b.0);
    if !same || now.iter().zip(then).any(|(a, b)| a.1 < b.1) {
        return now.to_vec();
    }
    now.iter()
        .zip(then)
        .map(|(a, b)| (a.0, a.1 - b.1))
        .collect()
}

fn micros(seconds: f64) -> u64 {
    (seconds * 1e6).round().max(0.0) as u64
}

/// One member's figures from two reads (`then` None: one read, the
/// histograms since the member started).
pub fn figures(name: &str, endpoint: &str, now: &Sample, then: Option<&Sample>) -> MemberLatency {
    let (wal, commit) = match then {
        Some(t) => (delta(&now.wal, &t.wal), delta(&now.commit, &t.commit)),
        None => (now.wal.clone(), now.commit.clone()),
    };
    let increase = |n: Option<f64>, t: Option<f64>| match (n, t) {
        (Some(n), Some(t)) if n >= t => Some((n - t).round() as u64),
        (Some(n), Some(_)) => Some(n.round() as u64),
        _ => None,
    };
    let (slow_applies, leader_changes) = match then {
        Some(t) => (
            increase(now.slow_applies, t.slow_applies),
            increase(now.leader_changes, t.leader_changes),
        ),
        None => (None, None),
    };
    MemberLatency {
        name: name.to_string(),
        endpoint: endpoint.to_string(),
        error: None,
        wal_fsync_p99_micros: quantile(0.99, &wal).map(micros),
        backend_commit_p99_micros: quantile(0.99, &commit).map(micros),
        wal_fsyncs: wal.last().map(|b| b.1.round() as u64),
        slow_applies,
        leader_changes,
    }
}

/// The reads an observer keeps between observations, by endpoint.
#[derive(Debug, Default)]
pub struct Kept(Mutex<BTreeMap<String, (Instant, Sample)>>);

impl Kept {
    /// Forget every kept read: the next observation reads twice, a whole
    /// window apart.
    pub fn forget(&self) {
        if let Ok(mut k) = self.0.lock() {
            k.clear();
        }
    }

    /// How many reads are kept.
    pub fn len(&self) -> usize {
        self.0.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether no read is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `/metrics` of the etcd members over HTTPS with the etcd client
/// certificate.
#[derive(Debug, Clone)]
pub struct MetricsReader {
    http: reqwest::Client,
    timeout: Duration,
}

impl MetricsReader {
    /// A reader trusting only etcd's CA, presenting the client certificate
    /// (PEM `cert` and `key`), each read under `timeout`.
    pub fn new(ca: &[u8], cert: &[u8], key: &[u8], timeout: Duration) -> Result<Self, String> {
        let ca = reqwest::Certificate::from_pem(ca).map_err(|e| format!("etcd CA: {e}"))?;
        let id = reqwest::Identity::from_pem(&[cert, b"\n", key].concat())
            .map_err(|e| format!("etcd client certificate: {e}"))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(id)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("etcd metrics client: {e}"))?;
        Ok(MetricsReader { http, timeout })
    }

    /// One member's metrics, parsed.
    pub async fn read(&self, endpoint: &str) -> Result<Sample, String> {
        let url = format!("{}/metrics", endpoint.trim_end_matches('/'));
        let shown = crate::redact_url(&url).into_owned();
        let get = async {
            let r = self.http.get(&url).send().await?.error_for_status()?;
            r.text().await
        };
        let text = tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| format!("GET {shown}: no answer in {} ms", self.timeout.as_millis()))?
            .map_err(|e| {
                format!(
                    "GET {shown}: {}",
                    crate::redact_urls_in(&crate::observe::describe(&e))
                )
            })?;
        parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Every endpoint's figures over `window`: reads kept in `kept` at
    /// least a window old (and at most ten) stand for the first read.
    pub async fn observe(
        &self,
        endpoints: &[String],
        window: Duration,
        kept: &Kept,
    ) -> EtcdLatency {
        let now = Instant::now();
        let earlier: BTreeMap<String, (Instant, Sample)> = kept
            .0
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, (at, _))| {
                let age = now.duration_since(*at);
                age >= window && age <= window * 10
            })
            .collect();
        let reads = endpoints.iter().map(|u| async {
            let first = match earlier.get(u) {
                Some((at, s)) => Ok((*at, s.clone())),
                None if window.is_zero() => Ok((now, Sample::default())),
                None => self.read(u).await.map(|s| (Instant::now(), s)),
            };
            let first = match first {
                Ok(f) => f,
                Err(e) => return (u.clone(), Err(e)),
            };
            let wait = (first.0 + window).saturating_duration_since(Instant::now());
            tokio::time::sleep(wait).await;
            let second = self.read(u).await.map(|s| (Instant::now(), s));
            (u.clone(), second.map(|s| (first, s)))
        });
        let results = futures::future::join_all(reads).await;
        let mut members = Vec::new();
        let mut keep = BTreeMap::new();
        for (u, r) in results {
            members.push(match r {
                Ok(((_, then), (at, s))) => {
                    let m = figures(&u, &u, &s, (!window.is_zero()).then_some(&then));
                    keep.insert(u.clone(), (at, s));
                    m
                }
                Err(e) => MemberLatency {
                    error: Some(e),
                    ..figures(&u, &u, &Sample::default(), None)
                },
            });
        }
        if let Ok(mut k) = kept.0.lock() {
            k.extend(keep);
        }
        EtcdLatency {
            source: "metrics".into(),
            window: dur(window),
            members,
        }
    }
}

/// Every endpoint unread, for `why` (the metrics client could not be
/// made).
pub fn unreadable(endpoints: &[String], window: Duration, why: &str) -> EtcdLatency {
    EtcdLatency {
        source: "metrics".into(),
        window: dur(window),
        members: endpoints
            .iter()
            .map(|u| MemberLatency {
                error: Some(why.to_string()),
                ..figures(u, u, &Sample::default(), None)
            })
            .collect(),
    }
}

/// A duration as the state writes it.
pub fn dur(d: Duration) -> hacore::units::Dur {
    hacore::units::Dur(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO))
}

/// Name each endpoint's figures after the member whose client URL it is.
pub fn name_members(lat: &mut EtcdLatency, etcd: Option<&EtcdState>) {
    for m in &mut lat.members {
        if let Some(member) = etcd
            .into_iter()
            .flat_map(|e| &e.members)
            .find(|e| e.client_urls.iter().any(|c| same(c, &m.endpoint)))
            && !member.name.is_empty()
        {
            m.name = member.name.clone();
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(wal: [u64; 4], slow: u64) -> String {
        format!(
            "# HELP {WAL_FSYNC} x\n# TYPE {WAL_FSYNC} histogram\n\
             {WAL_FSYNC}_bucket{{le=\"0.001\"}} {}\n{WAL_FSYNC}_bucket{{le=\"0.008\"}} {}\n\
             {WAL_FSYNC}_bucket{{le=\"0.064\"}} {}\n{WAL_FSYNC}_bucket{{le=\"+Inf\"}} {}\n\
             {WAL_FSYNC}_sum 1\n{WAL_FSYNC}_count {}\n\
             # TYPE {BACKEND_COMMIT} histogram\n\
             {BACKEND_COMMIT}_bucket{{le=\"0.002\"}} 10\n{BACKEND_COMMIT}_bucket{{le=\"+Inf\"}} 10\n\
             # TYPE {SLOW_APPLY} counter\n{SLOW_APPLY} {slow}\n\
             # TYPE {LEADER_CHANGES} gauge\n{LEADER_CHANGES} 1\n",
            wal[0], wal[1], wal[2], wal[3], wal[3]
        )
    }

    #[test]
    fn p99_over_the_window_is_the_bucket_increase() {
        let then = parse(&text([100, 100, 100, 100], 0)).unwrap();
        // 100 slow fsyncs in the window, all between 8 and 64 ms.
        let now = parse(&text([100, 100, 200, 200], 2)).unwrap();
        let m = figures("m1", "https://e:2379", &now, Some(&then));
        assert_eq!(m.wal_fsyncs, Some(100));
        let p99 = m.wal_fsync_p99_micros.unwrap();
        assert!((63_000..=64_000).contains(&p99), "{p99}");
        assert_eq!(m.slow_applies, Some(2));
        assert_eq!(m.leader_changes, Some(0));
        // Since the member started, the fast fsyncs dominate the p99 too.
        let life = figures("m1", "e", &now, None);
        assert_eq!(life.wal_fsyncs, Some(200));
        assert_eq!(life.slow_applies, None);
    }

    #[test]
    fn no_fsync_in_the_window_has_no_p99() {
        let s = parse(&text([5, 5, 5, 5], 0)).unwrap();
        let m = figures("m1", "e", &s, Some(&s));
        assert_eq!(m.wal_fsyncs, Some(0));
        assert_eq!(m.wal_fsync_p99_micros, None);
    }

    #[test]
    fn metrics_without_the_histograms_are_an_error() {
        let e = parse("# TYPE foo counter\nfoo 1\n").unwrap_err();
        assert!(e.contains(WAL_FSYNC), "{e}");
    }

    #[test]
    fn quantile_follows_prometheus() {
        let b = [(0.001, 50.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(0.5, &b).unwrap() - 0.001).abs() < 1e-9);
        assert!((quantile(0.99, &b).unwrap() - 0.00198).abs() < 1e-9);
        let inf = [(0.001, 0.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.99, &inf), Some(0.001));
        assert_eq!(quantile(0.99, &[(0.001, 0.0)]), None);
    }
}
