//! Load on a lab's etcd and a slow disk under it, for the tests of the
//! `etcd-latency` rule: a writer that keeps etcd busy (as a kubeadm
//! cluster's apiservers, controllers and kubelets always do: leases,
//! events), and `strace` delaying one member's every fdatasync (syscall
//! delay injection). Both stop when dropped, whatever happens.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// Puts one key every 20 ms on its own thread until stopped (each put and
/// the connection bounded at 2 s); the key is deleted at the end.
pub struct EtcdWriter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl EtcdWriter {
    /// Start writing `key` through `endpoints`, with the client
    /// certificate `cert`/`key_file` and the CA `ca`.
    pub fn start(
        endpoints: Vec<String>,
        (ca, cert, key_file): (&Path, &Path, &Path),
        key: &str,
    ) -> EtcdWriter {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let opts = ConnectOptions::new()
            .with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(read(ca)))
                    .identity(Identity::from_pem(read(cert), read(key_file))),
            )
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(2));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let key = key.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the writer");
            rt.block_on(write_until(endpoints, opts, key, stopped))
        });
        EtcdWriter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop; how many writes succeeded and how many failed.
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 1))
    }
}

impl Drop for EtcdWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn write_until(
    endpoints: Vec<String>,
    opts: ConnectOptions,
    key: String,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let deadline = Duration::from_secs(2);
    let mut client =
        match tokio::time::timeout(deadline, Client::connect(endpoints, Some(opts))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                eprintln!("the writer could not connect to etcd: {e}");
                return (0, 1);
            }
            Err(_) => {
                eprintln!("the writer could not connect to etcd in 2 s");
                return (0, 1);
            }
        };
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(deadline, client.put(key.as_str(), ok.to_string(), None)).await {
            Ok(Ok(_)) => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::time::timeout(deadline, client.delete(key.as_str(), None)).await;
    (ok, failed)
}

/// The tracer of each thread of `pid` (0: none).
pub fn tracers(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| {
                    let status = std::fs::read_to_string(t.path().join("status")).ok()?;
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("TracerPid:"))?
                        .trim()
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `strace` is installed (Debian's strace).
pub fn strace_installed() -> bool {
    Command::new("strace").arg("-V").output().is_ok()
}

/// `strace` attached to every thread of `pid`, delaying each fdatasync by
/// `delay` (strace's delay is in microseconds); detached (SIGINT: it
/// detaches from every thread and exits) by [`SlowFsync::detach`] or when
/// dropped, whatever happens.
pub struct SlowFsync {
    child: Child,
    pid: u32,
}

impl SlowFsync {
    /// Attach, and wait (at most 10 s) until every thread of `pid` is
    /// traced, so that a window measured after this is slowed throughout.
    pub fn attach(pid: u32, delay: Duration) -> SlowFsync {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync"])
            .arg("-e")
            .arg(format!(
                "inject=fdatasync:delay_enter={}",
                delay.as_micros()
            ))
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace runs");
        let s = SlowFsync { child, pid };
        let until = Instant::now() + Duration::from_secs(10);
        while !tracers(pid).iter().all(|t| *t == s.child.id()) {
            assert!(
                Instant::now() < until,
                "strace attached to {pid} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Detach, and check that nothing traces `pid` any more.
    pub fn detach(mut self) {
        self.stop();
        assert!(
            tracers(self.pid).iter().all(|t| *t == 0),
            "strace detached from {}",
            self.pid
        );
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let me = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGINT);
            let _ = self.child.wait();
        }
    }
}

impl Drop for SlowFsync {
    fn drop(&mut self) {
        self.stop();
    }
}
