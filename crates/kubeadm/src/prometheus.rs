//! Prometheus as the source of `etcd-latency` and `master-disk`: the
//! PromQL a user would write, asked of its HTTP API (`/api/v1/query`),
//! every request under a deadline, its certificate verified (the system's
//! roots, or only the CA file given).
//!
//! - etcd's figures, per `instance` over the window `W`:
//!   `histogram_quantile(0.99, sum by (instance, le)
//!   (rate(etcd_disk_wal_fsync_duration_seconds_bucket[W])))` (and the
//!   same for `etcd_disk_backend_commit_duration_seconds_bucket`),
//!   `increase(etcd_server_slow_apply_total[W])`,
//!   `increase(etcd_server_leader_changes_seen_total[W])`; a window of 0:
//!   the histograms since each member started. An instance is a member
//!   when it is the `host:port` of the member's client URL, else when it
//!   is the only instance on that host (etcd's metrics port, 2381).
//! - the masters' file systems from node-exporter:
//!   `node_filesystem_{size,free,avail}_bytes` of the mount points holding
//!   `/`, etcd's data directory and `/etc/kubernetes/tmp`, an instance
//!   being a master when its host is the master's address; etcd's database
//!   size from `etcd_mvcc_db_total_size_in_bytes`. kubeadm's backup
//!   directories are not visible to node-exporter: they are read over SSH.
//!
//! A member or master with no series is unknown, named; a Prometheus that
//! does not answer makes every figure unknown, naming its URL.

use std::collections::BTreeMap;
use std::time::Duration;

use hacore::masters::{Filesystem, MasterFiles, MastersState};
use hacore::state::{EtcdLatency, MemberLatency};
use serde::Deserialize;

use crate::etcd_latency::{BACKEND_COMMIT, LEADER_CHANGES, SLOW_APPLY, WAL_FSYNC};

/// etcd's database size gauge.
pub const DB_SIZE: &str = "etcd_mvcc_db_total_size_in_bytes";

/// The paths whose file systems `master-disk` judges.
fn disk_paths(data_dir: &str) -> [&str; 3] {
    ["/", data_dir, hacore::rules::master_disk::KUBEADM_TMP]
}

/// The answer of `/api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    #[serde(default)]
    result: Vec<Series>,
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Series {
    /// Its labels.
    pub metric: BTreeMap<String, String>,
    /// (evaluation time, the value as Prometheus writes it).
    pub value: (f64, String),
}

impl Series {
    /// A label's value, or "".
    pub fn label(&self, name: &str) -> &str {
        self.metric.get(name).map_or("", String::as_str)
    }

    /// The value; None for NaN (a quantile of no observation) or unparsable.
    pub fn number(&self) -> Option<f64> {
        self.value.1.parse::<f64>().ok().filter(|v| !v.is_nan())
    }
}

/// An instant query's answer, as series (a vector result only).
pub fn parse_answer(body: &str) -> Result<Vec<Series>, String> {
    let a: Answer =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if a.status != "success" {
        return Err(format!(
            "{}: {}",
            a.error_type.as_deref().unwrap_or("error"),
            a.error.as_deref().unwrap_or("no reason given")
        ));
    }
    let data = a.data.ok_or("a success without data")?;
    if data.result_type != "vector" {
        return Err(format!("a {} result, not a vector", data.result_type));
    }
    Ok(data.result)
}

/// Split `instance` (`host:port`, `[v6]:port`) into host and port.
fn split_instance(instance: &str) -> (&str, &str) {
    match instance.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (h.trim_start_matches('[').trim_end_matches(']'), p)
        }
        _ => (instance.trim_start_matches('[').trim_end_matches(']'), ""),
    }
}

/// A URL's host and port (the scheme's default port when none).
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some((host, u.port_or_known_default()?))
}

