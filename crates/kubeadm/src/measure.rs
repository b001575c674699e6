//! Availability while a plan runs (`hacli apply --measure`): the drill's
//! traffic engine ([`crate::traffic`]) sends steady reads for the whole
//! run, to the master directly until the cut-over begins and through the
//! VIP from then on ([`Measure::via_vip`]); every failure and every gap
//! is put on the step that was running when the request was due, and each
//! step's measured outage is compared with the outage the plan declared
//! for it ([`StepMeasure::within_declared`]). The target is zero failed
//! requests from the first step to the last.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::traffic::{Sample, Stats, Traffic, TrafficConfig, longest_gap, ms};

/// A step as the executor announced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepMark {
    /// Step id.
    pub id: String,
    /// When it began, ms since the traffic started.
    pub from_ms: f64,
    /// The outage the plan declares for it, ms (None: none declared).
    pub declared_ms: Option<f64>,
    /// What the plan says is unavailable.
    pub declared_what: Option<String>,
}

/// What one step cost the API's clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepMeasure {
    /// Step id.
    pub id: String,
    /// Where the traffic went while it ran.
    pub via: String,
    /// Requests due while it ran, and their latency.
    pub stats: Stats,
    /// The longest stretch with no successful answer inside it, ms (one
    /// request period when nothing failed).
    pub longest_gap_ms: f64,
    /// The outage the plan declares, ms.
    pub declared_ms: Option<f64>,
    /// What the plan says is unavailable.
    pub declared_what: Option<String>,
    /// No failure where none was declared, or a gap no longer than the
    /// declared outage.
    pub within_declared: bool,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasureReport {
    /// `hacli.measure/v1`.
    pub schema: String,
    /// The master's URL before the cut-over.
    pub direct: String,
    /// The VIP's URL from the cut-over on.
    pub vip: String,
    /// When the traffic moved to the VIP, ms (None: never).
    pub via_vip_ms: Option<f64>,
    /// Requests per second.
    pub rate: f64,
    /// Wall-clock time of the `*Ms` fields' zero.
    pub started_at: jiff::Timestamp,
    /// From the first step to the end of the run.
    pub total: Stats,
    /// The longest gap of the run, ms.
    pub longest_gap_ms: f64,
    /// Per step, in order.
    pub steps: Vec<StepMeasure>,
    /// Every request.
    pub requests: Vec<Sample>,
}

impl MeasureReport {
    /// Whether every step stayed within its declared outage.
    pub fn within_declared(&self) -> bool {
        self.steps.iter().all(|s| s.within_declared)
    }
}

/// Put every request on the step that was running when it was due. Steps
/// end where the next begins; the last at `end_ms`. Requests due before
/// the first step are not counted (the traffic's warm-up).
pub fn attribute(
    samples: &[Sample],
    marks: &[StepMark],
    via_vip_ms: Option<f64>,
    end_ms: f64,
) -> Vec<StepMeasure> {
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let to = marks.get(i + 1).map(|n| n.from_ms).unwrap_or(end_ms);
            let stats = Stats::of(samples, m.from_ms, to);
            let gap = longest_gap(samples, m.from_ms, to).ms;
            let within_declared = match m.declared_ms {
                Some(d) => gap <= d,
                None => stats.failed == 0,
            };
            StepMeasure {
                id: m.id.clone(),
                via: if via_vip_ms.is_some_and(|v| v <= m.from_ms) {
                    "vip".into()
                } else {
                    "direct".into()
                },
                stats,
                longest_gap_ms: gap,
                declared_ms: m.declared_ms,
                declared_what: m.declared_what.clone(),
                within_declared,
            }
        })
        .collect()
}

/// Steady reads during a run; mark the steps as they begin.
pub struct Measure {
    rt: tokio::runtime::Runtime,
    traffic: Traffic,
    direct: String,
    vip: String,
    via_vip_ms: Option<f64>,
    rate: f64,
    marks: Vec<StepMark>,
}

impl std::fmt::Debug for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measure")
            .field("direct", &self.direct)
            .field("vip", &self.vip)
            .finish_non_exhaustive()
    }
}

fn parse(what: &'static str, url: &str) -> Result<http::Uri, crate::Error> {
    url.parse()
        .map_err(|e: http::uri::InvalidUri| crate::Error::BadUrl {
            what,
            url: url.to_string(),
            reason: e.to_string(),
        })
}

impl Measure {
    /// Start the traffic to `direct` (the master) on a runtime of its own
    /// (the caller may block: the executor is synchronous), with `kube`'s
    /// credentials and CA.
    pub fn start(
        kube: kube::Config,
        direct: &str,
        vip: &str,
        traffic: TrafficConfig,
    ) -> Result<Measure, crate::Error> {
        let mut kube = kube;
        kube.cluster_url = parse("the master's URL", direct)?;
        parse("the VIP's URL", vip)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("measure")
            .enable_all()
            .build()
            .map_err(|e| crate::Error::BadUrl {
                what: "measuring runtime",
                url: String::new(),
                reason: e.to_string(),
            })?;
        let rate = traffic.rate;
        let traffic = {
            let _g = rt.enter();
            Traffic::start(kube, traffic)?
        };
        Ok(Measure {
            rt,
            traffic,
            direct: direct.into(),
            vip: vip.into(),
            via_vip_ms: None,
            rate,
            marks: Vec::new(),
        })
    }

