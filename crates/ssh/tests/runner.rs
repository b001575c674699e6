//! The SSH runner against a real OpenSSH sshd (testlab's fixture) on
//! loopback: host keys, authentication, deadlines, exit statuses, stdin,
//! output, concurrency and quoting, as issue 10 asks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssh::{Cmd, Config, ExitStatus, HostKeyPolicy, KILL_GRACE, Session, SshError, Warn};
use testlab::sshd::{Sshd, SshdSpec, client_key, loopback_addr, sshd_binary};

const T: Duration = Duration::from_secs(20);

/// A running sshd that authorizes one client key, and a known_hosts
/// that records it.
struct Fix {
    sshd: Sshd,
    key: PathBuf,
    known_hosts: PathBuf,
    dir: tempfile::TempDir,
}

impl Fix {
    /// An sshd authorizing a new `kind` key; None (and a skip: a failure
    /// under `HACLI_REQUIRE_LABS=1`) without sshd.
    fn start(test: &str, kind: &str) -> Option<Fix> {
        Fix::start_with(test, kind, None)
    }

    fn start_with(test: &str, kind: &str, passphrase: Option<&str>) -> Option<Fix> {
        if sshd_binary().is_none() {
            testlab::skip::skip(test, "/usr/sbin/sshd is missing (install openssh-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = client_key(&dir.path().join("client"), kind, passphrase).unwrap();
        let spec = SshdSpec::new(
            loopback_addr().unwrap(),
            dir.path().join("sshd"),
            vec![public],
        );
        let sshd = Sshd::start(&spec, Duration::from_secs(10)).unwrap();
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("# lab\n{}\n", sshd.known_hosts_line()),
        )
        .unwrap();
        Some(Fix {
            sshd,
            key,
            known_hosts,
            dir,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.sshd.addr()
    }

    /// Root, this fixture's key only (no agent), its known_hosts.
    fn cfg(&self) -> Config {
        Config::new("lab1", self.addr().ip().to_string(), "root")
            .port(self.addr().port())
            .keys([self.key.clone()])
            .agent(false)
            .known_hosts(&self.known_hosts)
            .connect_timeout(Duration::from_secs(10))
    }

    async fn connect(&self) -> Session {
        match Session::connect(&self.cfg()).await {
            Ok(s) => s,
            Err(e) => panic!("connect: {e}\nsshd log:\n{}", self.sshd.log_tail(30)),
        }
    }

    /// `[ip]:port`, as known_hosts names this host.
    fn pattern(&self) -> String {
        format!("[{}]:{}", self.addr().ip(), self.addr().port())
    }
}

/// The SHA256 fingerprint OpenSSH prints for a public key line.
fn openssh_fingerprint(public_line: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.pub");
    std::fs::write(&p, format!("{public_line}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// Warnings said through the config, kept for the test to read.
fn captured() -> (Warn, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (
        Warn::new(move |m| {
            eprintln!("WARNING (captured): {m}");
            s.lock().unwrap().push(m.to_string())
        }),
        seen,
    )
}

/// Pids of local processes whose environment holds `marker` (the sshd runs
/// here, so the remote processes are local ones).
fn pids_with_env(marker: &str) -> Vec<u32> {
    let needle = marker.as_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|v| v == needle)
        {
            out.push(pid);
        }
    }
    out
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "HACLI_SSH_TEST={tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

// ---- host keys ----

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_both_fingerprints_and_the_line() {
    let Some(f) = Fix::start("changed host key", "ed25519") else {
        return;
    };
    // known_hosts records another ed25519 key for this host, on line 3.
    let (_k, other) = client_key(&f.dir.path().join("other"), "ed25519", None).unwrap();
    let other_fields: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        &f.known_hosts,
        format!(
            "# lab hosts\n\n{} {}\n",
            f.pattern(),
            other_fields.join(" ")
        ),
    )
    .unwrap();
    let before = std::fs::read(&f.known_hosts).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = Session::connect(&f.cfg().host_key_policy(policy))
            .await
            .expect_err("a changed host key must be refused");
        let expected = openssh_fingerprint(&other);
        let got = openssh_fingerprint(&f.sshd.host_public_key());
        match &err {
            SshError::HostKeyMismatch {
                expected_fingerprint,
                got_fingerprint,
                known_hosts_file,
                line,
                ..
            } => {
                assert_eq!(expected_fingerprint, &expected);
                assert_eq!(got_fingerprint, &got);
                assert_eq!(known_hosts_file, &f.known_hosts);
                assert_eq!(*line, 3);
            }
            e => panic!("{policy:?}: expected HostKeyMismatch, got {e}"),
        }
        let msg = err.to_string();
        println!("{policy:?}: {msg}");
        for part in [
            expected.as_str(),
            got.as_str(),
            &format!("{}:3", f.known_hosts.display()),
            "lab1",
            "ssh-keygen -R",
        ] {
            assert!(msg.contains(part), "{msg}\nlacks {part}");
        }
    }
    assert_eq!(
        std::fs::read(&f.known_hosts).unwrap(),
        before,
        "known_hosts untouched"
    );
}

#[tokio::test]
async fn an_unknown_host_is_refused_unless_accept_new_which_records_it_loudly() {
    let Some(f) = Fix::start("unknown host", "ed25519") else {
        return;
    };
    std::fs::write(&f.known_hosts, "").unwrap();
    let fp = openssh_fingerprint(&f.sshd.host_public_key());

    let err = Session::connect(&f.cfg())
        .await
        .expect_err("strict refuses an unknown host");
    let msg = err.to_string();
    println!("strict: {msg}");
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{msg}");
    assert!(
        msg.contains(&fp) && msg.contains("accept-new") && msg.contains("ssh-keyscan"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&f.known_hosts).unwrap(),
        "",
        "strict records nothing"
    );

    // A missing known_hosts file is the same refusal.
    let missing = f.dir.path().join("nope/known_hosts");
    let err = Session::connect(&f.cfg().known_hosts(&missing))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");
    assert!(!missing.exists());

    let (warn, said) = captured();
    let s = Session::connect(&f.cfg().host_key_policy(HostKeyPolicy::AcceptNew).warn(warn))
        .await
        .unwrap();
    assert_eq!(s.host_key_fingerprint(), fp);
    s.close().await;
    let said = said.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("ACCEPTED") && said[0].contains(&fp),
        "{}",
        said[0]
    );
    assert!(
        said[0].contains(&format!("{}:1", f.known_hosts.display())),
        "{}",
        said[0]
    );
    let recorded = std::fs::read_to_string(&f.known_hosts).unwrap();
    assert_eq!(recorded.trim(), f.sshd.known_hosts_line());
    // OpenSSH's own tools find the recorded line.
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(f.pattern())
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -F does not find the recorded key"
    );

    // Now strict connects, without a warning.
    let (warn, said) = captured();
    let s = Session::connect(&f.cfg().warn(warn)).await.unwrap();
    let out = s.run_checked(&Cmd::new("true"), T).await.unwrap();
    assert!(out.success());
    assert!(said.lock().unwrap().is_empty());
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_matched() {
    let Some(f) = Fix::start("hashed known_hosts", "ed25519") else {
        return;
    };
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&f.known_hosts).unwrap();
    assert!(
        text.contains("|1|") && !text.contains(&f.addr().ip().to_string()),
        "{text}"
    );
    f.connect()
        .await
        .run_checked(&Cmd::new("true"), T)
        .await
        .unwrap();

    // A hashed entry with another key is a mismatch, with its line.
    let (_k, other) = client_key(&f.dir.path().join("other"), "ed25519", None).unwrap();
    let fields: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        &f.known_hosts,
        format!("{} {}\n", f.pattern(), fields.join(" ")),
    )
    .unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = Session::connect(&f.cfg()).await.unwrap_err();
    assert!(
        matches!(err, SshError::HostKeyMismatch { line: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn insecure_ignore_connects_but_warns() {
    let Some(f) = Fix::start("insecure-ignore", "ed25519") else {
        return;
    };
    std::fs::write(&f.known_hosts, "").unwrap();
    let (warn, said) = captured();
    let s = Session::connect(
        &f.cfg()
            .host_key_policy(HostKeyPolicy::InsecureIgnore)
            .warn(warn),
    )
    .await
    .unwrap();
    s.run_checked(&Cmd::new("true"), T).await.unwrap();
    assert!(said.lock().unwrap()[0].contains("OFF"));
    assert_eq!(
        std::fs::read_to_string(&f.known_hosts).unwrap(),
        "",
        "records nothing"
    );
}

/// What the real OpenSSH client says of `f`'s host with `known_hosts`:
/// (success, stderr).
fn openssh_client(f: &Fix, known_hosts: &Path) -> (bool, String) {
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&f.key)
        .arg("-p")
        .arg(f.addr().port().to_string())
        .arg(format!("root@{}", f.addr().ip()))
        .arg("true")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_revoked_host_key_is_refused_even_where_a_line_knows_it() {
    let Some(f) = Fix::start("revoked and known", "ed25519") else {
        return;
    };
    // The fixture's known_hosts knows the key (line 2); revoke it below,
    // then again above, as an administrator who appends or prepends.
    let known = std::fs::read_to_string(&f.known_hosts).unwrap();
    let host_line = f.sshd.known_hosts_line();
    let key_fields: Vec<&str> = host_line.split_whitespace().skip(1).take(2).collect();
    let revoked = format!("@revoked * {}", key_fields.join(" "));
    for (text, line) in [
        (format!("{known}{revoked}\n"), 3),
        (format!("{revoked}\n{known}"), 1),
    ] {
        std::fs::write(&f.known_hosts, &text).unwrap();
        for policy in [
            HostKeyPolicy::Strict,
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::InsecureIgnore,
        ] {
            let err = Session::connect(&f.cfg().host_key_policy(policy))
                .await
                .err()
                .unwrap_or_else(|| panic!("{policy:?}: a revoked key was accepted:\n{text}"));
            match &err {
                SshError::HostKeyRevoked { line: l, .. } => {
                    assert_eq!(*l, line, "{policy:?}: {err}")
                }
                e => panic!("{policy:?}: expected HostKeyRevoked, got {e}"),
            }
            assert!(err.to_string().contains("revoked"), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(&f.known_hosts).unwrap(),
            text,
            "nothing recorded"
        );
        // The real OpenSSH client refuses the same file.
        let (ok, stderr) = openssh_client(&f, &f.known_hosts);
        assert!(!ok && stderr.contains("REVOKED"), "OpenSSH: {stderr}");
    }
    // Without the revocation both connect.
    std::fs::write(&f.known_hosts, &known).unwrap();
    let (ok, stderr) = openssh_client(&f, &f.known_hosts);
    assert!(ok, "OpenSSH: {stderr}");
    f.connect()
        .await
        .run_checked(&Cmd::new("true"), T)
        .await
        .unwrap();
}

// ---- authentication ----

async fn whoami_with(kind: &str) {
    let Some(f) = Fix::start(kind, kind) else {
        return;
    };
    let t0 = Instant::now();
    let s = f.connect().await;
    let connect = t0.elapsed();
    let mut runs: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        s.run_checked(&Cmd::new("true"), T).await.unwrap();
        runs.push(t.elapsed());
    }
    runs.sort();
    println!(
        "{kind}: connect (TCP, key exchange, host key check, auth) {connect:?}; `true` median of 5 {:?} (includes the remote login shell's start-up)",
        runs[2]
    );
    let out = s.run_checked(&Cmd::new("id").arg("-un"), T).await.unwrap();
    assert_eq!(out.stdout_str(), "root\n");
    let fp = openssh_fingerprint(&std::fs::read_to_string(f.key.with_extension("pub")).unwrap());
    let log = f.sshd.log_tail(200);
    assert!(
        log.contains("Accepted publickey for root") && log.contains(&fp),
        "sshd did not log the key {fp}:\n{log}"
    );
}

#[tokio::test]
async fn an_ed25519_key_authenticates() {
    whoami_with("ed25519").await;
}

/// OpenSSH 8.8+ refuses RSA signatures with SHA-1 (`ssh-rsa`), so this
/// passing means rsa-sha2-256/512 was used.
#[tokio::test]
async fn an_rsa_key_authenticates_with_rsa_sha2() {
    whoami_with("rsa").await;
}

#[tokio::test]
async fn an_ecdsa_key_authenticates() {
    whoami_with("ecdsa").await;
}

#[tokio::test]
async fn a_key_the_server_does_not_accept_is_an_auth_error_naming_it() {
    let Some(f) = Fix::start("wrong key", "ed25519") else {
        return;
    };
    let (other, _) = client_key(&f.dir.path().join("other"), "ed25519", None).unwrap();
    let err = Session::connect(&f.cfg().keys([other.clone()]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::Auth { .. }), "{msg}");
    assert!(
        msg.contains(&other.display().to_string()) && msg.contains("as root"),
        "{msg}"
    );
    let missing = f.dir.path().join("no-such-key");
    let err = Session::connect(&f.cfg().keys([missing]))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Key { .. }), "{err}");
}

const PASS_VAR: &str = "HACLI_SSH_TEST_PASSPHRASE";

/// The passphrase comes from an environment variable; a test cannot set
/// one in its own (threaded) process, so it runs itself again with it set.
#[test]
fn an_encrypted_key_opens_with_its_passphrase_from_the_environment() {
    if std::env::var_os(PASS_VAR).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_encrypted_key_opens_with_its_passphrase_from_the_environment",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PASS_VAR, "correct horse $battery 'staple'")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        assert!(
            !text.contains("correct horse"),
            "the passphrase leaked into the output"
        );
        return;
    }
    let pass = std::env::var(PASS_VAR).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(f) = Fix::start_with("encrypted key", "ed25519", Some(&pass)) else {
        return;
    };
    rt.block_on(async {
        // Without the variable: named in the error.
        let err = Session::connect(&f.cfg().passphrase_env("HACLI_SSH_TEST_UNSET_VAR"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        println!("no passphrase: {msg}");
        assert!(
            msg.contains("HACLI_SSH_TEST_UNSET_VAR") && msg.contains("encrypted"),
            "{msg}"
        );
        // With it.
        let cfg = f.cfg().passphrase_env(PASS_VAR);
        assert!(!format!("{cfg:?}").contains(&pass));
        let s = Session::connect(&cfg).await.unwrap();
        let out = s
            .run_checked(&Cmd::new("echo").arg("opened"), T)
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "opened\n");
        // Another key with another passphrase: the error names the key and
        // the variable, never the passphrase.
        let (other, public) =
            client_key(&f.dir.path().join("other"), "ed25519", Some("another one")).unwrap();
        let _ = public;
        let err = Session::connect(&f.cfg().keys([other.clone()]).passphrase_env(PASS_VAR))
            .await
            .unwrap_err();
        let msg = format!("{err} {err:?}");
        println!("wrong passphrase: {err}");
        assert!(matches!(err, SshError::Key { .. }), "{msg}");
        assert!(
            msg.contains(PASS_VAR) && msg.contains(&other.display().to_string()),
            "{msg}"
        );
        assert!(
            !msg.contains(&pass) && !msg.contains("another one"),
            "{msg}"
        );
    });
}

/// `ssh-agent -D -a SOCK` of our own, killed at the end.
struct Agent {
    child: std::process::Child,
    sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(dir: &Path, keys: &[&Path]) -> Agent {
    let sock = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(
            Instant::now() < until,
            "ssh-agent did not create {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for k in keys {
        let out = Command::new("ssh-add")
            .arg(k)
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Agent { child, sock }
}

#[tokio::test]
async fn ssh_agent_keys_authenticate() {
    let Some(f) = Fix::start("ssh-agent", "rsa") else {
        return;
    };
    // The agent holds an unrelated ed25519 key first, then the authorized
    // RSA key; no key file is configured.
    let (unrelated, _) = client_key(&f.dir.path().join("other"), "ed25519", None).unwrap();
    let a = agent(f.dir.path(), &[&unrelated, &f.key]);
    let cfg = f.cfg().keys([]).agent_socket(&a.sock);
    // Default key files of this machine (if any) are not authorized here,
    // so only the agent can succeed.
    let s = Session::connect(&cfg).await.unwrap();
    let out = s.run_checked(&Cmd::new("id").arg("-un"), T).await.unwrap();
    assert_eq!(out.stdout_str(), "root\n");
    // An agent without the key: refused, naming what was tried.
    drop(s);
    let b = agent(&f.dir.path().join("other"), &[&unrelated]);
    let err = Session::connect(&f.cfg().keys([]).agent_socket(&b.sock))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("agent key SHA256:"), "{err}");
}

// ---- commands ----

#[tokio::test]
async fn a_hung_command_ends_at_its_deadline_and_leaves_no_remote_process() {
    let Some(f) = Fix::start("deadline", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    let marker = unique("hung");
    // A foreground and a background sleep, both carrying the marker in
    // their environment.
    let cmd = Cmd::new("env")
        .arg(&marker)
        .arg("sh")
        .arg("-c")
        .arg("sleep 1000 & sleep 1000; wait");
    let watcher = {
        let marker = marker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            pids_with_env(&marker).len()
        })
    };
    let deadline = Duration::from_secs(3);
    let t0 = Instant::now();
    let err = s.run(&cmd, deadline).await.unwrap_err();
    let took = t0.elapsed();
    let running_before = watcher.await.unwrap();
    println!("hung command: {err} (returned after {took:?}, {running_before} processes ran)");
    assert!(
        running_before >= 3,
        "the command's processes were not seen running: {running_before}"
    );
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(
        took >= deadline && took < deadline + KILL_GRACE,
        "took {took:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("lab1")
            && msg.contains("sleep 1000")
            && msg.contains("killed with its process group"),
        "{msg}"
    );
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let left = pids_with_env(&marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "remote processes remain: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A deadline that comes before the login shell has started the
    // command (root's .bashrc may take a while): still nothing left.
    let marker = unique("early");
    let cmd = Cmd::new("env").arg(&marker).arg("sleep").arg("1000");
    let err = s.run(&cmd, Duration::from_millis(50)).await.unwrap_err();
    println!("early deadline: {err}");
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let until = Instant::now() + Duration::from_secs(2);
    while !pids_with_env(&marker).is_empty() {
        assert!(
            Instant::now() < until,
            "a process of the early-killed command remains"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection still serves.
    let out = s
        .run_checked(&Cmd::new("echo").arg("alive"), T)
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "alive\n");
}

#[tokio::test]
async fn exit_status_and_signal_are_reported() {
    let Some(f) = Fix::start("exit status", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    let out = s
        .run(&Cmd::shell("echo out; echo err >&2; exit 7"), T)
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(7));
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(
        out.stderr_str(),
        "err\n",
        "the wrapper's pgid line is stripped"
    );
    assert!(!out.success());
    let out = s.run(&Cmd::shell("kill -TERM $$"), T).await.unwrap();
    assert_eq!(out.status, ExitStatus::Signal("TERM".into()));
    let out = s.run(&Cmd::new("no-such-program-hacli"), T).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(127));

    // check(): the error names host, masked command, status, stderr.
    let secret = "s3cr3t-Token";
    let cmd = Cmd::shell("echo \"bad token $1\" >&2; exit 3")
        .arg(secret)
        .secret(secret);
    let err = s.run_checked(&cmd, T).await.unwrap_err();
    let msg = format!("{err}");
    println!("{msg}");
    assert!(matches!(
        err,
        SshError::Failed {
            status: ExitStatus::Code(3),
            ..
        }
    ));
    for part in ["lab1 (root@", "exit status 3", "bad token ***", "sh -c"] {
        assert!(msg.contains(part), "{msg}\nlacks {part}");
    }
    assert!(
        !msg.contains(secret) && !format!("{err:?}").contains(secret),
        "{msg}"
    );
    let out = s.run(&cmd, T).await.unwrap();
    let err = out.check(&cmd, s.target()).unwrap_err();
    assert!(!err.to_string().contains(secret));
}

#[tokio::test]
async fn a_script_on_stdin_runs_and_stdin_streams_both_ways() {
    let Some(f) = Fix::start("stdin", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    let script = "printf '%s|' \"$1\" \"$2\"\necho $((6 * 7))\nexit 4\n";
    let out = s
        .run(
            &Cmd::new("sh")
                .arg("-s")
                .arg("a b")
                .arg("$HOME;")
                .stdin(script),
            T,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "a b|$HOME;|42\n");
    assert_eq!(out.status, ExitStatus::Code(4));
    // 3 MiB through `cat`: more than the channel windows, so stdin and
    // stdout must flow at once.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let out = s
        .run_checked(&Cmd::new("cat").stdin(data.clone()), T)
        .await
        .unwrap();
    assert!(
        out.stdout == data,
        "cat returned {} bytes",
        out.stdout.len()
    );
    // No stdin: EOF at once, so a reader does not hang.
    let out = s.run_checked(&Cmd::new("wc").arg("-c"), T).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "0");
    if Path::new("/usr/bin/php").exists() {
        let out = s
            .run_checked(
                &Cmd::new("php")
                    .arg("-q")
                    .stdin("<?php echo strtoupper('php ok'), \"\\n\";"),
                T,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "PHP OK\n");
    } else {
        testlab::skip::skip(
            "php on stdin",
            "php-cli is not installed (the sh script above ran)",
        );
    }
}

#[tokio::test]
async fn one_mib_of_output_arrives_whole_and_the_cap_kills() {
    let Some(f) = Fix::start("output", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    let n = 1024 * 1024;
    let t0 = Instant::now();
    let out = s
        .run_checked(&Cmd::shell("seq 1 1000000 | head -c 1048576"), T)
        .await
        .unwrap();
    println!("1 MiB of output in {:?}", t0.elapsed());
    let mut expected = String::new();
    let mut i = 1;
    while expected.len() < n {
        expected.push_str(&format!("{i}\n"));
        i += 1;
    }
    expected.truncate(n);
    assert_eq!(out.stdout.len(), n);
    assert!(out.stdout == expected.as_bytes());

    // Past the cap: killed, and its processes gone.
    let marker = unique("cap");
    let cmd = Cmd::new("env").arg(&marker).arg("yes").max_output(n);
    let err = s.run(&cmd, T).await.unwrap_err();
    println!("{err}");
    assert!(
        matches!(err, SshError::OutputTooLarge { limit, .. } if limit == n),
        "{err}"
    );
    let until = Instant::now() + Duration::from_secs(2);
    while !pids_with_env(&marker).is_empty() {
        assert!(Instant::now() < until, "`yes` still runs after the cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Established TCP connections from this machine to `addr` (client side),
/// from /proc/net/tcp.
fn connections_to(addr: SocketAddr) -> usize {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 only")
    };
    let ip = u32::from_ne_bytes(a.ip().octets());
    let want = format!("{ip:08X}:{:04X}", a.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_commands_share_one_connection() {
    let Some(f) = Fix::start("concurrency", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    assert_eq!(connections_to(f.addr()), 1);
    let marker = unique("conc");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let cmd = Cmd::new("env")
            .arg(&marker)
            .arg("sh")
            .arg("-c")
            .arg("sleep 1; echo \"$1\"")
            .arg("sh")
            .arg(format!("cmd {i}"));
        tasks.push(tokio::spawn(async move {
            let out = s.run_checked(&cmd, Duration::from_secs(60)).await.unwrap();
            (i, out.stdout_str().into_owned())
        }));
    }
    // Sample the connections to sshd and the commands running at once
    // (each is a shell and its sleep, carrying the marker).
    let sampler = {
        let addr = f.addr();
        let marker = marker.clone();
        tokio::spawn(async move {
            let (mut conns, mut procs) = (0, 0);
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                conns = conns.max(connections_to(addr));
                let n = pids_with_env(&marker).len();
                procs = procs.max(n);
                if n == 0 && procs > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (conns, procs)
        })
    };
    for t in tasks {
        let (i, out) = t.await.unwrap();
        assert_eq!(out, format!("cmd {i}\n"));
    }
    let took = t0.elapsed();
    let (conns, procs) = sampler.await.unwrap();
    println!(
        "20 commands of `sleep 1` over one connection (at most 8 channels at once): {took:?}; at most {conns} TCP connection(s) to sshd, at most {procs} of their processes at once"
    );
    assert_eq!(conns, 1, "more than one TCP connection to sshd");
    // Each command is a shell and its sleep: 3 processes at once means
    // two commands overlapped.
    assert!(
        procs >= 3,
        "the commands did not overlap: at most {procs} processes at once"
    );
    assert!(
        procs <= 16,
        "more than 8 commands at once: {procs} processes"
    );
    let log = f.sshd.log_tail(500);
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
}

/// More channels than sshd's `MaxSessions` (10): the refused opens are
/// asked again until a session frees up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_past_max_sessions_wait_for_a_free_one() {
    let Some(f) = Fix::start("max sessions", "ed25519") else {
        return;
    };
    let s = Session::connect(&f.cfg().max_channels(16)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.run_checked(
                &Cmd::shell("sleep 1; echo \"$1\"").arg(i.to_string()),
                Duration::from_secs(60),
            )
            .await
            .map(|o| o.stdout_str().trim().to_string())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i.to_string());
    }
}

/// The host going away mid-command is an error naming the host and the
/// command, at once, not a hang until the deadline.
#[tokio::test]
async fn the_host_going_away_mid_command_is_an_error_not_a_hang() {
    let Some(mut f) = Fix::start("host goes away", "ed25519") else {
        return;
    };
    let s = f.connect().await;
    let run = {
        let s = s.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            (
                s.run(&Cmd::new("sleep").arg("30"), Duration::from_secs(25))
                    .await,
                t0.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    f.sshd.stop();
    let (res, took) = run.await.unwrap();
    let err = res.unwrap_err();
    println!("host gone: {err} (after {took:?})");
    assert!(matches!(err, SshError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("lab1") && err.to_string().contains("sleep 30"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = s
        .run(&Cmd::new("true"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SshError::Io { .. } | SshError::Timeout { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn connecting_fails_fast_and_names_the_host() {
    // Nothing listens: refused.
    let addr = loopback_addr().unwrap();
    let cfg = Config::new("ghost", addr.ip().to_string(), "root")
        .port(addr.port())
        .agent(false)
        .connect_timeout(Duration::from_secs(5));
    let err = Session::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("ghost (root@{addr})")),
        "{err}"
    );
    // A listener that never speaks: the connect deadline.
    let l = std::net::TcpListener::bind(loopback_addr().unwrap()).unwrap();
    let a = l.local_addr().unwrap();
    let cfg = Config::new("mute", a.ip().to_string(), "root")
        .port(a.port())
        .agent(false)
        .connect_timeout(Duration::from_millis(700));
    let t0 = Instant::now();
    let err = Session::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Names and users are validated before anything is sent.
    for (host, user) in [
        ("-oProxyCommand=id", "root"),
        ("127.0.0.1", "root;id"),
        ("a b", "root"),
    ] {
        let err = Session::connect(&Config::new("x", host, user))
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::InvalidArgument { .. }), "{err}");
    }
}

/// `sudo -n --` for a non-root user: the prefix reaches the remote shell.
/// With sudo installed and the user allowed, the command runs as root;
/// otherwise sudo's absence or refusal is the (checked) failure.
#[tokio::test]
async fn sudo_prefixes_commands_of_a_non_root_user() {
    let Some(f) = Fix::start("sudo", "ed25519") else {
        return;
    };
    let cfg = Config::new("x", "127.0.0.1", "admin").sudo(true);
    assert!(cfg.sudo_effective());
    assert!(
        !Config::new("x", "127.0.0.1", "root")
            .sudo(true)
            .sudo_effective()
    );
    let cmd = Cmd::new("id").arg("-un");
    assert_eq!(cmd.command_line(true).unwrap(), "sudo -n -- id -un");

    // As root, an explicit .sudo(true): the prefix reaches the remote
    // shell for real (sudo runs it, or the shell says sudo is missing).
    let root = f.connect().await;
    let out = root.run(&cmd.clone().sudo(true), T).await.unwrap();
    if out.success() {
        assert_eq!(out.stdout_str(), "root\n");
    } else {
        assert_eq!(out.status, ExitStatus::Code(127), "{}", out.stderr_str());
        assert!(out.stderr_str().contains("sudo"), "{}", out.stderr_str());
        println!(
            "sudo is not installed here: `sudo -n -- id -un` reached the host and failed with 127"
        );
    }
    root.close().await;

    // A non-root user of this machine with a login shell and an account
    // sshd does not consider locked (`!` in /etc/shadow), if any: the
    // fixture's authorized_keys holds for every user.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = |u: &str| {
        shadow.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.first() == Some(&u) && f.get(1).is_some_and(|h| h.starts_with('!'))
        })
    };
    let user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let uid: u32 = f.get(2)?.parse().ok()?;
        let shell = f.get(6)?;
        ((1000..60000).contains(&uid)
            && (shell.ends_with("/sh") || shell.ends_with("/bash"))
            && !locked(f[0]))
        .then(|| f[0].to_string())
    });
    let Some(user) = user else {
        testlab::skip::part(
            "sudo over ssh as a non-root user",
            "this machine has no unlocked non-root user with a shell (the `sudo -n --` prefix was checked above)",
        );
        return;
    };
    // sshd reads authorized_keys as the user: let it through the test's
    // private temporary directory.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = f.cfg().sudo(true);
    cfg.target.user = user.clone();
    let s = match Session::connect(&cfg).await {
        Ok(s) => s,
        Err(e) => panic!("{e}\nsshd log:\n{}", f.sshd.log_tail(20)),
    };
    let plain = s
        .run_checked(&Cmd::new("id").arg("-un").sudo(false), T)
        .await
        .unwrap();
    assert_eq!(plain.stdout_str().trim(), user);
    assert!(s.display(&cmd).starts_with("sudo -n -- id"));
    let out = s.run(&cmd, T).await.unwrap();
    if out.success() {
        assert_eq!(out.stdout_str(), "root\n");
        println!("sudo -n ran as root for {user}");
    } else {
        let err = out.clone().check(&cmd, s.target()).unwrap_err().to_string();
        testlab::skip::part(
            &format!("sudo itself for {user}"),
            &format!(
                "{} (the prefix reached the host, as the error shows: {err})",
                if out.status == ExitStatus::Code(127) {
                    "sudo is not installed"
                } else {
                    "sudo refused (no NOPASSWD rule)"
                }
            ),
        );
        assert!(out.stderr_str().contains("sudo"), "{}", out.stderr_str());
    }
}

#[test]
fn arguments_arrive_byte_for_byte() {
    use proptest::prelude::*;
    let Some(f) = Fix::start("quoting proptest", "ed25519") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(f.connect());
    let special = "[ a-z'\"$;\\\\\n\t`*?&|<>(){}#~!%=^\\[\\]-]{0,12}";
    let arg = prop_oneof![
        3 => special,
        1 => "[^\u{0}]{0,8}",
        1 => Just(String::new()),
        1 => Just("-n".to_string()),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(arg, 1..6), |args| {
        let cmd = Cmd::new("printf").arg("%s\\0").args(args.clone());
        let out = rt
            .block_on(s.run_checked(&cmd, T))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut expected = Vec::new();
        for a in &args {
            expected.extend_from_slice(a.as_bytes());
            expected.push(0);
        }
        prop_assert_eq!(out.stdout, expected, "args {:?}", args);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