/// The instance among `instances` that is the member at `endpoint`:
/// its `host:port`, else the only instance on its host.
pub fn member_instance<'a>(endpoint: &str, instances: &[&'a str]) -> Option<&'a str> {
    let (host, port) = url_host_port(endpoint)?;
    let port = port.to_string();
    let split: Vec<(&str, (&str, &str))> =
        instances.iter().map(|i| (*i, split_instance(i))).collect();
    if let Some((i, _)) = split.iter().find(|(_, (h, p))| *h == host && *p == port) {
        return Some(i);
    }
    let mut on_host = split.iter().filter(|(_, (h, _))| *h == host);
    match (on_host.next(), on_host.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// One host's mount points as node-exporter reports them: (size, free,
/// available) bytes, a figure None when its series is missing.
pub type Mounts = BTreeMap<String, (Option<f64>, Option<f64>, Option<f64>)>;

/// The file systems holding `paths` among one host's node-exporter series
/// (mount point → (size, free, avail)): each path's longest mount point
/// prefix. None when a path has none.
pub fn filesystems(paths: &[&str], mounts: &Mounts) -> Result<Vec<Filesystem>, String> {
    let holds = |mount: &str, path: &str| {
        mount == "/"
            || path == mount
            || path
                .strip_prefix(mount)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    paths
        .iter()
        .map(|path| {
            let (mount, v) = mounts
                .iter()
                .filter(|(m, _)| holds(m, path))
                .max_by_key(|(m, _)| m.len())
                .ok_or_else(|| format!("no mount point holding {path}"))?;
            let (Some(size), Some(free), Some(avail)) = *v else {
                return Err(format!("{mount}'s size, free or available bytes missing"));
            };
            let b = |f: f64| f.max(0.0).round() as u64;
            Ok(Filesystem {
                path: path.to_string(),
                mount: mount.clone(),
                size_bytes: b(size),
                used_bytes: b(size - free),
                avail_bytes: b(avail),
            })
        })
        .collect()
}

/// A Prometheus's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl Prometheus {
    /// A client of the Prometheus at `url`, trusting only `ca` (PEM) when
    /// given (else the system's roots), each request under `timeout`.
    pub fn new(url: &str, ca: Option<&[u8]>, timeout: Duration) -> Result<Prometheus, String> {
        let shown = crate::redact_url(url).into_owned();
        reqwest::Url::parse(url).map_err(|e| format!("Prometheus URL {shown}: {e}"))?;
        let mut b = reqwest::Client::builder().use_rustls_tls().timeout(timeout);
        if let Some(ca) = ca {
            let ca = reqwest::Certificate::from_pem(ca)
                .map_err(|e| format!("Prometheus CA file: {e}"))?;
            b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
        }
        let http = b
            .build()
            .map_err(|e| format!("Prometheus client for {shown}: {e}"))?;
        Ok(Prometheus {
            base: url.trim_end_matches('/').to_string(),
            http,
            timeout,
        })
    }

    /// Its URL, without credentials.
    pub fn shown(&self) -> String {
        crate::redact_url(&self.base).into_owned()
    }

    /// What the state's `source` says: `prometheus URL`.
    pub fn source(&self) -> String {
        format!("prometheus {}", self.shown())
    }

    /// One instant query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let shown = self.shown();
        let ask = async {
            let r = self
                .http
                .get(&url)
                .query(&[("query", promql)])
                .send()
                .await?;
            let status = r.status();
            Ok::<_, reqwest::Error>((status, r.text().await?))
        };
        let (status, body) = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| {
                format!(
                    "Prometheus at {shown} did not answer in {} ms",
                    self.timeout.as_millis()
                )
            })?
            .map_err(|e| {
                format!(
                    "Prometheus at {shown}: {}",
                    crate::redact_urls_in(&crate::observe::describe(&e))
                )
            })?;
        // Prometheus answers a bad query with 400 and the JSON error.
        parse_answer(&body)
            .map_err(|e| format!("Prometheus at {shown} (HTTP {status}) on `{promql}`: {e}"))
    }

    /// Each series' number by instance.
    async fn by_instance(&self, promql: &str) -> Result<BTreeMap<String, Option<f64>>, String> {
        Ok(self
            .query(promql)
            .await?
            .into_iter()
            .map(|s| (s.label("instance").to_string(), s.number()))
            .collect())
    }

    /// Every member's figures over `window` (0: since each started).
    pub async fn etcd_latency(&self, endpoints: &[String], window: Duration) -> EtcdLatency {
        let w = format!("{}s", window.as_secs().max(1));
        type Promql = fn(&str, &str) -> String;
        let (q, n): (Promql, Promql) = if window.is_zero() {
            (
                |h: &str, _: &str| {
                    format!("histogram_quantile(0.99, sum by (instance, le) ({h}_bucket))")
                },
                |h: &str, _: &str| format!("sum by (instance) ({h}_count)"),
            )
        } else {
            (
                |h: &str, w: &str| {
                    format!(
                        "histogram_quantile(0.99, sum by (instance, le) (rate({h}_bucket[{w}])))"
                    )
                },
                |h: &str, w: &str| format!("sum by (instance) (increase({h}[{w}]))"),
            )
        };
        let count = format!("{WAL_FSYNC}_count");
        let fsyncs = if window.is_zero() {
            n(WAL_FSYNC, &w)
        } else {
            n(&count, &w)
        };
        let queries = [
            q(WAL_FSYNC, &w),
            q(BACKEND_COMMIT, &w),
            fsyncs,
            n(SLOW_APPLY, &w),
            n(LEADER_CHANGES, &w),
            // Which members Prometheus has at all (a rate needs two
            // samples in the window: a member without them is told apart).
            format!("max by (instance) ({count})"),
        ];
        let answers = futures::future::join_all(queries.iter().map(|q| self.by_instance(q))).await;
        let members = match answers
            .into_iter()
            .collect::<Result<Vec<ByInstance>, String>>()
        {
            Ok(a) => {
                let instances: Vec<&str> = a[5].keys().map(String::as_str).collect();
                endpoints
                    .iter()
                    .map(|u| self.member(u, &instances, &a, window))
                    .collect()
            }
            Err(e) => endpoints.iter().map(|u| unread(u, e.clone())).collect(),
        };
        EtcdLatency {
            source: self.source(),
            window: crate::etcd_latency::dur(window),
            members,
        }
    }

    /// One member's figures from the queries' answers by instance (WAL
    /// p99, commit p99, WAL fsyncs, slow applies, leader changes, present).
    fn member(
        &self,
        endpoint: &str,
        instances: &[&str],
        answers: &[ByInstance],
        window: Duration,
    ) -> MemberLatency {
        let Some(i) = member_instance(endpoint, instances) else {
            return unread(
                endpoint,
                format!(
                    "Prometheus at {} has no {WAL_FSYNC} series for its instance (its client URL's host:port, or the only instance on its host): is it scraping this member's /metrics?",
                    self.shown()
                ),
            );
        };
        if !answers[0].contains_key(i) {
            return unread(
                endpoint,
                format!(
                    "Prometheus at {} has fewer than two samples of instance {i} in the last {}s: the rule's window must cover at least two scrape intervals",
                    self.shown(),
                    window.as_secs()
                ),
            );
        }
        let micros = |m: &ByInstance| {
            m.get(i)
                .copied()
                .flatten()
                .map(|s| (s * 1e6).round().max(0.0) as u64)
        };
        let count = |m: &ByInstance| m.get(i).copied().flatten().map(|v| v.round() as u64);
        let counter = |m: &ByInstance| (!window.is_zero()).then(|| count(m)).flatten();
        MemberLatency {
            name: endpoint.to_string(),
            endpoint: endpoint.to_string(),
            error: None,
            wal_fsync_p99_micros: micros(&answers[0]),
            backend_commit_p99_micros: micros(&answers[1]),
            wal_fsyncs: count(&answers[2]),
            slow_applies: counter(&answers[3]),
            leader_changes: counter(&answers[4]),
        }
    }

    /// Each master's file systems (of `/`, `data_dir` and
    /// `/etc/kubernetes/tmp`) from node-exporter and etcd's database size;
    /// `masters` are (name, address). Only the disks are filled: the
    /// master's other files are read over SSH.
    pub async fn master_disks(&self, masters: &[(String, String)], data_dir: &str) -> MastersState {
        let fs = |m: &str| format!("node_filesystem_{m}_bytes");
        let queries = [
            fs("size"),
            fs("free"),
            fs("avail"),
            format!("max by (instance) ({DB_SIZE})"),
        ];
        let (size, free, avail, db) = futures::join!(
            self.query(&queries[0]),
            self.query(&queries[1]),
            self.query(&queries[2]),
            self.by_instance(&queries[3]),
        );
        let nodes = masters
            .iter()
            .map(|(name, address)| {
                let mut f = MasterFiles {
                    node: name.clone(),
                    disks_source: Some(self.source()),
                    ..Default::default()
                };
                match (&size, &free, &avail) {
                    (Ok(size), Ok(free), Ok(avail)) => {
                        let mounts = host_mounts(address, size, free, avail);
                        let read = if mounts.is_empty() {
                            Err(format!(
                                "Prometheus at {} has no node_filesystem_size_bytes series for an instance on {address}: is it scraping node-exporter on this master?",
                                self.shown()
                            ))
                        } else {
                            filesystems(&disk_paths(data_dir), &mounts)
                                .map_err(|e| format!("node-exporter on {address}: {e}"))
                        };
                        match read {
                            Ok(d) => f.disks = Some(d),
                            Err(e) => f.disks_error = Some(e),
                        }
                    }
                    (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => f.disks_error = Some(e.clone()),
                }
                if let Ok(db) = &db {
                    let instances: Vec<&str> = db.keys().map(String::as_str).collect();
                    f.etcd_db_bytes = instances
                        .iter()
                        .find(|i| split_instance(i).0 == address)
                        .and_then(|i| db.get(*i).copied().flatten())
                        .map(|v| v.max(0.0).round() as u64);
                }
                f
            })
            .collect();
        MastersState {
            nodes,
            ..Default::default()
        }
    }
}

