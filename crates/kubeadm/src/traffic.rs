//! Constant-rate read traffic to the Kubernetes API, every request recorded.
//!
//! [`Traffic::start`] sends `GET PATH` (by default
//! `/api/v1/namespaces/kube-system`, a read served from etcd, as
//! `kubectl get ns kube-system` sends it) at a fixed rate to one API URL
//! (the drill points it at the control-plane endpoint, the VIP), with the
//! kubeconfig's credentials and CA: TLS verification stays on. Every
//! request has its own deadline and is recorded with when it started, how
//! long it took and how it ended ([`Outcome`]): `ok` (2xx), an HTTP status,
//! an error kind (`refused`, `reset`, `closed`, `tls`, ...) or `timeout`.
//!
//! Connections: by default every request opens a **fresh TCP and TLS
//! connection** (full handshake, no session resumption) and closes it, the
//! way each `kubectl` a pipeline runs does. Through a TCP-mode HAProxy
//! this is the honest measurement: the load balancer picks a server per
//! connection, so a dead backend costs exactly the connections HAProxy
//! still sends it. [`Connections::KeepAlive`] reuses one client (one
//! HTTP/2 connection when offered), as a long-running controller does: it
//! sees a failure only when its own connection's server goes away.
//!
//! The statistics ([`Stats`], [`longest_gap`], [`quantile`]) are pure
//! functions of the recorded samples.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connections {
    /// A new TCP + TLS connection per request, closed after it (a CLI).
    Fresh,
    /// One client for the whole run, its connection kept alive (a controller).
    KeepAlive,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// A 2xx answer.
    Ok {
        /// The HTTP status.
        status: u16,
    },
    /// An answer with another status (e.g. 503 while the apiserver shuts down).
    Http {
        /// The HTTP status.
        status: u16,
    },
    /// No answer: the connection or the exchange failed.
    Error {
        /// A short, stable kind: `refused`, `reset`, `closed`, `tls`,
        /// `unreachable`, `connect`, `other`.
        kind: String,
        /// The root cause's message (URLs without credentials).
        detail: String,
    },
    /// No answer before the request's deadline.
    Timeout,
}

impl Outcome {
    /// Whether the request succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// A short label for counts: `ok`, `http 503`, `refused`, `timeout`...
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok { .. } => "ok".into(),
            Outcome::Http { status } => format!("http {status}"),
            Outcome::Error { kind, .. } => kind.clone(),
            Outcome::Timeout => "timeout".into(),
        }
    }
}

/// One request. Its time and latency count from when it was scheduled
/// (`1/rate` after the previous one), not from when the client got round
/// to sending it, so a stall of the measuring process shows as latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When it was due to start, in milliseconds since the traffic started.
    pub at_ms: f64,
    /// From then until its answer (or failure), in milliseconds.
    pub latency_ms: f64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Requests per second (> 0).
    pub rate: f64,
    /// The path read, e.g. `/api/v1/namespaces/kube-system`.
    pub path: String,
    /// Each request's deadline (connect, TLS, answer and body).
    pub timeout: Duration,
    /// Fresh connections or one kept alive.
    pub connections: Connections,
}

/// Running traffic; [`Traffic::stop`] ends it and returns every sample.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    target: Arc<std::sync::RwLock<http::Uri>>,
    started: Instant,
    started_at: jiff::Timestamp,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// The TLS settings of `config` with no session resumption, so that a
/// fresh connection is a full handshake (none when `config` names a proxy).
fn fresh_tls(config: &kube::Config) -> Result<Option<rustls::ClientConfig>, crate::Error> {
    use kube::client::ConfigExt as _;
    let kube_error = |e| crate::Error::KubeConfig {
        path: None,
        source: Box::new(e),
    };
    Ok(if config.proxy_url.is_none() {
        let mut tls = config.rustls_client_config().map_err(kube_error)?;
        // A fresh connection is a full handshake, as a new kubectl
        // process makes: no session resumed from an earlier request.
        tls.resumption = rustls::client::Resumption::disabled();
        Some(tls)
    } else {
        None
    })
}

