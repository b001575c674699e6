//! A real etcd cluster (the Debian `etcd-server` binary) with TLS on client
//! and peer ports, one process per member, on loopback.

use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::LabError;

/// One etcd member's fixed facts.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// Member name (the node name, as kubeadm names stacked members).
    pub name: String,
    /// Loopback address it listens on.
    pub ip: IpAddr,
    /// Client port (2379 on a real master).
    pub client_port: u16,
    /// Peer port (2380 on a real master).
    pub peer_port: u16,
}

impl MemberSpec {
    /// `https://ip:client_port`.
    pub fn client_url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.ip, self.client_port))
    }
    /// `https://ip:peer_port`.
    pub fn peer_url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.ip, self.peer_port))
    }
}

/// What a member process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRun {
    /// Running.
    Running,
    /// SIGSTOPped: its ports accept connections but nothing answers.
    Paused,
    /// Not running.
    Stopped,
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    child: Option<Child>,
    paused: bool,
}

/// A running etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    root: PathBuf,
    pki: PathBuf,
    initial_cluster: String,
    tls: Arc<rustls::ClientConfig>,
}

/// The etcd binary, if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

impl EtcdCluster {
    /// Start members on `specs`, with certificates from `pki` (kubeadm's
    /// `pki/etcd` layout), data under `root`. Waits until every member
    /// reports `/health` true (a leader exists), up to `timeout`.
    pub fn start(
        specs: Vec<MemberSpec>,
        root: &Path,
        pki: &Path,
        rt: &tokio::runtime::Runtime,
        timeout: Duration,
    ) -> Result<EtcdCluster, LabError> {
        let initial_cluster = specs
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let tls = Arc::new(client_tls(pki)?);
        let mut cluster = EtcdCluster {
            members: specs
                .into_iter()
                .map(|spec| Member {
                    spec,
                    child: None,
                    paused: false,
                })
                .collect(),
            root: root.to_path_buf(),
            pki: pki.to_path_buf(),
            initial_cluster,
            tls,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_healthy(rt, timeout)?;
        Ok(cluster)
    }

    /// The members' facts.
    pub fn specs(&self) -> Vec<MemberSpec> {
        self.members.iter().map(|m| m.spec.clone()).collect()
    }

    /// Client URLs of every member.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }

    /// Index of the member named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.spec.name == name)
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// What member `i` is doing.
    pub fn run_state(&mut self, i: usize) -> MemberRun {
        let m = &mut self.members[i];
        let exited = match &mut m.child {
            None => true,
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
        };
        if exited {
            MemberRun::Stopped
        } else if m.paused {
            MemberRun::Paused
        } else {
            MemberRun::Running
        }
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), LabError> {
        let bin = etcd_binary().ok_or(LabError::EtcdMissing)?;
        let m = &self.members[i];
        let data = self.root.join(format!("etcd-{}", m.spec.name));
        let log_path = self.root.join(format!("etcd-{}.log", m.spec.name));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
        let pki = |f: &str| self.pki.join(f).display().to_string();
        let child = crate::dies_with_parent(&bin)
            .arg(format!("--name={}", m.spec.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={}", m.spec.client_url()))
            .arg(format!("--advertise-client-urls={}", m.spec.client_url()))
            .arg(format!("--listen-peer-urls={}", m.spec.peer_url()))
            .arg(format!(
                "--initial-advertise-peer-urls={}",
                m.spec.peer_url()
            ))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=hacli-testlab")
            .arg(format!("--cert-file={}", pki("server.crt")))
            .arg(format!("--key-file={}", pki("server.key")))
            .arg(format!("--trusted-ca-file={}", pki("ca.crt")))
            .arg("--client-cert-auth=true")
            .arg(format!("--peer-cert-file={}", pki("peer.crt")))
            .arg(format!("--peer-key-file={}", pki("peer.key")))
            .arg(format!("--peer-trusted-ca-file={}", pki("ca.crt")))
            .arg("--peer-client-cert-auth=true")
            .arg("--snapshot-count=10000")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| LabError::io(&bin, e))?;
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// Stop member `i` (SIGTERM, then SIGKILL after 5 s) and wait for it.
    pub fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            if m.paused {
                let _ = kill(pid, Signal::SIGCONT);
            }
            let _ = kill(pid, Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        m.paused = false;
    }

    /// Pause member `i` with SIGSTOP: connections are accepted by the kernel
    /// but never answered, like a hung host.
    pub fn pause(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(child) = &m.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP);
            m.paused = true;
        }
    }

    /// Resume a paused member with SIGCONT.
    pub fn resume(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(child) = &m.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
        }
        m.paused = false;
    }