type ByInstance = BTreeMap<String, Option<f64>>;

/// The mount points node-exporter reports on `address` (any port), with
/// their size, free and available bytes.
fn host_mounts(address: &str, size: &[Series], free: &[Series], avail: &[Series]) -> Mounts {
    let mut mounts: Mounts = BTreeMap::new();
    let on_host = |s: &&Series| split_instance(s.label("instance")).0 == address;
    for (k, series) in [size, free, avail].into_iter().enumerate() {
        for s in series.iter().filter(on_host) {
            let e = mounts.entry(s.label("mountpoint").to_string()).or_default();
            let slot = match k {
                0 => &mut e.0,
                1 => &mut e.1,
                _ => &mut e.2,
            };
            *slot = s.number();
        }
    }
    mounts.retain(|m, _| !m.is_empty());
    mounts
}

/// Every master's disks unread, for `why` (the Prometheus client could
/// not be made).
pub fn unreadable_disks(masters: &[(String, String)], why: &str) -> MastersState {
    MastersState {
        nodes: masters
            .iter()
            .map(|(name, _)| MasterFiles {
                node: name.clone(),
                disks_source: Some("prometheus".into()),
                disks_error: Some(why.to_string()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn unread(endpoint: &str, why: String) -> MemberLatency {
    MemberLatency {
        name: endpoint.to_string(),
        endpoint: endpoint.to_string(),
        error: Some(why),
        wal_fsync_p99_micros: None,
        backend_commit_p99_micros: None,
        wal_fsyncs: None,
        slow_applies: None,
        leader_changes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_with_serde_and_an_error_is_named() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"127.0.0.11:2379"},"value":[1700000000.5,"0.0523"]},
            {"metric":{"instance":"127.0.0.12:2379"},"value":[1700000000.5,"NaN"]}]}}"#;
        let s = parse_answer(body).unwrap();
        assert_eq!(s[0].label("instance"), "127.0.0.11:2379");
        assert_eq!(s[0].number(), Some(0.0523));
        assert_eq!(s[1].number(), None, "NaN: no observation");
        let e = parse_answer(
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        )
        .unwrap_err();
        assert!(e.contains("bad_data: parse error"), "{e}");
        let e = parse_answer(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(e.contains("matrix"), "{e}");
        assert!(parse_answer("<html>").is_err());
    }

    #[test]
    fn instances_map_to_members_by_host_and_port_then_host() {
        let inst = [
            "127.0.0.11:2379",
            "127.0.0.12:2381",
            "127.0.0.13:2379",
            "127.0.0.13:2381",
        ];
        assert_eq!(
            member_instance("https://127.0.0.11:2379", &inst),
            Some("127.0.0.11:2379")
        );
        assert_eq!(
            member_instance("https://127.0.0.12:2379", &inst),
            Some("127.0.0.12:2381")
        );
        assert_eq!(
            member_instance("https://127.0.0.13:2379", &inst),
            Some("127.0.0.13:2379")
        );
        assert_eq!(member_instance("https://127.0.0.14:2379", &inst), None);
        assert_eq!(
            member_instance("https://[::1]:2379", &["[::1]:2379"]),
            Some("[::1]:2379")
        );
    }

    #[test]
    fn a_member_without_two_samples_in_the_window_is_told_apart_from_one_not_scraped() {
        let p = Prometheus::new("http://127.0.0.1:9", None, Duration::from_secs(1)).unwrap();
        let by = |pairs: &[(&str, Option<f64>)]| -> ByInstance {
            pairs.iter().map(|(i, v)| (i.to_string(), *v)).collect()
        };
        let present = by(&[
            ("127.0.0.11:2379", Some(9.0)),
            ("127.0.0.12:2379", Some(9.0)),
        ]);
        let answers = [
            by(&[("127.0.0.11:2379", Some(0.012))]),
            by(&[("127.0.0.11:2379", Some(0.004))]),
            by(&[("127.0.0.11:2379", Some(40.0))]),
            by(&[("127.0.0.11:2379", Some(0.0))]),
            by(&[("127.0.0.11:2379", Some(1.0))]),
            present.clone(),
        ];
        let instances: Vec<&str> = present.keys().map(String::as_str).collect();
        let w = Duration::from_secs(5);
        let m = p.member("https://127.0.0.11:2379", &instances, &answers, w);
        assert_eq!(
            (m.wal_fsync_p99_micros, m.wal_fsyncs, m.leader_changes),
            (Some(12_000), Some(40), Some(1))
        );
        let short = p.member("https://127.0.0.12:2379", &instances, &answers, w);
        assert!(
            short
                .error
                .unwrap()
                .contains("fewer than two samples of instance 127.0.0.12:2379 in the last 5s")
        );
        let gone = p.member("https://127.0.0.13:2379", &instances, &answers, w);
        assert!(
            gone.error
                .unwrap()
                .contains("has no etcd_disk_wal_fsync_duration_seconds series")
        );
        let life = p.member(
            "https://127.0.0.11:2379",
            &instances,
            &answers,
            Duration::ZERO,
        );
        assert_eq!((life.slow_applies, life.leader_changes), (None, None));
    }

    #[test]
    fn each_path_is_on_its_longest_mount_point() {
        let mut m = BTreeMap::new();
        m.insert("/".to_string(), (Some(100.0), Some(40.0), Some(35.0)));
        m.insert(
            "/var/lib/etcd".to_string(),
            (Some(10.0), Some(9.0), Some(9.0)),
        );
        m.insert(
            "/var/lib/etcd2".to_string(),
            (Some(1.0), Some(1.0), Some(1.0)),
        );
        let f = filesystems(&disk_paths("/var/lib/etcd"), &m).unwrap();
        assert_eq!(
            (f[0].mount.as_str(), f[0].used_bytes, f[0].avail_bytes),
            ("/", 60, 35)
        );
        assert_eq!(f[1].mount, "/var/lib/etcd");
        assert_eq!(f[2].mount, "/");
        m.clear();
        m.insert("/boot".to_string(), (Some(1.0), Some(1.0), Some(1.0)));
        assert!(
            filesystems(&["/"], &m)
                .unwrap_err()
                .contains("no mount point holding /")
        );
    }
}