impl Traffic {
    /// Start sending to `config.cluster_url` (with its credentials and TLS
    /// settings) on the current Tokio runtime.
    pub fn start(config: kube::Config, t: TrafficConfig) -> Result<Traffic, crate::Error> {
        if !(t.rate.is_finite() && t.rate > 0.0) {
            return Err(crate::Error::BadUrl {
                what: "traffic rate",
                url: t.rate.to_string(),
                reason: "the rate must be a positive number of requests per second".into(),
            });
        }
        let tls = fresh_tls(&config)?;
        let keep_alive = t.connections == Connections::KeepAlive;
        let target = Arc::new(std::sync::RwLock::new(config.cluster_url.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let started_at = jiff::Timestamp::now();
        let period = Duration::from_secs_f64(1.0 / t.rate);
        let flag = stop.clone();
        let to = target.clone();
        let task = tokio::spawn(async move {
            let target = to;
            let mut shared: Option<(http::Uri, kube::Client)> = None;
            let mut tick = tokio::time::interval(period);
            // Constant rate, open loop: a late tick is sent at once, so slow
            // answers never lower the rate (they are what is measured).
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut running = tokio::task::JoinSet::new();
            let mut out = Vec::new();
            loop {
                // The scheduled send time: a request the client itself sent
                // late (a stalled runtime) counts its delay as latency
                // instead of leaving a hole in the timeline (no coordinated
                // omission).
                let t0 = tick.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let at_ms = ms(t0.saturating_duration_since(started));
                let url = target
                    .read()
                    .map(|u| u.clone())
                    .unwrap_or_else(|p| p.into_inner().clone());
                // Kept alive: one client per target (a new one after
                // [`Traffic::retarget`]); fresh: one per request.
                let client = match &shared {
                    Some((u, c)) if keep_alive && *u == url => Ok(c.clone()),
                    _ => {
                        let mut cfg = config.clone();
                        cfg.cluster_url = url.clone();
                        crate::client_and_version(cfg, tls.clone()).map(|c| c.0)
                    }
                };
                if keep_alive {
                    if let Ok(c) = &client {
                        shared = Some((url, c.clone()));
                    }
                }
                let (path, timeout) = (t.path.clone(), t.timeout);
                running.spawn(async move {
                    let outcome = match client {
                        Ok(c) => one(&c, &path, timeout).await,
                        Err(e) => Outcome::Error {
                            kind: "client".into(),
                            detail: crate::redact_urls_in(&e.to_string()).into_owned(),
                        },
                    };
                    Sample {
                        at_ms,
                        latency_ms: ms(t0.elapsed()),
                        outcome,
                    }
                });
                while let Some(done) = running.try_join_next() {
                    out.extend(done.ok());
                }
            }
            while let Some(done) = running.join_next().await {
                out.extend(done.ok());
            }
            out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
            out
        });
        Ok(Traffic {
            stop,
            target,
            started,
            started_at,
            task,
        })
    }

    /// Send the next requests to `url` (same credentials and CA).
    pub fn retarget(&self, url: http::Uri) {
        let mut t = self.target.write().unwrap_or_else(|p| p.into_inner());
        *t = url;
    }

    /// When the traffic started (the samples' zero).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The wall-clock time of the samples' zero.
    pub fn started_at(&self) -> jiff::Timestamp {
        self.started_at
    }

    /// Milliseconds since the traffic started.
    pub fn now_ms(&self) -> f64 {
        ms(self.started.elapsed())
    }

    /// Stop sending, wait for the requests in flight (each bounded by its
    /// deadline) and return every sample in start order.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Milliseconds, as a float rounded to the microsecond.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

async fn one(client: &kube::Client, path: &str, timeout: Duration) -> Outcome {
    let Ok(req) = http::Request::get(path).body(kube::client::Body::empty()) else {
        return Outcome::Error {
            kind: "other".into(),
            detail: format!("`{path}` is not a valid request path"),
        };
    };
    let exchange = async {
        let resp = client.send(req).await?;
        let status = resp.status().as_u16();
        // The whole answer counts: a body cut short is a failure.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok::<_, kube::Error>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(s)) if (200..300).contains(&s) => Outcome::Ok { status: s },
        Ok(Ok(s)) => Outcome::Http { status: s },
        Ok(Err(e)) => Outcome::Error {
            kind: error_kind(&e).into(),
            detail: crate::redact_urls_in(&crate::observe::describe(&e)).into_owned(),
        },
        Err(_) => Outcome::Timeout,
    }
}

/// A short, stable kind for a failed exchange, from its cause chain.
pub fn error_kind(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut kind = "other";
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // An io::Error wrapping another (a connector's `Other` around
            // the socket's error): its `source` skips the inner one.
            let mut io = io;
            while let Some(inner) = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<std::io::Error>())
            {
                io = inner;
            }
            kind = match io.kind() {
                K::ConnectionRefused => "refused",
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
                K::UnexpectedEof => "closed",
                K::TimedOut => "timeout",
                K::HostUnreachable | K::NetworkUnreachable => "unreachable",
                K::InvalidData => "tls",
                _ => kind,
            };
            if kind != "other" {
                return kind;
            }
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return "tls";
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                kind = "closed";
            }
        }
        if let Some(h) = cause.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() && kind == "other" {
                kind = "connect";
            }
        }
        next = cause.source();
    }
    kind
}

/// The longest stretch without a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// Its length in milliseconds.
    pub ms: f64,
    /// When it began: the start of the last success before it (or the window's start).
    pub from_ms: f64,
    /// When it ended: the start of the first success after it (or the window's end).
    pub to_ms: f64,
}

/// The longest stretch in `[from_ms, to_ms)` between the starts of two
/// consecutive successful requests (the window's edges count as
/// successes, so a window with no success is one gap). With no failure,
/// it is one request period; its resolution is one period.
pub fn longest_gap(samples: &[Sample], from_ms: f64, to_ms: f64) -> Gap {
    let mut last = from_ms;
    let mut best = Gap {
        ms: 0.0,
        from_ms,
        to_ms: from_ms,
    };
    let oks = samples
        .iter()
        .filter(|s| s.outcome.is_ok() && s.at_ms >= from_ms && s.at_ms < to_ms)
        .map(|s| s.at_ms)
        .chain(std::iter::once(to_ms));
    for at in oks {
        if at - last > best.ms {
            best = Gap {
                ms: at - last,
                from_ms: last,
                to_ms: at,
            };
        }
        last = at;
    }
    best
}

