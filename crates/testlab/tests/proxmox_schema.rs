//! Every endpoint of pve-api-schema.json answered by the stand-in, and every
//! answer checked against the schema's `returns` (strictly: an object with
//! `properties` may hold no other key unless `additionalProperties` is 1).

use std::collections::BTreeSet;
use std::time::Duration;

use proxmox::Method;
use proxmox::{Client, Settings, Token};
use serde_json::{Value, json};
use testlab::proxmox::schema::{check_value, schema};
use testlab::proxmox::{Inventory, ProxmoxLab, PveOptions, PveVm};

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_endpoint_answers_in_the_schema_shape() {
    let mut inv = Inventory::realistic();
    let mut agent = PveVm::new(220, "with-agent", "pve", true, 4, 2);
    agent.config.insert("agent".into(), "1".into());
    agent.config.insert(
        "ipconfig0".into(),
        "ip=198.18.20.120/24,gw=198.18.20.1".into(),
    );
    inv.vms.push(agent);
    let lab = ProxmoxLab::start_with(
        inv,
        PveOptions {
            task_time: Duration::from_millis(50),
            ..PveOptions::default()
        },
    )
    .unwrap();
    let cfg = Settings {
        endpoint: Some(lab.endpoint()),
        token: Some(Token::parse(&lab.api_token(), "test").unwrap()),
        ca_file: Some(lab.ca_path().to_path_buf()),
        ..Settings::default()
    }
    .build()
    .unwrap();
    let c = Client::new(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let call = |m: Method, path: &str, params: Vec<(String, String)>| -> Value {
        rt.block_on(c.request(m.clone(), path, &params))
            .unwrap_or_else(|e| panic!("{m} {path}: {e}"))
    };
    let wait = |upid: &Value| {
        let u: proxmox::Upid = upid.as_str().unwrap().parse().unwrap();
        // One status read while it runs, then until it ends.
        rt.block_on(c.task_status(&u)).unwrap();
        rt.block_on(c.wait_task(&u, deadline())).unwrap();
    };

    call(Method::GET, "/version", vec![]);
    call(Method::GET, "/cluster/nextid", vec![]);
    call(Method::GET, "/cluster/nextid", p(&[("vmid", "400")]));
    for ty in [None, Some("vm"), Some("node"), Some("storage")] {
        call(
            Method::GET,
            "/cluster/resources",
            ty.map(|t| p(&[("type", t)])).unwrap_or_default(),
        );
    }
    call(Method::GET, "/nodes", vec![]);
    call(Method::GET, "/nodes/pve/status", vec![]);
    call(
        Method::POST,
        "/nodes/pve/status",
        p(&[("command", "reboot")]),
    );
    call(Method::GET, "/nodes/pve/qemu", p(&[("full", "1")]));
    let u = call(
        Method::POST,
        "/nodes/pve/qemu",
        p(&[
            ("vmid", "400"),
            ("name", "scratch"),
            ("memory", "1024"),
            ("cores", "1"),
            ("scsi0", "local-lvm:vm-400-disk-0,size=4G"),
            ("ide2", "local-lvm:vm-400-cloudinit,media=cdrom"),
            ("net0", "virtio,bridge=vmbr0"),
        ]),
    );
    wait(&u);
    call(Method::GET, "/nodes/pve/qemu/400", vec![]);
    call(
        Method::GET,
        "/nodes/pve/qemu/220/agent/network-get-interfaces",
        vec![],
    );
    let u = call(
        Method::POST,
        "/nodes/pve/qemu/9000/clone",
        p(&[("newid", "401"), ("name", "clone-1"), ("full", "1")]),
    );
    call(Method::GET, "/nodes/pve/qemu/401/status/current", vec![]);
    wait(&u);
    call(
        Method::PUT,
        "/nodes/pve/qemu/401/config",
        p(&[
            ("cores", "2"),
            ("memory", "2048"),
            ("ipconfig0", "ip=198.18.20.141/24,gw=198.18.20.1"),
            ("ciuser", "debian"),
            (
                "sshkeys",
                &proxmox::encode_sshkeys(&["ssh-ed25519 AAAA me@x".into()]),
            ),
            ("nameserver", "198.18.20.1"),
        ]),
    );
    let u = call(
        Method::POST,
        "/nodes/pve/qemu/401/config",
        p(&[("tags", "hacli"), ("onboot", "1")]),
    );
    wait(&u);
    call(Method::GET, "/nodes/pve/qemu/401/config", vec![]);
    call(
        Method::GET,
        "/nodes/pve/qemu/401/config",
        p(&[("current", "1")]),
    );
    let u = call(
        Method::PUT,
        "/nodes/pve/qemu/401/resize",
        p(&[("disk", "scsi0"), ("size", "+2G")]),
    );
    wait(&u);
    call(Method::GET, "/nodes/pve/qemu/401/cloudinit", vec![]);
    call(Method::PUT, "/nodes/pve/qemu/401/cloudinit", vec![]);
    let u = call(
        Method::POST,
        "/nodes/pve/qemu/401/snapshot",
        p(&[("snapname", "first")]),
    );
    wait(&u);
    call(Method::GET, "/nodes/pve/qemu/401/snapshot", vec![]);
    call(Method::GET, "/nodes/pve/qemu/401/snapshot/first", vec![]);
    let u = call(Method::DELETE, "/nodes/pve/qemu/401/snapshot/first", vec![]);
    wait(&u);
    let u = call(Method::POST, "/nodes/pve/qemu/401/status/start", vec![]);
    wait(&u);
    call(Method::GET, "/nodes/pve/qemu/401/status/current", vec![]);
    let u = call(Method::POST, "/nodes/pve/qemu/401/status/reboot", vec![]);
    wait(&u);
    let u = call(
        Method::POST,
        "/nodes/pve/qemu/401/status/shutdown",
        p(&[("timeout", "30")]),
    );
    wait(&u);
    let u = call(Method::POST, "/nodes/pve/qemu/401/status/stop", vec![]);
    wait(&u);
    let u = call(
        Method::DELETE,
        "/nodes/pve/qemu/401",
        p(&[("purge", "1"), ("destroy-unreferenced-disks", "1")]),
    );
    wait(&u);
    call(Method::GET, "/cluster/resources", p(&[("type", "vm")]));

    // HA resources and rules (Proxmox VE 9).
    for sid in ["vm:200", "201"] {
        call(
            Method::POST,
            "/cluster/ha/resources",
            p(&[
                ("sid", sid),
                ("state", "started"),
                ("comment", "hacli: test"),
            ]),
        );
    }
    call(Method::GET, "/cluster/ha/resources", p(&[("type", "vm")]));
    call(Method::GET, "/cluster/ha/resources/vm:200", vec![]);
    call(
        Method::PUT,
        "/cluster/ha/resources/vm:200",
        p(&[("state", "stopped"), ("max_restart", "2")]),
    );
    call(
        Method::POST,
        "/cluster/ha/rules",
        p(&[
            ("rule", "masters"),
            ("type", "resource-affinity"),
            ("affinity", "negative"),
            ("resources", "vm:200,vm:201"),
            ("comment", "hacli: test"),
        ]),
    );
    call(
        Method::POST,
        "/cluster/ha/rules",
        p(&[
            ("rule", "pin"),
            ("type", "node-affinity"),
            ("nodes", "pve:2,pve2"),
            ("resources", "vm:200"),
            ("strict", "0"),
        ]),
    );
    call(Method::GET, "/cluster/ha/rules", vec![]);
    call(
        Method::GET,
        "/cluster/ha/rules",
        p(&[("type", "resource-affinity"), ("resource", "vm:201")]),
    );
    call(Method::GET, "/cluster/ha/rules/masters", vec![]);
    call(
        Method::PUT,
        "/cluster/ha/rules/masters",
        p(&[
            ("type", "resource-affinity"),
            ("resources", "vm:201,vm:200"),
        ]),
    );
    call(Method::GET, "/cluster/ha/status/current", vec![]);
    call(Method::DELETE, "/cluster/ha/rules/pin", vec![]);
    call(Method::DELETE, "/cluster/ha/resources/vm:201", vec![]);

    // Every answer against its `returns`.
    let mut problems = Vec::new();
    let mut answered = BTreeSet::new();
    for call in lab.calls() {
        if call.status != 200 {
            continue;
        }
        let route = schema()
            .routes
            .iter()
            .find(|r| r.template == call.template)
            .unwrap();
        let returns = &route.methods[&call.method]["returns"];
        check_value(
            returns,
            &call.data,
            &format!("{} {}", call.method, call.template),
            &mut problems,
        );
        answered.insert((call.method.clone(), call.template.clone()));
    }
    assert!(
        problems.is_empty(),
        "answers off the schema:\n{}",
        problems.join("\n")
    );
    let all: BTreeSet<(String, String)> = schema().endpoints().into_iter().collect();
    let missing: Vec<_> = all.difference(&answered).collect();
    assert!(missing.is_empty(), "endpoints never answered: {missing:?}");
    println!(
        "{} answers from {} endpoints checked against the schema",
        lab.calls().iter().filter(|c| c.status == 200).count(),
        answered.len()
    );
}

/// The checker itself catches answers off the schema.
#[test]
fn the_return_checker_catches_wrong_shapes() {
    let route = schema()
        .routes
        .iter()
        .find(|r| r.template == "/nodes/{node}/qemu/{vmid}/status/current")
        .unwrap();
    let returns = &route.methods["GET"]["returns"];
    let mut problems = Vec::new();
    check_value(
        returns,
        &json!({"vmid": "100", "status": "running", "extra": 1}),
        "x",
        &mut problems,
    );
    let text = problems.join("\n");
    assert!(text.contains("x.vmid: expected integer"), "{text}");
    assert!(text.contains("x.ha: missing"), "{text}");
    assert!(text.contains("x.extra: not in the schema"), "{text}");

    let route = schema()
        .routes
        .iter()
        .find(|r| r.template == "/nodes/{node}/qemu/{vmid}/config")
        .unwrap();
    let mut problems = Vec::new();
    check_value(
        &route.methods["GET"]["returns"],
        &json!({"digest": "ab", "ipconfig0": "ip=198.18.0.5", "scsi0": "local-lvm:vm-1-disk-0,size=banana"}),
        "c",
        &mut problems,
    );
    let text = problems.join("\n");
    assert!(text.contains("c.ipconfig0: invalid format"), "{text}");
    assert!(text.contains("c.scsi0: invalid format"), "{text}");
}
