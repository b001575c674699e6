//! Constant TLS load: a new connection at a fixed rate, each a full TLS
//! handshake (verified against a CA) and one `GET PATH HTTP/1.0`, as a
//! client that reconnects for every request would send. Every attempt is
//! recorded (when it started, how long it took, how it ended), so a test
//! or a benchmark can count failures and find the longest stretch without
//! a successful answer while it changes something behind the address.
//!
//! Traffic goes only where the caller points it: tests point it at a lab
//! address (loopback or the lab's 198.18.0.0/15 network).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it started, since the load started.
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
    /// `None`: HTTP 200; otherwise what went wrong.
    pub error: Option<String>,
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every attempt, in start order.
    pub attempts: Vec<Attempt>,
}

impl Report {
    /// Requests sent.
    pub fn sent(&self) -> usize {
        self.attempts.len()
    }

    /// Requests that failed.
    pub fn failed(&self) -> usize {
        self.attempts.iter().filter(|a| a.error.is_some()).count()
    }

    /// Failures by kind (the error's first words).
    pub fn errors(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in self.attempts.iter().filter_map(|a| a.error.as_deref()) {
            *m.entry(e.to_string()).or_insert(0) += 1;
        }
        m
    }

    /// The longest time between two successful answers' starts (or the
    /// run's start and end), the "no API" gap.
    pub fn longest_gap(&self) -> Duration {
        let mut last = Duration::ZERO;
        let mut gap = Duration::ZERO;
        for a in &self.attempts {
            if a.error.is_none() {
                gap = gap.max(a.at.saturating_sub(last));
                last = a.at;
            }
        }
        if let Some(end) = self.attempts.last() {
            gap = gap.max(end.at.saturating_sub(last));
        }
        gap
    }

    /// Attempts that started in `[from, to)`, their times counted from
    /// `from` (so the window's gaps start at its own start).
    pub fn between(&self, from: Duration, to: Duration) -> Report {
        Report {
            attempts: self
                .attempts
                .iter()
                .filter(|a| a.at >= from && a.at < to)
                .map(|a| Attempt {
                    at: a.at - from,
                    ..a.clone()
                })
                .collect(),
        }
    }

    /// The `q` quantile (0..=1) of successful requests' latency.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        let mut v: Vec<Duration> = self
            .attempts
            .iter()
            .filter(|a| a.error.is_none())
            .map(|a| a.took)
            .collect();
        v.sort();
        if v.is_empty() {
            return None;
        }
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(v[i])
    }
}

/// A running load. Stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    task: tokio::task::JoinHandle<Vec<Attempt>>,
}

impl Load {
    /// Start `rate` connections per second to `addr` on `rt`, each
    /// verifying the server's certificate for `server_name` against
    /// `ca_pem`, each with `timeout`.
    pub fn start(
        rt: &tokio::runtime::Handle,
        addr: SocketAddr,
        server_name: &str,
        ca_pem: &str,
        path: &str,
        rate: u32,
        timeout: Duration,
    ) -> Result<Load, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let flag = stop.clone();
        let task = rt.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut running = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let at = started.elapsed();
                let (connector, name, request) = (connector.clone(), name.clone(), request.clone());
                running.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r =
                        tokio::time::timeout(timeout, once(connector, name, addr, request)).await;
                    let error = match r {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some("timeout".to_string()),
                    };
                    Attempt {
                        at,
                        took: t0.elapsed(),
                        error,
                    }
                }));
            }
            let mut out = Vec::with_capacity(running.len());
            for h in running {
                if let Ok(a) = h.await {
                    out.push(a);
                }
            }
            out
        });
        Ok(Load {
            stop,
            started,
            task,
        })
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stop sending, wait for the requests in flight, and report.
    pub fn stop(self, rt: &tokio::runtime::Handle) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut attempts = rt.block_on(self.task).unwrap_or_default();
        attempts.sort_by_key(|a| a.at);
        Report { attempts }
    }
}

async fn once(
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    addr: SocketAddr,
    request: Vec<u8>,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {}", e.kind()))?;
    tls.write_all(&request)
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut head = Vec::new();
    tls.read_to_end(&mut head)
        .await
        .or_else(|e| {
            // Servers may close without close_notify after HTTP/1.0.
            if e.kind() == std::io::ErrorKind::UnexpectedEof && !head.is_empty() {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .map_err(|e| format!("read: {}", e.kind()))?;
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    if line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("status: {}", line.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_counts_from_the_last_success() {
        let a = |ms: u64, ok: bool| Attempt {
            at: Duration::from_millis(ms),
            took: Duration::from_millis(1),
            error: (!ok).then(|| "x".into()),
        };
        let r = Report {
            attempts: vec![
                a(0, true),
                a(5, false),
                a(10, false),
                a(15, true),
                a(20, false),
            ],
        };
        assert_eq!(r.sent(), 5);
        assert_eq!(r.failed(), 3);
        assert_eq!(r.longest_gap(), Duration::from_millis(15));
        assert_eq!(
            r.between(Duration::from_millis(5), Duration::from_millis(15))
                .sent(),
            2
        );
    }
}
