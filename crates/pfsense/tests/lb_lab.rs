//! The load-balancer backend end to end, over each transport, against
//! lab hosts: the pfSense stand-in (PHP over SSH, and pfrest over HTTPS)
//! and a Linux host running a real HAProxy. Traffic through the VIP
//! reaches the lab's apiserver stand-ins; every operation is idempotent;
//! the items that are not ours stay as they were; bad input is refused
//! with a clear error and changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hacore::backend::{LbOp, LoadBalancer};
use hacore::topology::{CheckKind, Topology};
use hacore::units::Dur;
use pfsense::lb::model::Edit;
use pfsense::lb::{LbBackend, LbError, LbOptions, rest::Credentials};
use serde_json::json;
use testlab::lblab::{LINUX_HAPROXY_CFG, LbLab, Via};

fn backend(lab: &LbLab, via: Via, opts: LbOptions) -> Result<LbBackend, LbError> {
    let (t, _) = Topology::load(&lab.topology(via)).expect("the lab's topology is valid");
    let opts = LbOptions {
        timeout: Duration::from_secs(30),
        rest_credentials: Some(Credentials::ApiKey(lab.pfsense.api_key().to_string())),
        ..opts
    };
    LbBackend::from_topology(&t, &opts)
}

/// Each operation: not done, applied (a change), done, applied again (no change).
fn once_then_noop(lb: &mut LbBackend, op: &LbOp) {
    if matches!(op, LbOp::VerifyServersUp { .. }) {
        assert!(!lb.apply_op(op).unwrap(), "a check changes nothing");
        assert!(lb.is_done(op).unwrap());
        return;
    }
    assert!(
        !lb.is_done(op).unwrap(),
        "{op:?} done before it was applied"
    );
    let changed = lb.apply_op(op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(changed, "{op:?}: the first apply must change something");
    assert!(lb.is_done(op).unwrap(), "{op:?} not done after apply");
    assert!(
        !lb.apply_op(op).unwrap(),
        "{op:?}: the second apply must change nothing"
    );
}

fn through_vip(lab: &LbLab, expect_ok: bool) {
    let rt = lab.handle();
    let load = testlab::load::Load::start(
        &rt,
        SocketAddr::new(lab.vip, 6443),
        "kubernetes",
        &lab.ca_pem,
        "/readyz",
        50,
        Duration::from_secs(2),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let r = load.stop(&rt);
    assert!(r.sent() >= 20, "sent {}", r.sent());
    if expect_ok {
        if r.failed() > 0 {
            let pf = &lab.pf_host;
            let diag = [
                pf.exec_ok(&["ip", "-o", "addr"]).unwrap_or_default(),
                pf.exec_ok(&["ss", "-ltn"]).unwrap_or_default(),
                pf.exec_ok(&["ip", "route"]).unwrap_or_default(),
                String::from_utf8_lossy(
                    &std::process::Command::new("ip")
                        .args(["route", "get", &lab.vip.to_string()])
                        .output()
                        .unwrap()
                        .stdout,
                )
                .to_string(),
                String::from_utf8_lossy(
                    &std::process::Command::new("ip")
                        .args(["neigh"])
                        .output()
                        .unwrap()
                        .stdout,
                )
                .to_string(),
            ];
            panic!(
                "through the VIP: {:?}\n{}",
                r.errors(),
                diag.join("\n---\n")
            );
        }
    } else {
        assert_eq!(r.failed(), r.sent(), "the VIP should not answer yet");
    }
}

/// The migration's load-balancer steps, then one server more and one less.
fn exercise(lab: &LbLab, lb: &mut LbBackend, dns: bool) {
    let seed = lb.read().unwrap();
    let pool = "k8s-apiserver".to_string();
    let m = &lab.masters;
    let mut ops = vec![LbOp::CreateVip {
        address: lab.vip,
        prefix: 24,
        interface: "lan".into(),
        description: "lab Kubernetes API VIP".into(),
    }];
    if dns {
        ops.push(LbOp::CreateDnsRecord {
            name: "k8s-api.lab.lan".into(),
            address: lab.vip,
        });
    }
    ops.extend([
        LbOp::CreatePool {
            pool: pool.clone(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "200ms".parse::<Dur>().unwrap(),
            fall: 2,
            rise: 1,
            servers: vec![(m[0].0.clone(), m[0].1)],
        },
        LbOp::CreateFrontend {
            frontend: SocketAddr::new(lab.vip, 6443),
            pool: pool.clone(),
        },
    ]);
    for op in &ops {
        once_then_noop(lb, op);
    }
    lb.apply_op(&LbOp::VerifyServersUp {
        pool: pool.clone(),
        servers: vec![m[0].0.clone()],
    })
    .unwrap();
    through_vip(lab, true);
    for (name, addr) in &m[1..] {
        once_then_noop(
            lb,
            &LbOp::AddServer {
                pool: pool.clone(),
                server: name.clone(),
                address: *addr,
            },
        );
    }
    let all: Vec<String> = m.iter().map(|x| x.0.clone()).collect();
    once_then_noop(
        lb,
        &LbOp::VerifyServersUp {
            pool: pool.clone(),
            servers: all.clone(),
        },
    );
    let stats = lb.stats().unwrap();
    let rows = stats.pool(&pool).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    once_then_noop(
        lb,
        &LbOp::RemoveServer {
            pool: pool.clone(),
            server: m[2].0.clone(),
        },
    );
    through_vip(lab, true);

    // What is not ours is as it was.
    let now = lb.read().unwrap();
    for p in &seed.pools {
        assert_eq!(now.pool(&p.name), Some(p), "pool {} changed", p.name);
    }
    for f in &seed.frontends {
        assert!(now.frontends.contains(f), "frontend {} changed", f.name);
    }

    // Bad input: a pool that does not exist is refused, nothing changes.
    let before = lb.read().unwrap();
    let e = lb
        .apply_op(&LbOp::AddServer {
            pool: "no-such-pool".into(),
            server: "x".into(),
            address: m[0].1,
        })
        .unwrap_err();
    assert!(matches!(e, LbError::Refused(_)), "{e}");
    assert!(e.to_string().contains("no-such-pool"), "{e}");
    assert_eq!(lb.read().unwrap(), before);
}

/// The apiserver pool's backend section in `cfg` (a rendered
/// haproxy.cfg) fails over fast: a 1 s connect (the default), 3 retries,
/// each on another server, and checks bounded by their 200 ms interval.
fn fails_over_fast(cfg: &str, backend: &str) {
    let lines: Vec<String> = cfg
        .lines()
        .skip_while(|l| l.trim() != format!("backend {backend}"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && l.starts_with(char::is_whitespace))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "timeout connect 1000",
        "retries 3",
        "option redispatch 1",
        "timeout check 200",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "backend {backend} lacks `{want}`: {lines:#?}\n{cfg}"
        );
    }
}

#[test]
fn pfsense_over_ssh() {
    let Some(lab) = LbLab::start_or_skip("pfsense_over_ssh") else {
        return;
    };
    let mut lb = backend(&lab, Via::PfsenseSsh, LbOptions::default()).unwrap();
    through_vip(&lab, false);
    exercise(&lab, &mut lb, true);
    fails_over_fast(&lab.pfsense.haproxy_cfg(), "k8s-apiserver_ipvANY");
    let vip = lab.vip.to_string();
    let addrs = lab
        .pf_host
        .exec_ok(&["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(
        addrs.contains(&format!("{vip}/24")),
        "the VIP is on pfSense's LAN: {addrs}"
    );
    assert_eq!(lab.pfsense.resolve("k8s-api.lab.lan"), vec![lab.vip]);
    assert!(
        lab.pfsense
            .config_xml()
            .contains("<descr><![CDATA[hacli: add server m3")
            || lab.pfsense.config_xml().contains("hacli: "),
        "write_config records what hacli did"
    );

    // A config HAProxy rejects is never written.
    let xml = lab.pfsense.config_xml();
    let bad = Edit::AddServer {
        pool: "k8s-apiserver".into(),
        server: json!({"name": "bad", "address": "198.18.0.250", "port": "6443", "advanced": "no-such-keyword"}),
    };
    let e = lb.block_on(
        lb.transport()
            .edit(&bad, tokio::time::Instant::now() + Duration::from_secs(20)),
    );
    let e = e.unwrap_err();
    assert!(matches!(e, LbError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("no-such-keyword"), "{e}");
    assert_eq!(lab.pfsense.config_xml(), xml);

    // A changed host key is refused, naming both fingerprints; an unknown
    // host is refused unless accept-new is asked for.
    let other = testlab::sshd::client_key(lab.dir(), "ed25519", None)
        .unwrap()
        .1;
    let kh = lab.dir().join("changed_known_hosts");
    let key: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(&kh, format!("{} {}\n", lab.pf_host.ip(), key.join(" "))).unwrap();
    let changed = backend(
        &lab,
        Via::PfsenseSsh,
        LbOptions {
            known_hosts: Some(kh),
            ..LbOptions::default()
        },
    )
    .unwrap();
    let e = changed.read().unwrap_err().to_string();
    let mut prints: Vec<&str> = e
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '`' || c == ')')
        .filter(|w| w.starts_with("SHA256:"))
        .collect();
    prints.sort();
    prints.dedup();
    assert_eq!(
        prints.len(),
        2,
        "both fingerprints, the recorded and the presented: {e}"
    );
    assert!(
        e.contains("changed_known_hosts:1"),
        "names the known_hosts line to fix: {e}"
    );
    let empty = lab.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let unknown = backend(
        &lab,
        Via::PfsenseSsh,
        LbOptions {
            known_hosts: Some(empty.clone()),
            ..LbOptions::default()
        },
    )
    .unwrap();
    assert!(
        unknown.read().is_err(),
        "an unknown host key must be refused"
    );
    let accept = backend(
        &lab,
        Via::PfsenseSsh,
        LbOptions {
            known_hosts: Some(empty.clone()),
            accept_new_host_key: true,
            ..LbOptions::default()
        },
    )
    .unwrap();
    accept.read().unwrap();
    assert!(
        std::fs::read_to_string(&empty)
            .unwrap()
            .contains("ssh-ed25519"),
        "accept-new records the key"
    );
}

#[test]
fn pfsense_over_rest() {
    let Some(lab) = LbLab::start_or_skip("pfsense_over_rest") else {
        return;
    };
    let mut lb = backend(&lab, Via::PfsenseRest, LbOptions::default()).unwrap();
    exercise(&lab, &mut lb, true);
    fails_over_fast(&lab.pfsense.haproxy_cfg(), "k8s-apiserver_ipvANY");
    assert_eq!(lab.pfsense.resolve("k8s-api.lab.lan"), vec![lab.vip]);

    // A busy config lock (pfrest's 503) is retried with backoff until it is free.
    let lock = lab.pfsense.hold_config_lock().unwrap();
    let held = std::time::Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(lock);
    });
    let (m3, a3) = lab.masters[2].clone();
    once_then_noop(
        &mut lb,
        &LbOp::AddServer {
            pool: "k8s-apiserver".into(),
            server: m3,
            address: a3,
        },
    );
    assert!(
        held.elapsed() >= Duration::from_secs(3),
        "the add waited for the lock"
    );
    release.join().unwrap();

    let wrong = backend(
        &lab,
        Via::PfsenseRest,
        LbOptions {
            rest_credentials: Some(Credentials::ApiKey("wrong-key-0123".into())),
            ..LbOptions::default()
        },
    );
    // `backend` sets the lab's key; build the wrong one by hand.
    drop(wrong);
    let (t, _) = Topology::load(&lab.topology(Via::PfsenseRest)).unwrap();
    let bad = LbBackend::from_topology(
        &t,
        &LbOptions {
            rest_credentials: Some(Credentials::ApiKey("wrong-key-0123".into())),
            ..LbOptions::default()
        },
    )
    .unwrap();
    let e = bad.read().unwrap_err();
    assert!(matches!(e, LbError::Auth { status: 401, .. }), "{e}");
    assert!(
        !e.to_string().contains("wrong-key-0123"),
        "the key must not be in the error: {e}"
    );
    assert!(
        !format!("{bad:?}").contains("wrong-key-0123"),
        "nor in Debug"
    );
}

#[test]
fn plain_haproxy_over_ssh() {
    let Some(lab) = LbLab::start_or_skip("plain_haproxy_over_ssh") else {
        return;
    };
    let mut lb = backend(&lab, Via::Haproxy, LbOptions::default()).unwrap();
    exercise(&lab, &mut lb, false);
    // Issue 21: the VIP hacli added carries its label; an address someone
    // added by hand does not, and is never deleted by hacli.
    let addrs = lab.lb_host.exec_ok(&["ip", "-o", "addr", "show"]).unwrap();
    assert!(
        addrs
            .lines()
            .any(|l| l.contains(&format!(" {}/", lab.vip)) && l.contains(":hacli")),
        "{addrs}"
    );
    let by_hand: IpAddr = match lab.vip {
        IpAddr::V4(v) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v) - 2)),
        other => other,
    };
    lab.lb_host
        .exec_ok(&["ip", "addr", "add", &format!("{by_hand}/32"), "dev", "eth0"])
        .unwrap();
    let e = lb
        .apply_op(&LbOp::DeleteVip { address: by_hand })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("virtual IP {by_hand}/32 on eth0 (no description) was not created by hacli: not deleting it")),
        "{e}"
    );
    assert!(
        lab.lb_host
            .exec_ok(&["ip", "-o", "addr", "show"])
            .unwrap()
            .contains(&format!(" {by_hand}/32"))
    );
    lab.lb_host
        .exec_ok(&["ip", "addr", "del", &format!("{by_hand}/32"), "dev", "eth0"])
        .unwrap();
    let cfg = std::fs::read_to_string(lab.lb_host.path("/etc/haproxy/haproxy.cfg")).unwrap();
    assert!(
        cfg.starts_with(LINUX_HAPROXY_CFG),
        "lines outside hacli's section changed:\n{cfg}"
    );
    fails_over_fast(&cfg, "k8s-apiserver");
    let bad = Edit::AddServer {
        pool: "k8s-apiserver".into(),
        server: json!({"name": "bad", "address": "198.18.0.250", "port": "6443", "advanced": "no-such-keyword"}),
    };
    let e = lb
        .block_on(
            lb.transport()
                .edit(&bad, tokio::time::Instant::now() + Duration::from_secs(20)),
        )
        .unwrap_err();
    assert!(matches!(e, LbError::Invalid { .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(lab.lb_host.path("/etc/haproxy/haproxy.cfg")).unwrap(),
        cfg
    );
}

/// The state a pool's change leaves, as each part of pfSense shows it:
/// the pool in `config.xml` (and whether a change waits for its apply),
/// the `server` lines of the `haproxy.cfg` rendered from it, and the
/// servers of the running HAProxy (`show stat`).
#[derive(Debug, PartialEq)]
struct PoolState {
    pool: Option<pfsense::lb::model::Pool>,
    pending: bool,
    cfg_servers: Vec<String>,
    running: Vec<String>,
}

fn pool_state(lab: &LbLab, lb: &LbBackend, pool: &str) -> PoolState {
    let cfg = lb.read().unwrap();
    let text = lab.pfsense.haproxy_cfg();
    let mut in_pool = false;
    let mut cfg_servers = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with("backend ") || t.starts_with("frontend ") || t.starts_with("listen ") {
            in_pool = t.contains(pool);
        } else if in_pool && t.split_whitespace().next() == Some("server") {
            cfg_servers.push(t.to_string());
        }
    }
    let mut running: Vec<String> = lb
        .stats()
        .unwrap()
        .pool(pool)
        .unwrap()
        .iter()
        .map(|r| r.server.clone())
        .collect();
    running.sort();
    PoolState {
        pool: cfg.pool(pool).cloned(),
        pending: cfg.pending,
        cfg_servers,
        running,
    }
}