    /// Start a stopped member again (it rejoins with its data directory).
    pub fn restart(&mut self, i: usize) -> Result<(), LabError> {
        self.stop(i);
        self.spawn(i, "existing")
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"`
    /// within `timeout` (it has a leader and its store works).
    pub fn member_healthy(
        &self,
        rt: &tokio::runtime::Runtime,
        i: usize,
        timeout: Duration,
    ) -> bool {
        let spec = self.members[i].spec.clone();
        let tls = self.tls.clone();
        block(rt, async move {
            tokio::time::timeout(timeout, health(&spec, tls))
                .await
                .unwrap_or(false)
        })
    }

    /// Whether member `i` says it is the raft leader (`/metrics`
    /// `etcd_server_is_leader 1`); false when it does not answer in time.
    pub fn member_is_leader(
        &self,
        rt: &tokio::runtime::Runtime,
        i: usize,
        timeout: Duration,
    ) -> bool {
        let spec = self.members[i].spec.clone();
        let tls = self.tls.clone();
        block(rt, async move {
            tokio::time::timeout(timeout, fetch(&spec, tls, "/metrics"))
                .await
                .ok()
                .flatten()
                .is_some_and(|t| t.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
        })
    }

    /// An etcd-client for member `i` alone, as the healthcheck client.
    async fn grpc(&self, i: usize) -> Result<etcd_client::Client, LabError> {
        let read = |f: &str| {
            let p = self.pki.join(f);
            fs::read(&p).map_err(|e| LabError::io(&p, e))
        };
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("ca.crt")?))
            .identity(etcd_client::Identity::from_pem(
                read("healthcheck-client.crt")?,
                read("healthcheck-client.key")?,
            ));
        let opts = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_timeout(Duration::from_secs(5));
        let url = self.members[i].spec.client_url();
        etcd_client::Client::connect([url.as_str()], Some(opts))
            .await
            .map_err(|e| LabError::Etcd(format!("connect {url}: {e}")))
    }

    /// Raise `NOSPACE` for member `i` (see [`crate::Lab::raise_nospace_alarm`]).
    pub fn raise_nospace_alarm(
        &self,
        rt: &tokio::runtime::Runtime,
        i: usize,
    ) -> Result<(), LabError> {
        block(rt, async {
            let mut c = self.grpc(i).await?;
            let id = c
                .status()
                .await
                .map_err(|e| LabError::Etcd(format!("status: {e}")))?
                .header()
                .map(|h| h.member_id())
                .ok_or_else(|| LabError::Etcd("status: no header".into()))?;
            let mut opts = etcd_client::AlarmOptions::new();
            opts.with_member(id);
            c.alarm(
                etcd_client::AlarmAction::Activate,
                etcd_client::AlarmType::Nospace,
                Some(opts),
            )
            .await
            .map_err(|e| LabError::Etcd(format!("alarm activate: {e}")))?;
            self.until_every_status(|errors| errors.iter().any(|e| e.contains("NOSPACE")))
                .await
        })
    }