    /// A step begins now.
    pub fn step(&mut self, id: &str, declared: Option<(Duration, String)>) {
        let (declared_ms, declared_what) = match declared {
            Some((d, w)) => (Some(ms(d)), Some(w)),
            None => (None, None),
        };
        self.marks.push(StepMark {
            id: id.into(),
            from_ms: self.traffic.now_ms(),
            declared_ms,
            declared_what,
        });
    }

    /// From now on, send through the VIP (once).
    pub fn via_vip(&mut self) {
        if self.via_vip_ms.is_none() {
            if let Ok(u) = self.vip.parse() {
                self.traffic.retarget(u);
                self.via_vip_ms = Some(self.traffic.now_ms());
            }
        }
    }

    /// Stop (waiting for the requests in flight) and report.
    pub fn finish(self) -> MeasureReport {
        let end_ms = self.traffic.now_ms();
        let started_at = self.traffic.started_at();
        let requests = self.rt.block_on(self.traffic.stop());
        let from = self.marks.first().map(|m| m.from_ms).unwrap_or(end_ms);
        let steps = attribute(&requests, &self.marks, self.via_vip_ms, end_ms);
        MeasureReport {
            schema: "hacli.measure/v1".into(),
            direct: self.direct,
            vip: self.vip,
            via_vip_ms: self.via_vip_ms,
            rate: self.rate,
            started_at,
            total: Stats::of(&requests, from, end_ms),
            longest_gap_ms: longest_gap(&requests, from, end_ms).ms,
            steps,
            requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Connections, Outcome};

    fn mark(id: &str, from: f64, declared: Option<f64>) -> StepMark {
        StepMark {
            id: id.into(),
            from_ms: from,
            declared_ms: declared,
            declared_what: declared.map(|_| "the API".into()),
        }
    }

    #[test]
    fn failures_and_gaps_go_to_the_running_step() {
        // 10 req/s; step b (no outage declared) loses 0.3 s; step c
        // declares 1 s and loses 0.5 s.
        let samples: Vec<Sample> = (0..60)
            .map(|i| {
                let at = f64::from(i) * 100.0;
                let failed = (1200.0..1500.0).contains(&at) || (3000.0..3500.0).contains(&at);
                Sample {
                    at_ms: at,
                    latency_ms: 2.0,
                    outcome: if failed {
                        Outcome::Timeout
                    } else {
                        Outcome::Ok { status: 200 }
                    },
                }
            })
            .collect();
        let marks = [
            mark("a", 0.0, None),
            mark("b", 1000.0, None),
            mark("c", 2500.0, Some(1000.0)),
            mark("d", 4000.0, None),
        ];
        let m = attribute(&samples, &marks, Some(2500.0), 6000.0);
        let got: Vec<(&str, usize, usize, f64, bool, &str)> = m
            .iter()
            .map(|s| {
                (
                    s.id.as_str(),
                    s.stats.sent,
                    s.stats.failed,
                    s.longest_gap_ms,
                    s.within_declared,
                    s.via.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 10, 0, 100.0, true, "direct"),
                ("b", 15, 3, 400.0, false, "direct"),
                ("c", 15, 5, 600.0, true, "vip"),
                ("d", 20, 0, 100.0, true, "vip"),
            ]
        );
    }

    #[test]
    fn the_traffic_moves_to_the_vip_at_the_cut_over() {
        // Two apiserver stand-ins: "the master" on 127.0.0.1 and "the VIP"
        // on 127.0.0.2. After the move the master is killed: any request
        // still sent to it would fail.
        let ca = testlab::pki::Authority::new("measure CA").unwrap();
        let ips: Vec<std::net::IpAddr> = vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()];
        let pair = ca
            .issue_server("kube-apiserver", &["localhost"], &ips)
            .unwrap();
        let lab = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let api = testlab::apiserver::ApiServer::start(
            &lab,
            &ips,
            &pair,
            "tok",
            testlab::apiserver::Store::default(),
        )
        .unwrap();
        api.store
            .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}))
            .unwrap();
        let direct = format!("https://127.0.0.1:{}", api.port);
        let vip = format!("https://127.0.0.2:{}", api.port);
        let mut kube = kube::Config::new(direct.parse().unwrap());
        kube.root_cert = Some(vec![
            rustls::pki_types::pem::PemObject::from_pem_slice(ca.cert_pem().as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
                .unwrap(),
        ]);
        kube.auth_info.token = Some("tok".to_string().into());
        let mut m = Measure::start(
            kube,
            &direct,
            &vip,
            TrafficConfig {
                rate: 50.0,
                path: "/api/v1/namespaces/kube-system".into(),
                timeout: Duration::from_secs(2),
                connections: Connections::Fresh,
            },
        )
        .unwrap();
        m.step("preflight", None);
        std::thread::sleep(Duration::from_millis(600));
        m.via_vip();
        m.step("cutover/kubelet/m1", None);
        // Longer than a request's deadline: what went to the master is over.
        std::thread::sleep(Duration::from_millis(2200));
        {
            let _g = lab.enter();
            api.kill(ips[0]);
        }
        m.step("verify", None);
        std::thread::sleep(Duration::from_millis(600));
        let r = m.finish();
        assert!(r.total.sent >= 50, "{:?}", r.total);
        assert_eq!(r.total.failed, 0, "{:?}", r.total.errors);
        assert!(r.within_declared());
        let via: Vec<&str> = r.steps.iter().map(|s| s.via.as_str()).collect();
        assert_eq!(via, ["direct", "vip", "vip"]);
        assert!(r.steps.iter().all(|s| s.stats.sent > 0));
    }
}