const CHILD_ENV: &str = "HACLI_TEST_LB_CHILD";

/// Not a test of its own: the child process that
/// `a_pfsense_write_killed_before_its_apply_is_applied_by_the_op_again`
/// starts and SIGKILLs between pfrest's write and its apply.
#[test]
#[ignore = "the child process of a_pfsense_write_killed_before_its_apply_is_applied_by_the_op_again"]
fn child_adds_a_server_over_rest() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        println!(
            "SKIPPED: runs only as the child process of a_pfsense_write_killed_before_its_apply_is_applied_by_the_op_again"
        );
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let (t, _) = Topology::load(std::path::Path::new(v["topology"].as_str().unwrap())).unwrap();
    let lb = LbBackend::from_topology(
        &t,
        &LbOptions {
            timeout: Duration::from_secs(120),
            rest_credentials: Some(Credentials::ApiKey(
                std::env::var("HACLI_TEST_LB_KEY").unwrap(),
            )),
            ..LbOptions::default()
        },
    )
    .unwrap();
    let op = LbOp::AddServer {
        pool: v["pool"].as_str().unwrap().into(),
        server: v["server"].as_str().unwrap().into(),
        address: v["address"].as_str().unwrap().parse().unwrap(),
    };
    lb.apply_op(&op).unwrap();
    println!("child: {op:?} applied");
}