    /// Wait (up to 10 s) until every running member's status `errors`
    /// satisfy `ok`: members apply an alarm change each in its own time.
    async fn until_every_status(&self, ok: impl Fn(&[String]) -> bool) -> Result<(), LabError> {
        let until = Instant::now() + Duration::from_secs(10);
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() || self.members[i].paused {
                continue;
            }
            let mut c = self.grpc(i).await?;
            loop {
                let s = c
                    .status()
                    .await
                    .map_err(|e| LabError::Etcd(format!("status: {e}")))?;
                if ok(s.errors()) {
                    break;
                }
                if Instant::now() > until {
                    return Err(LabError::Etcd(format!(
                        "member {} still reports {:?}",
                        self.members[i].spec.name,
                        s.errors()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Disarm every alarm, through member 0.
    pub fn disarm_alarms(&self, rt: &tokio::runtime::Runtime) -> Result<(), LabError> {
        block(rt, async {
            let mut c = self.grpc(0).await?;
            let active = c
                .alarm(
                    etcd_client::AlarmAction::Get,
                    etcd_client::AlarmType::None,
                    None,
                )
                .await
                .map_err(|e| LabError::Etcd(format!("alarm list: {e}")))?;
            for a in active.alarms() {
                let mut opts = etcd_client::AlarmOptions::new();
                opts.with_member(a.member_id());
                c.alarm(etcd_client::AlarmAction::Deactivate, a.alarm(), Some(opts))
                    .await
                    .map_err(|e| LabError::Etcd(format!("alarm deactivate: {e}")))?;
            }
            self.until_every_status(|errors| !errors.iter().any(|e| e.contains("alarm:")))
                .await
        })
    }

    /// Wait until every running member is healthy.
    pub fn wait_healthy(
        &mut self,
        rt: &tokio::runtime::Runtime,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let until = Instant::now() + timeout;
        loop {
            let mut bad = Vec::new();
            for i in 0..self.members.len() {
                if self.run_state(i) == MemberRun::Running
                    && !self.member_healthy(rt, i, Duration::from_millis(500))
                {
                    bad.push(self.members[i].spec.name.clone());
                }
            }
            if bad.is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                let logs = self
                    .members
                    .iter()
                    .map(|m| self.root.join(format!("etcd-{}.log", m.spec.name)))
                    .filter_map(|p| fs::read_to_string(p).ok())
                    .map(|s| s.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
                    .collect::<Vec<_>>()
                    .join("\n---\n");
                return Err(LabError::EtcdNotHealthy {
                    members: bad.join(", "),
                    log_tail: logs,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                if m.paused {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Run `fut` on the lab's runtime from any context, even from inside
/// another runtime (an async test), on a scoped helper thread.
fn block<F: std::future::Future + Send>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(fut))
            .join()
            .expect("the lab's helper thread does not panic")
    })
}

fn client_tls(pki: &Path) -> Result<rustls::ClientConfig, LabError> {
    let read = |f: &str| {
        let p = pki.join(f);
        fs::read(&p).map_err(|e| LabError::io(&p, e))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        let c = c.map_err(|e| LabError::Pki(format!("etcd ca.crt: {e}")))?;
        roots
            .add(c)
            .map_err(|e| LabError::Pki(format!("etcd ca.crt: {e}")))?;
    }
    let certs = CertificateDer::pem_slice_iter(&read("healthcheck-client.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LabError::Pki(format!("healthcheck-client.crt: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&read("healthcheck-client.key")?)
        .map_err(|e| LabError::Pki(format!("healthcheck-client.key: {e}")))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| LabError::Pki(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| LabError::Pki(format!("healthcheck client pair: {e}")))
}

async fn fetch(spec: &MemberSpec, tls: Arc<rustls::ClientConfig>, path: &str) -> Option<String> {
    let addr = SocketAddr::new(spec.ip, spec.client_port);
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut s = connector
        .connect(ServerName::IpAddress(spec.ip.into()), tcp)
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.starts_with("HTTP/1.1 200").then_some(text)
}

async fn health(spec: &MemberSpec, tls: Arc<rustls::ClientConfig>) -> bool {
    fetch(spec, tls, "/health")
        .await
        .is_some_and(|t| t.contains("\"health\":\"true\""))
}
