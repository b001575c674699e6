//! A real Alertmanager (Debian `prometheus-alertmanager`) on loopback, for
//! the silences a disruption creates: one process, no clustering (its
//! gossip port stays closed), a route to a receiver that sends nothing,
//! storage in a temporary directory. Dropping it kills the process.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The binary, if installed (`prometheus-alertmanager` on Debian,
/// `alertmanager` upstream).
pub fn alertmanager_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("prometheus-alertmanager"), d.join("alertmanager")])
        .find(|p| p.is_file())
}

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    /// Its API address (127.0.0.1:PORT).
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Start one and wait until `/-/ready` answers 200 (up to 30 s); Err
    /// names why (`not installed` when the binary is missing).
    pub fn start() -> Result<Alertmanager, String> {
        let bin = alertmanager_binary()
            .ok_or("prometheus-alertmanager is not installed (Debian prometheus-alertmanager)")?;
        let dir = tempfile::Builder::new()
            .prefix("hacli-alertmanager-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "# Written by testlab: nothing is sent anywhere.\nroute:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n",
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let child = crate::dies_with_parent(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: a single instance listens on nothing else.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut am = Alertmanager { child, addr, dir };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = am.request("GET", "/-/ready", None) {
                return Ok(am);
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                return Err(format!("alertmanager exited ({status}): {}", am.log()));
            }
            if Instant::now() > until {
                return Err(format!("alertmanager not ready within 30 s: {}", am.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// One HTTP/1.1 request (5 s deadline): status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let body = json.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Ok((status, body))
    }

    /// Every silence it knows (`GET /api/v2/silences`).
    pub fn silences(&self) -> Vec<serde_json::Value> {
        match self.request("GET", "/api/v2/silences", None) {
            Ok((200, body)) => serde_json::from_str(&body).unwrap_or_default(),
            other => panic!("GET /api/v2/silences: {other:?}"),
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
