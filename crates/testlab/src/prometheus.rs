//! A real Prometheus (Debian `prometheus`) and real node-exporters (Debian
//! `prometheus-node-exporter`) on loopback addresses the caller picks:
//! each a process with its data and log in a temporary directory, killed
//! when dropped (and with the test process).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// Prometheus's binary, if installed.
pub fn prometheus_binary() -> Option<PathBuf> {
    binary(&["prometheus"])
}

/// node-exporter's binary, if installed (`prometheus-node-exporter` on
/// Debian, `node_exporter` upstream).
pub fn node_exporter_binary() -> Option<PathBuf> {
    binary(&["prometheus-node-exporter", "node_exporter"])
}

/// A free TCP port on `ip`.
pub fn free_port(ip: IpAddr) -> Result<u16, String> {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on {ip}: {e}"))
}

/// One process of ours, its log in `dir`.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    name: &'static str,
    scheme: &'static str,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn spawn(
        name: &'static str,
        bin: &Path,
        addr: SocketAddr,
        dir: tempfile::TempDir,
        args: &[String],
    ) -> Result<Daemon, String> {
        let log = std::fs::File::create(dir.path().join("log"))
            .map_err(|e| format!("{name} log file: {e}"))?;
        let child = crate::dies_with_parent(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut d = Daemon {
            child,
            addr,
            dir,
            name,
            scheme: "http",
        };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("{name} exited ({status}): {}", d.log()));
            }
            if Instant::now() > until {
                return Err(format!(
                    "{name} not listening on {addr} in 20 s: {}",
                    d.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it now (it stops answering).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} on {} killed", self.name, self.addr);
    }
}

/// Start node-exporter on `ip` (a free port), its filesystem collector
/// alone.
pub fn start_node_exporter(ip: IpAddr) -> Result<Daemon, String> {
    let bin = node_exporter_binary()
        .ok_or("prometheus-node-exporter is not installed (Debian prometheus-node-exporter)")?;
    let addr = SocketAddr::new(ip, free_port(ip)?);
    let dir = tempdir("hacli-node-exporter-")?;
    let args = [
        format!("--web.listen-address={addr}"),
        "--collector.disable-defaults".into(),
        "--collector.filesystem".into(),
    ];
    Daemon::spawn("node-exporter", &bin, addr, dir, &args)
}

/// Start Prometheus on `ip` (a free port) with `scrape_configs` (YAML, a
/// list), scraping every second, its TSDB in a temporary directory; with
/// `tls` (certificate and key files, PEM) it serves HTTPS only.
pub fn start_prometheus(
    ip: IpAddr,
    scrape_configs: &str,
    tls: Option<(&Path, &Path)>,
) -> Result<Daemon, String> {
    let bin = prometheus_binary().ok_or("prometheus is not installed (Debian prometheus)")?;
    let addr = SocketAddr::new(ip, free_port(ip)?);
    let dir = tempdir("hacli-prometheus-")?;
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok::<_, String>(path)
    };
    let config = write(
        "prometheus.yml",
        format!(
            "# Written by testlab.\nglobal: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\nscrape_configs:\n{scrape_configs}"
        ),
    )?;
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address={addr}"),
    ];
    if let Some((cert, key)) = tls {
        let web = write(
            "web.yml",
            format!(
                "tls_server_config:\n  cert_file: '{}'\n  key_file: '{}'\n",
                cert.display(),
                key.display()
            ),
        )?;
        args.push(format!("--web.config.file={}", web.display()));
    }
    let mut d = Daemon::spawn("prometheus", &bin, addr, dir, &args)?;
    if tls.is_some() {
        d.scheme = "https";
    }
    Ok(d)
}

fn tempdir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))
}
