//! The load-balancer backend end to end, over each transport, against
//! lab hosts: the pfSense stand-in (PHP over SSH, and pfrest over HTTPS)
//! and a Linux host running a real HAProxy. Traffic through the VIP
//! reaches the lab's apiserver stand-ins; every operation is idempotent;
//! the items that are not ours stay as they were; bad input is refused
//! with a clear error and changes nothing.

use std::net::SocketAddr;
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

#[test]
fn pfsense_over_ssh() {
    let Some(lab) = LbLab::start_or_skip("pfsense_over_ssh") else {
        return;
    };
    let mut lb = backend(&lab, Via::PfsenseSsh, LbOptions::default()).unwrap();
    through_vip(&lab, false);
    exercise(&lab, &mut lb, true);
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
    let cfg = std::fs::read_to_string(lab.lb_host.path("/etc/haproxy/haproxy.cfg")).unwrap();
    assert!(
        cfg.starts_with(LINUX_HAPROXY_CFG),
        "lines outside hacli's section changed:\n{cfg}"
    );
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