/// The `q` quantile (0..=1) of `values` by the nearest-rank method (the
/// smallest value with at least `q` of the values at or below it); None
/// when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Counts and latency of the requests that started in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Window start, ms since the traffic started.
    pub from_ms: f64,
    /// Window end (exclusive).
    pub to_ms: f64,
    /// Requests started in it.
    pub sent: usize,
    /// Of them, failed (anything but 2xx).
    pub failed: usize,
    /// Median latency of its successful requests, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of its successful requests, ms.
    pub p99_ms: Option<f64>,
    /// Failures by kind ([`Outcome::label`]).
    pub errors: BTreeMap<String, usize>,
}

impl Stats {
    /// The statistics of the samples that started in `[from_ms, to_ms)`.
    pub fn of(samples: &[Sample], from_ms: f64, to_ms: f64) -> Stats {
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
            .collect();
        let ok: Vec<f64> = inside
            .iter()
            .filter(|s| s.outcome.is_ok())
            .map(|s| s.latency_ms)
            .collect();
        let mut errors = BTreeMap::new();
        for s in inside.iter().filter(|s| !s.outcome.is_ok()) {
            *errors.entry(s.outcome.label()).or_insert(0) += 1;
        }
        Stats {
            from_ms,
            to_ms,
            sent: inside.len(),
            failed: inside.len() - ok.len(),
            p50_ms: quantile(&ok, 0.50),
            p99_ms: quantile(&ok, 0.99),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: f64, ok: bool) -> Sample {
        Sample {
            at_ms: at,
            latency_ms: at / 10.0 + 1.0,
            outcome: if ok {
                Outcome::Ok { status: 200 }
            } else {
                Outcome::Error {
                    kind: "refused".into(),
                    detail: "Connection refused".into(),
                }
            },
        }
    }

    #[test]
    fn the_longest_gap_runs_from_the_last_success_to_the_next() {
        let v = vec![
            s(0.0, true),
            s(10.0, true),
            s(20.0, false),
            s(30.0, false),
            s(40.0, true),
            s(50.0, true),
        ];
        let g = longest_gap(&v, 0.0, 60.0);
        assert_eq!((g.ms, g.from_ms, g.to_ms), (30.0, 10.0, 40.0));
        // No failure: one period (and the window's end counts).
        let g = longest_gap(&v[4..], 40.0, 60.0);
        assert_eq!(g.ms, 10.0);
        // A window with no success at all is one gap.
        let g = longest_gap(&v[2..4], 20.0, 35.0);
        assert_eq!((g.ms, g.from_ms, g.to_ms), (15.0, 20.0, 35.0));
        // Failures at the end count up to the window's end.
        let g = longest_gap(&v[..4], 0.0, 100.0);
        assert_eq!((g.ms, g.from_ms), (90.0, 10.0));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn stats_count_a_window_and_only_successes_set_latency() {
        let v = vec![s(0.0, true), s(10.0, false), s(20.0, true), s(30.0, false)];
        let st = Stats::of(&v, 5.0, 30.0);
        assert_eq!((st.sent, st.failed), (2, 1));
        assert_eq!(st.p50_ms, Some(3.0));
        assert_eq!(st.errors.get("refused"), Some(&1));
        let none = Stats::of(&v, 100.0, 200.0);
        assert_eq!((none.sent, none.p50_ms), (0, None));
    }

    #[test]
    fn samples_serialise_flat_with_their_result() {
        let v = serde_json::to_value(s(1.0, false)).unwrap();
        assert_eq!(v["result"], "error");
        assert_eq!(v["kind"], "refused");
        assert_eq!(v["atMs"], 1.0);
        let v = serde_json::to_value(Sample {
            at_ms: 2.0,
            latency_ms: 3.0,
            outcome: Outcome::Http { status: 503 },
        })
        .unwrap();
        assert_eq!(v["result"], "http");
        assert_eq!(v["status"], 503);
        assert_eq!(Outcome::Http { status: 503 }.label(), "http 503");
    }

    #[test]
    fn error_kinds_come_from_the_cause_chain() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(error_kind(&io), "refused");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(error_kind(&io), "reset");
        let e = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
        assert_eq!(error_kind(&e), "closed");
    }

    #[tokio::test]
    async fn refused_and_reset_connections_are_told_apart() {
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closing.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((c, _)) = closing.accept().await {
                drop(c);
            }
        });
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone_port = gone.local_addr().unwrap().port();
        drop(gone);
        for (port, want) in [(port, "reset"), (gone_port, "refused")] {
            let cfg = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
            let (c, _) = crate::client_and_version(cfg, None).unwrap();
            match one(&c, "/readyz", Duration::from_secs(5)).await {
                Outcome::Error { kind, detail } => assert_eq!(kind, want, "{detail}"),
                o => panic!("{o:?}"),
            }
        }
    }
}