/// A crash between pfSense's config write and its apply: pfrest writes a
/// pool's new server to `config.xml` (and marks HAProxy dirty), then a
/// separate call applies it. The process carrying the op out is SIGKILLed
/// after the write was answered by pfrest and before it asked for the
/// apply (the stand-in holds the write's answer back). Then: the written
/// server is in `config.xml`, pending; the running HAProxy does not have
/// it; `is_done` says not done; the op again applies what was written
/// (over pfrest, and in a second round over SSH and PHP, the
/// `apply-haproxy` operation) without writing a second server; the end
/// state equals the uninterrupted run's.
#[test]
fn a_pfsense_write_killed_before_its_apply_is_applied_by_the_op_again() {
    let Some(lab) =
        LbLab::start_or_skip("a_pfsense_write_killed_before_its_apply_is_applied_by_the_op_again")
    else {
        return;
    };
    let rest = backend(&lab, Via::PfsenseRest, LbOptions::default()).unwrap();
    let ssh = backend(&lab, Via::PfsenseSsh, LbOptions::default()).unwrap();
    let pool = "k8s-apiserver".to_string();
    let m = &lab.masters;
    for op in [
        LbOp::CreateVip {
            address: lab.vip,
            prefix: 24,
            interface: "lan".into(),
            description: "lab Kubernetes API VIP".into(),
        },
        LbOp::CreatePool {
            pool: pool.clone(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "200ms".parse::<Dur>().unwrap(),
            fall: 2,
            rise: 1,
            servers: vec![(m[0].0.clone(), m[0].1)],
        },
        LbOp::CreateFrontend {
            frontend: SocketAddr::new(lab.vip, 6443),
            pool: pool.clone(),
        },
    ] {
        rest.apply_op(&op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    let (name, address) = m[1].clone();
    let add = LbOp::AddServer {
        pool: pool.clone(),
        server: name.clone(),
        address,
    };
    let remove = LbOp::RemoveServer {
        pool: pool.clone(),
        server: name.clone(),
    };
    // The uninterrupted run.
    assert!(rest.apply_op(&add).unwrap());
    let reference = pool_state(&lab, &rest, &pool);
    assert!(!reference.pending);
    assert_eq!(reference.running.len(), 2, "{reference:?}");
    assert!(rest.apply_op(&remove).unwrap());
    let revisions_before = lab.pfsense.backups().len();

    let write_path = "services/haproxy/backend/server";
    for (round, via) in [
        ("pfrest", Via::PfsenseRest),
        ("PHP over SSH", Via::PfsenseSsh),
    ] {
        // The resumed run is a new process: a new backend.
        let mut resume = backend(&lab, via, LbOptions::default()).unwrap();
        lab.pfsense
            .delay_rest_answer("POST", write_path, Duration::from_secs(60));
        let spec = json!({
            "topology": lab.topology(Via::PfsenseRest),
            "pool": pool,
            "server": name,
            "address": address.to_string(),
        });
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "child_adds_a_server_over_rest",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, spec.to_string())
            .env("HACLI_TEST_LB_KEY", lab.pfsense.api_key())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Written (config.xml has the server, HAProxy is dirty): kill it.
        let t0 = std::time::Instant::now();
        loop {
            let cfg = ssh.read().unwrap();
            let written = cfg
                .pool(&pool)
                .is_some_and(|p| p.servers.iter().any(|s| s.name == name));
            if written && cfg.pending {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{round}: the child ended ({st}) before its write was seen: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{round}: no write within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "{round}: the child still waits for the write's answer"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "{round}: {status}");
        lab.pfsense
            .delay_rest_answer("POST", write_path, Duration::ZERO);
        println!(
            "{round}: killed {:.1} s after the start, the write in config.xml, its apply never asked",
            t0.elapsed().as_secs_f64()
        );

        // Written, not applied.
        let crashed = pool_state(&lab, &resume, &pool);
        assert!(crashed.pending, "{round}: {crashed:?}");
        assert_eq!(
            crashed.pool.as_ref().map(|p| p.servers.len()),
            Some(2),
            "{round}: {crashed:?}"
        );
        assert!(
            !crashed.running.contains(&name),
            "{round}: the running HAProxy has no {name} yet: {crashed:?}"
        );
        assert!(
            !crashed.cfg_servers.iter().any(|l| l.contains(&name)),
            "{round}: haproxy.cfg was not rendered with {name}: {crashed:?}"
        );
        assert!(
            !resume.is_done(&add).unwrap(),
            "{round}: is_done must say not done while the write waits for its apply"
        );

        // The op again: the apply runs, nothing is written twice.
        assert!(resume.apply_op(&add).unwrap(), "{round}: the apply ran");
        assert!(resume.is_done(&add).unwrap(), "{round}");
        assert!(
            !resume.apply_op(&add).unwrap(),
            "{round}: once more changes nothing"
        );
        let end = pool_state(&lab, &resume, &pool);
        assert_eq!(end, reference, "{round}: as the uninterrupted run");
        let end_rest = pool_state(&lab, &rest, &pool);
        assert_eq!(end_rest, reference, "{round}: pfrest reads the same");
        println!("{round}: resumed, as the uninterrupted run: {end:?}");
        assert!(rest.apply_op(&remove).unwrap());
    }
    assert!(
        lab.pfsense.backups().len() > revisions_before,
        "write_config kept revisions"
    );
}

/// A master powered off behind the Linux HAProxy, seen at the same time
/// by two pools of the same three masters, checked every 2 s (fall 3,
/// rise 2, the defaults): the pool as hacli creates it, and the same pool without its
/// failover settings (no `timeout connect` of its own, so the defaults'
/// 5 s; no retry on another server; no `timeout check`; no `fastinter`),
/// as it was before. Fresh TLS connections through each at 20/s with a
/// 2 s deadline. hacli's pool answers every one (those sent to the dead
/// master are retried on a live one after 1 s) and marks the master DOWN
/// within fall × inter plus one interval; the old pool loses the
/// connections it sends there until it marks it DOWN, later.
#[test]
fn a_powered_off_master_costs_latency_not_failures() {
    use hacore::topology::HealthCheck;
    use pfsense::ServerStatus;
    use pfsense::lb::model;

    let Some(lab) = LbLab::start_or_skip("a_powered_off_master_costs_latency_not_failures") else {
        return;
    };
    let lb = backend(&lab, Via::Haproxy, LbOptions::default()).unwrap();
    let names: Vec<String> = lab.masters.iter().map(|m| m.0.clone()).collect();
    let create = |pool: &str| LbOp::CreatePool {
        pool: pool.into(),
        check: CheckKind::Https,
        path: Some("/readyz".into()),
        interval: Dur::secs(2),
        fall: 3,
        rise: 2,
        servers: lab.masters.clone(),
    };
    lb.apply_op(&LbOp::CreateVip {
        address: lab.vip,
        prefix: 24,
        interface: "lan".into(),
        description: "lab VIP".into(),
    })
    .unwrap();
    lb.apply_op(&create("fast")).unwrap();
    // The old pool: the item as hacli wrote it before.
    let Some(model::Edit::AddPool { pool: mut old }) =
        model::edit_for(&create("old"), &lb.read().unwrap(), &HealthCheck::default()).unwrap()
    else {
        panic!("expected an AddPool edit")
    };
    for k in ["connection_timeout", "retries", "advanced_backend"] {
        old[k] = json!("");
    }
    for s in old["ha_servers"]["item"].as_array_mut().unwrap() {
        s["advanced"] = json!("fall 3 rise 2");
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(
        lb.block_on(
            lb.transport()
                .edit(&model::Edit::AddPool { pool: old }, until)
        )
        .unwrap()
    );
    let fronts = [
        ("fast", SocketAddr::new(lab.vip, 6443)),
        ("old", SocketAddr::new(lab.vip, 6444)),
    ];
    for (pool, frontend) in fronts {
        lb.apply_op(&LbOp::CreateFrontend {
            frontend,
            pool: pool.into(),
        })
        .unwrap();
        lb.apply_op(&LbOp::VerifyServersUp {
            pool: pool.into(),
            servers: names.clone(),
        })
        .unwrap();
    }

    let rt = lab.handle();
    let loads: Vec<testlab::load::Load> = fronts
        .iter()
        .map(|(_, a)| {
            testlab::load::Load::start(
                &rt,
                *a,
                "kubernetes",
                &lab.ca_pem,
                "/readyz",
                20,
                Duration::from_secs(2),
            )
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let off = loads[0].elapsed();
    let off_at = std::time::Instant::now();
    lab.set_master_power(0, false).unwrap();
    // When each pool's HAProxy marked m1 DOWN.
    let mut down: [Option<Duration>; 2] = [None, None];
    while down.iter().any(Option::is_none) && off_at.elapsed() < Duration::from_secs(25) {
        if let Ok(stats) = lb.stats() {
            for (i, (pool, _)) in fronts.iter().enumerate() {
                let dead = stats.pool(pool).is_ok_and(|rows| {
                    rows.iter()
                        .any(|r| r.server == names[0] && r.status == Some(ServerStatus::Down))
                });
                if dead && down[i].is_none() {
                    down[i] = Some(off_at.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let reports: Vec<testlab::load::Report> = loads.into_iter().map(|l| l.stop(&rt)).collect();
    lab.set_master_power(0, true).unwrap();
    for (i, (pool, _)) in fronts.iter().enumerate() {
        let r = &reports[i];
        let after = r.between(off, off + Duration::from_secs(30));
        println!(
            "power-off figures: pool {pool}: sent {} failed {} {:?}, longest gap {:?}, p99 after the power-off {:?}, DOWN {:?} after the power-off",
            r.sent(),
            r.failed(),
            r.errors(),
            r.longest_gap(),
            after.latency(0.99),
            down[i]
        );
    }
    let (fast, old) = (&reports[0], &reports[1]);
    let fast_down = down[0].expect("hacli's pool marked the master DOWN");
    assert_eq!(fast.failed(), 0, "{:?}", fast.errors());
    // The connections sent to the dead master waited for the 1 s connect
    // and were answered by a live one.
    let slow = fast
        .attempts
        .iter()
        .filter(|a| a.took >= Duration::from_millis(900))
        .count();
    assert!(slow > 0, "no connection met the dead master");
    // DOWN within fall × inter plus one interval (where the power-off
    // fell between two checks) and some slack for a loaded machine: 8.5 s,
    // a benchmark figure. The test fails only at the old pool's 11 s
    // (checks that last a whole interval: `timeout check` lost).
    testlab::targets::figure(
        "hacli's pool (2 s checks, fall 3): DOWN after the power-off",
        &format!("{:.1} s", fast_down.as_secs_f64()),
        "<= 8.5 s",
        fast_down <= Duration::from_millis(8500),
    );
    assert!(
        fast_down <= Duration::from_secs(10),
        "DOWN {fast_down:?} after the power-off"
    );
    // The old pool: connections sent to the dead master time out.
    assert!(
        old.failed() > 0,
        "the old pool lost nothing: {:?}",
        old.errors()
    );
    if let Some(old_down) = down[1] {
        testlab::targets::figure(
            "main's pool marks the master DOWN later than hacli's",
            &format!(
                "{:.1} s against {:.1} s",
                old_down.as_secs_f64(),
                fast_down.as_secs_f64()
            ),
            "later",
            old_down > fast_down,
        );
    }
}

/// The plain HAProxy's `haproxy.cfg` as an administrator keeps it
/// (`root:nogroup`, 0640). A change keeps that owner and mode. A reload
/// that fails after the new file is in place (the reload command sees it)
/// puts the previous file back, with its owner and mode, and the edit is
/// "not done"; the running HAProxy never gets the server. An administrator
/// who edits the file while hacli's new file is being validated keeps
/// that edit: hacli writes nothing and says the file changed.
#[test]
fn a_plain_haproxy_reload_that_fails_puts_the_previous_file_back() {
    use std::os::unix::fs::MetadataExt as _;

    let Some(lab) =
        LbLab::start_or_skip("a_plain_haproxy_reload_that_fails_puts_the_previous_file_back")
    else {
        return;
    };
    let cfg = lab.lb_host.path("/etc/haproxy/haproxy.cfg");
    lab.lb_host
        .exec_ok(&["chown", "0:65534", "/etc/haproxy/haproxy.cfg"])
        .unwrap();
    lab.lb_host
        .exec_ok(&["chmod", "0640", "/etc/haproxy/haproxy.cfg"])
        .unwrap();
    let owner = || {
        let m = std::fs::metadata(&cfg).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner(), (0, 65534, 0o640));
    let lb = backend(&lab, Via::Haproxy, LbOptions::default()).unwrap();
    let m = &lab.masters;
    let changed = lb
        .apply_op(&LbOp::CreatePool {
            pool: "k8s-apiserver".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "200ms".parse::<Dur>().unwrap(),
            fall: 2,
            rise: 1,
            servers: vec![(m[0].0.clone(), m[0].1)],
        })
        .unwrap();
    assert!(changed);
    assert_eq!(owner(), (0, 65534, 0o640), "a change keeps owner and mode");
    let before = std::fs::read_to_string(&cfg).unwrap();
    assert!(before.contains("backend k8s-apiserver"), "{before}");
    let add = Edit::AddServer {
        pool: "k8s-apiserver".into(),
        server: json!({"name": "extra-server", "address": m[1].1.ip().to_string(), "port": m[1].1.port().to_string()}),
    };
    let until = || tokio::time::Instant::now() + Duration::from_secs(30);

    // The reload fails; it ran with the new file in place (it counts the
    // new server in the file), then again with the previous file back.
    let topo = std::fs::read_to_string(lab.topology(Via::Haproxy)).unwrap();
    let failing = topo.replace(
        "kill -USR2 $(cat /etc/haproxy/haproxy.pid)",
        "grep -c extra-server /etc/haproxy/haproxy.cfg >> /tmp/seen-at-reload; echo reload refused; exit 3",
    );
    assert_ne!(failing, topo, "the lab's reload command is where it was");
    let path = lab.dir().join("topology-failing-reload.yaml");
    std::fs::write(&path, failing).unwrap();
    let (t, _) = Topology::load(&path).unwrap();
    let bad_lb = LbBackend::from_topology(
        &t,
        &LbOptions {
            timeout: Duration::from_secs(30),
            ..LbOptions::default()
        },
    )
    .unwrap();
    let e = bad_lb
        .block_on(bad_lb.transport().edit(&add, until()))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not done") && msg.contains("reload refused") && msg.contains("back in place"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(lab.lb_host.path("/tmp/seen-at-reload")).unwrap(),
        "1\n0\n",
        "the first reload saw the new file, the second the previous one"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        before,
        "the previous file is back"
    );
    assert_eq!(owner(), (0, 65534, 0o640), "with its owner and mode");
    let running: Vec<String> = lb
        .stats()
        .unwrap()
        .pool("k8s-apiserver")
        .unwrap()
        .iter()
        .map(|r| r.server.clone())
        .collect();
    assert!(!running.iter().any(|s| s == "extra-server"), "{running:?}");

    // An administrator's edit lands while the new file is validated (an
    // `haproxy` first on the host's PATH appends a line, then validates).
    if lab.lb_host.isolated() {
        let real = lab
            .lb_host
            .exec_ok(&["sh", "-c", "command -v haproxy"])
            .unwrap();
        let wrapper = format!(
            "#!/bin/sh\nif [ \"$1\" = -c ]; then echo \"# an administrator's edit\" >> /etc/haproxy/haproxy.cfg; fi\nexec {} \"$@\"\n",
            real.trim()
        );
        let out = lab
            .lb_host
            .exec_with(
                &[
                    "sh",
                    "-c",
                    "mkdir -p /usr/local/bin && cat > /usr/local/bin/haproxy && chmod 0755 /usr/local/bin/haproxy",
                ],
                &[],
                Some(&wrapper),
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let e = lb.block_on(lb.transport().edit(&add, until())).unwrap_err();
        lab.lb_host
            .exec_ok(&["rm", "-f", "/usr/local/bin/haproxy"])
            .unwrap();
        assert!(matches!(e, LbError::Busy { .. }), "{e}");
        assert!(
            e.to_string().contains("while the new file was validated"),
            "{e}"
        );
        let now = std::fs::read_to_string(&cfg).unwrap();
        assert_eq!(
            now,
            format!("{before}# an administrator's edit\n"),
            "the edit is kept"
        );
        // Asked again, the change is made on top of it.
        assert!(lb.block_on(lb.transport().edit(&add, until())).unwrap());
        let after = std::fs::read_to_string(&cfg).unwrap();
        assert!(
            after.contains("# an administrator's edit") && after.contains("extra-server"),
            "{after}"
        );
        assert_eq!(owner(), (0, 65534, 0o640));
    }
}
