//! The backend's PHP script against the pfSense stand-in's PHP (its
//! `config.inc`, `write_config`, the HAProxy package's
//! `haproxy_check_and_run` driving a real HAProxy), run exactly as the
//! SSH transport runs it (`php` with the program on stdin), without SSH.
//! The SSH and REST transports are exercised end to end in `lb_lab.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};

use hacore::backend::LbOp;
use hacore::topology::{CheckKind, HealthCheck};
use hacore::units::Dur;
use pfsense::lb::model::{self, Edit, LbConfig};
use pfsense::lb::php;
use serde_json::{Value, json};
use testlab::pfsense::{Pfsense, PfsenseOptions};

static N: AtomicU8 = AtomicU8::new(0);

/// `127.(225..229).(1..).1`: apart from the loopback lab (127.20-219) and
/// the stand-in's own tests (127.230-249).
fn test_ip() -> IpAddr {
    let x = 225 + (std::process::id() % 5) as u8;
    let y = 1 + N.fetch_add(1, Ordering::SeqCst);
    IpAddr::V4(Ipv4Addr::new(127, x, y, 1))
}

fn run(pf: &Pfsense, req: &Value) -> Value {
    let out = pf
        .php(req["op"].as_str().unwrap_or("?"), &php::program(req))
        .expect("php runs");
    php::answer(&out.stdout).unwrap_or_else(|| {
        panic!(
            "no answer from the script; stdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    })
}

fn read(pf: &Pfsense) -> LbConfig {
    let v = run(pf, &json!({"op": "read", "description": ""}));
    assert_eq!(v["ok"], json!(true), "{v}");
    serde_json::from_value(v["config"].clone()).expect("config shape")
}

/// Carry `op` out as the backend does: decide on a fresh read, one edit.
fn apply(pf: &Pfsense, op: &LbOp) -> bool {
    let cfg = read(pf);
    match model::edit_for(op, &cfg, &HealthCheck::default()).expect("not refused") {
        None => false,
        Some(e) => {
            let v = run(pf, &php::request(&e));
            assert_eq!(v["ok"], json!(true), "{}: {v}", e.describe());
            assert_eq!(
                model::is_done(op, &read(pf)),
                Some(true),
                "{op:?} not in place"
            );
            true
        }
    }
}

/// config.xml without its `<revision>` (time, description, user).
fn without_revision(xml: &str) -> String {
    match (xml.find("<revision>"), xml.find("</revision>")) {
        (Some(a), Some(b)) => format!("{}{}", &xml[..a], &xml[b + "</revision>".len()..]),
        _ => xml.to_string(),
    }
}

#[test]
fn each_operation_changes_its_item_only_and_twice_equals_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = test_ip();
    let Some(pf) = Pfsense::start_or_skip(
        "each_operation_changes_its_item_only",
        dir.path(),
        ip,
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let original = pf.config_xml();
    let seed = read(&pf);
    assert!(
        !seed.pools.is_empty(),
        "the seed holds pools that are not ours"
    );

    let IpAddr::V4(v4) = ip else { unreachable!() };
    let vip = IpAddr::V4(Ipv4Addr::new(
        v4.octets()[0],
        v4.octets()[1],
        v4.octets()[2],
        99,
    ));
    let api = |n: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 6443);
    let ops = [
        LbOp::CreateVip {
            address: vip,
            prefix: 24,
            interface: "lan".into(),
            description: "test VIP".into(),
        },
        LbOp::CreateDnsRecord {
            name: "k8s-api.lab.lan".into(),
            address: vip,
        },
        LbOp::CreatePool {
            pool: "k8s-apiserver".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: Dur::secs(2),
            fall: 3,
            rise: 2,
            servers: vec![("m1".into(), api(10))],
        },
        LbOp::CreateFrontend {
            frontend: SocketAddr::new(vip, 6443),
            pool: "k8s-apiserver".into(),
        },
        LbOp::AddServer {
            pool: "k8s-apiserver".into(),
            server: "m2".into(),
            address: api(11),
        },
    ];
    for op in &ops {
        assert!(
            apply(&pf, op),
            "{op:?} should change something the first time"
        );
        assert!(
            !apply(&pf, op),
            "{op:?} the second time must change nothing"
        );
    }
    let cfg = pf.haproxy_cfg();
    let words: Vec<String> = cfg
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(cfg.contains("k8s-apiserver_ipvANY"), "{cfg}");
    let m2 = words
        .iter()
        .find(|l| l.starts_with("server m2 127.0.0.11:6443"))
        .unwrap_or_else(|| panic!("no server line for m2:\n{cfg}"));
    assert!(
        m2.contains("check-ssl") && m2.contains("fall 3 rise 2"),
        "{m2}"
    );
    // The seed's items are untouched, in config.xml and as read.
    let now = read(&pf);
    for p in &seed.pools {
        assert_eq!(now.pool(&p.name), Some(p), "seed pool {} changed", p.name);
    }
    for f in &seed.frontends {
        assert!(
            now.frontends.contains(f),
            "seed frontend {} changed",
            f.name
        );
    }

    // Undo in reverse: config.xml is byte for byte what it was.
    let undo = [
        LbOp::RemoveServer {
            pool: "k8s-apiserver".into(),
            server: "m2".into(),
        },
        LbOp::DeleteFrontend {
            frontend: SocketAddr::new(vip, 6443),
        },
        LbOp::DeletePool {
            pool: "k8s-apiserver".into(),
        },
        LbOp::DeleteDnsRecord {
            name: "k8s-api.lab.lan".into(),
        },
        LbOp::DeleteVip { address: vip },
    ];
    for op in &undo {
        assert!(apply(&pf, op), "{op:?}");
        assert!(!apply(&pf, op), "{op:?} twice");
    }
    assert_eq!(
        without_revision(&pf.config_xml()),
        without_revision(&original),
        "adding then removing our items must leave config.xml as it was"
    );
}

#[test]
fn a_config_haproxy_rejects_is_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pf) = Pfsense::start_or_skip(
        "a_config_haproxy_rejects_is_never_written",
        dir.path(),
        test_ip(),
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let before = pf.config_xml();
    let cfg_before = pf.haproxy_cfg();
    let pool = read(&pf).pools[0].name.clone();
    let bad = Edit::AddServer {
        pool: pool.clone(),
        server: json!({"name": "bad", "address": "127.0.0.9", "port": "80", "status": "active",
            "advanced": "no-such-keyword 42"}),
    };
    let v = run(&pf, &php::request(&bad));
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["code"], "HAPROXY_CONFIG_INVALID", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no-such-keyword"),
        "{v}"
    );
    assert_eq!(pf.config_xml(), before, "config.xml must be unchanged");
    assert_eq!(
        pf.haproxy_cfg(),
        cfg_before,
        "haproxy.cfg must be unchanged"
    );

    let unknown = Edit::AddServer {
        pool: "no-such-pool".into(),
        server: json!({"name": "x", "address": "127.0.0.9", "port": "80"}),
    };
    let v = run(&pf, &php::request(&unknown));
    assert_eq!(v["code"], "NOT_FOUND", "{v}");
    assert!(v["error"].as_str().unwrap().contains("no-such-pool"), "{v}");
    assert_eq!(pf.config_xml(), before);
}
