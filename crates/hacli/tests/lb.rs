//! `hacli lb` against the pfSense stand-in in a lab host, over SSH: exit
//! codes, `--dry-run` changing nothing, a second add saying it is already
//! done, `show` in JSON.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use hacore::backend::LbOp;
use hacore::topology::{CheckKind, Topology};
use pfsense::lb::{LbBackend, LbOptions};
use testlab::lblab::{LbLab, Via};

#[path = "common/secrets.rs"]
mod by_value;

fn hacli(topology: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .arg("--topology")
        .arg(topology)
        .env_remove("HACLI_TOPOLOGY")
        .env_remove("HACLI_LB_RUNTIME_API")
        .output()
        .expect("run hacli")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn lb_commands_over_ssh() {
    let Some(lab) = LbLab::start_or_skip("lb_commands_over_ssh") else {
        return;
    };
    let topo = lab.topology(Via::PfsenseSsh);
    let (m2, a2) = lab.masters[1].clone();
    let addr = a2.to_string();

    // No pool yet: refused (exit 1), naming it.
    let o = hacli(
        &topo,
        &["lb", "add-server", &m2, "--address", &addr, "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no pool named k8s-apiserver"),
        "{}",
        text(&o)
    );

    let (t, _) = Topology::load(&topo).unwrap();
    let lb = LbBackend::from_topology(&t, &LbOptions::default()).unwrap();
    for op in [
        LbOp::CreateVip {
            address: lab.vip,
            prefix: 24,
            interface: "lan".into(),
            description: "test".into(),
        },
        LbOp::CreatePool {
            pool: "k8s-apiserver".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "200ms".parse().unwrap(),
            fall: 2,
            rise: 1,
            servers: vec![lab.masters[0].clone()],
        },
        LbOp::CreateFrontend {
            frontend: SocketAddr::new(lab.vip, 6443),
            pool: "k8s-apiserver".into(),
        },
    ] {
        lb.apply_op(&op).unwrap();
    }

    let before = lab.pfsense.config_xml();
    let o = hacli(
        &topo,
        &["lb", "add-server", &m2, "--address", &addr, "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "would add server {m2} ({}:{})",
            a2.ip(),
            a2.port()
        )),
        "{}",
        text(&o)
    );
    assert_eq!(
        lab.pfsense.config_xml(),
        before,
        "--dry-run changed config.xml"
    );

    let o = hacli(&topo, &["lb", "add-server", &m2, "--address", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("done: load-balancer:add-server"),
        "{}",
        text(&o)
    );
    let o = hacli(&topo, &["lb", "add-server", &m2, "--address", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("already in place"), "{}", text(&o));

    // The live view: both servers, from the pfSense box's runtime socket.
    let mut up = false;
    for _ in 0..50 {
        let o = hacli(&topo, &["lb", "show", "-o", "json"]);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
        let servers = v["servers"].as_array().cloned().unwrap_or_default();
        assert_eq!(servers.len(), 2, "{v}");
        if o.status.code() == Some(0) && servers.iter().all(|s| s["status"] == "UP") {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(up, "both servers UP in `hacli lb show`");

    // The same pool over pfSense's REST API, the key in PFSENSE_API_KEY:
    // the key, by value, is in no output, accepted or refused.
    let rest = lab.topology(Via::PfsenseRest);
    let key = lab.pfsense.api_key().to_string();
    let mut secrets = by_value::Secrets::new();
    secrets.add("pfrest API key", &key);
    let over_rest = |key: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(args)
            .arg("--topology")
            .arg(&rest)
            .env("PFSENSE_API_KEY", key)
            .env_remove("PFSENSE_USERNAME")
            .env_remove("PFSENSE_PASSWORD")
            .env_remove("HACLI_TOPOLOGY")
            .env_remove("HACLI_LB_RUNTIME_API")
            .output()
            .expect("run hacli")
    };
    let o = over_rest(&key, &["lb", "add-server", &m2, "--address", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("already in place"), "{}", text(&o));
    secrets.assert_absent("lb add-server over REST", &text(&o));
    let o = over_rest(&key, &["lb", "show", "-o", "json"]);
    assert!(text(&o).contains(&m2), "{}", text(&o));
    secrets.assert_absent("lb show over REST", &text(&o));
    let wrong = "wrong-pfrest-key-0123456789";
    let o = over_rest(wrong, &["lb", "remove-server", &m2, "--dry-run"]);
    assert_ne!(o.status.code(), Some(0), "a wrong key: {}", text(&o));
    assert!(
        text(&o).contains("PFSENSE_API_KEY"),
        "the refusal names the variable: {}",
        text(&o)
    );
    assert!(
        !text(&o).contains(wrong),
        "the wrong key is shown: {}",
        text(&o)
    );
    secrets.assert_absent("lb remove-server with a wrong key", &text(&o));

    let o = hacli(&topo, &["lb", "remove-server", &m2]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = hacli(&topo, &["lb", "show"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&format!(" {m2} ")),
        "{}",
        text(&o)
    );
}
