//! Placement through Proxmox VE 9 HA, against the schema-validated Proxmox
//! stand-in with three hosts: the masters become HA resources kept apart
//! by one negative resource-affinity rule that hacli marks as its own; a
//! replaced master takes the old one's place in the rule; a rule of that
//! name that is not hacli's is refused and left alone; `hypervisor show`'s
//! rendering names a rule whose VMs share a host.

use std::time::Duration;

use hacore::backend::{HvOp, Hypervisor};
use proxmox::ha::{HaView, MARK};
use proxmox::{Client, InventoryView, Method, ProxmoxHypervisor, Settings, Token};
use testlab::proxmox::{Inventory, ProxmoxLab, PveNode, PveOptions, PveVm};

fn client(lab: &ProxmoxLab) -> Client {
    Client::new(
        &Settings {
            endpoint: Some(lab.endpoint()),
            token: Some(Token::parse(&lab.api_token(), "test token").unwrap()),
            fingerprint: Some(lab.fingerprint_hex()),
            ..Settings::default()
        }
        .build()
        .unwrap(),
    )
    .unwrap()
}

/// The backend clones a template on its own host: each host has one
/// (9000 on pve, 9002 on pve2, 9003 on pve3), as home labs on local
/// storage keep them.
fn clone(host: &str, vmid: u32, name: &str, last: u8) -> HvOp {
    HvOp::CloneVm {
        host: host.into(),
        template: match host {
            "pve2" => 9002,
            "pve3" => 9003,
            _ => 9000,
        },
        vmid,
        name: name.into(),
        cpus: 2,
        memory_gib: 4,
        disk_gib: 16,
        address: format!("198.18.20.{last}/24"),
        gateway: Some("198.18.20.1".parse().unwrap()),
        ciuser: None,
        sshkeys: Vec::new(),
        nameservers: Vec::new(),
        storage: None,
    }
}

fn lab() -> ProxmoxLab {
    let mut inv = Inventory::realistic();
    inv.nodes.push(PveNode {
        name: "pve3".into(),
        memory: 64 << 30,
        cpus: 16,
    });
    for (vmid, host) in [(9002, "pve2"), (9003, "pve3")] {
        let mut t = PveVm::new(vmid, "debian-12-cloudinit", host, false, 2, 2);
        t.template = true;
        t.disk_gib = 8;
        inv.vms.push(t);
    }
    ProxmoxLab::start_with(
        inv,
        PveOptions {
            task_time: Duration::from_millis(50),
            ..PveOptions::default()
        },
    )
    .unwrap()
}

fn keep(vmids: &[u32]) -> HvOp {
    HvOp::HaAntiAffinity {
        rule: "k8s-masters".into(),
        vmids: vmids.to_vec(),
    }
}

fn view(lab: &ProxmoxLab, rt: &tokio::runtime::Runtime) -> (HaView, InventoryView) {
    let c = client(lab);
    rt.block_on(async {
        (
            HaView::read(&c).await.unwrap(),
            InventoryView::read(&c).await.unwrap(),
        )
    })
}

#[test]
fn the_masters_are_kept_apart_by_a_marked_rule_and_a_replacement_takes_the_old_masters_place() {
    let lab = lab();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut hv = ProxmoxHypervisor::new(client(&lab)).unwrap();
    hv.deadline = Duration::from_secs(20);
    hv.owner = proxmox::Owner {
        cluster: "home".into(),
        ..Default::default()
    };
    // Three masters, one per host; the template is on pve.
    for (host, vmid, name, last) in [
        ("pve", 220, "m1", 121),
        ("pve2", 221, "m2", 122),
        ("pve3", 222, "m3", 123),
    ] {
        hv.apply(&clone(host, vmid, name, last)).unwrap();
    }
    assert!(!hv.is_done(&keep(&[220, 221, 222])).unwrap());
    hv.apply(&keep(&[220, 221, 222])).unwrap();
    assert!(hv.is_done(&keep(&[220, 221, 222])).unwrap());
    assert_eq!(lab.count("POST", "/cluster/ha/resources"), 3);
    assert_eq!(lab.count("POST", "/cluster/ha/rules"), 1);
    let (ha, _) = view(&lab, &rt);
    let rule = ha.rules.iter().find(|r| r.rule == "k8s-masters").unwrap();
    assert_eq!(rule.ty, "resource-affinity");
    assert_eq!(rule.affinity.as_deref(), Some("negative"));
    assert_eq!(rule.resources, ["vm:220", "vm:221", "vm:222"]);
    assert!(
        rule.comment.as_deref().unwrap().starts_with(MARK),
        "{rule:?}"
    );
    // Applied again: already done, nothing sent that writes.
    hv.apply(&keep(&[220, 221, 222])).unwrap();
    assert_eq!(lab.count("POST", "/cluster/ha/resources"), 3);
    assert_eq!(lab.count("POST", "/cluster/ha/rules"), 1);
    assert_eq!(lab.count("PUT", "/cluster/ha/rules/{rule}"), 0);

    // An HA-managed VM is not destroyed without purge (Proxmox's words).
    let err = rt
        .block_on(client(&lab).delete_vm("pve", 220, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unable to remove VM 220 - used in HA resources and purge parameter not set."),
        "{err}"
    );

    // Replace m1 by m4: the new VM joins, the old one is deleted (with
    // purge: it leaves the HA resources and the rule), then the rule is
    // kept over the masters of the target.
    hv.apply(&clone("pve", 223, "m4", 124)).unwrap();
    hv.apply(&HvOp::DeleteVm {
        host: "pve".into(),
        vmid: 220,
        name: "m1".into(),
    })
    .unwrap();
    let (ha, _) = view(&lab, &rt);
    assert!(!ha.resources.iter().any(|r| r.sid == "vm:220"), "{ha:?}");
    let rule = ha.rules.iter().find(|r| r.rule == "k8s-masters").unwrap();
    assert_eq!(rule.resources, ["vm:221", "vm:222"]);
    assert!(!hv.is_done(&keep(&[221, 222, 223])).unwrap());
    hv.apply(&keep(&[221, 222, 223])).unwrap();
    assert!(hv.is_done(&keep(&[221, 222, 223])).unwrap());
    let (ha, inv) = view(&lab, &rt);
    let rule = ha.rules.iter().find(|r| r.rule == "k8s-masters").unwrap();
    assert_eq!(rule.resources, ["vm:221", "vm:222", "vm:223"]);
    let text = ha.render(&inv);
    assert!(text.contains("vm:223 `m4` on pve (started)"), "{text}");
    assert!(
        text.contains("k8s-masters: negative resource affinity of vm:221, vm:222, vm:223"),
        "{text}"
    );
    assert!(!text.contains("NOT MET"), "{text}");

    // Two masters on one host: the rendering says the rule is not met.
    hv.apply(&clone("pve2", 224, "m5", 125)).unwrap();
    hv.apply(&keep(&[221, 222, 223, 224])).unwrap();
    let (ha, inv) = view(&lab, &rt);
    let text = ha.render(&inv);
    assert!(
        text.contains("NOT MET: m2 and m5 share host pve2"),
        "{text}"
    );
}

#[test]
fn a_rule_of_that_name_that_is_not_hacli_s_is_refused_and_left_alone() {
    let lab = lab();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&lab);
    // The operators' own rule, under the id hacli would use.
    for sid in ["vm:201", "vm:202"] {
        rt.block_on(c.request(
            Method::POST,
            "/cluster/ha/resources",
            &vec![("sid".into(), sid.into())],
        ))
        .unwrap();
    }
    rt.block_on(c.request(
        Method::POST,
        "/cluster/ha/rules",
        &vec![
            ("rule".into(), "k8s-masters".into()),
            ("type".into(), "resource-affinity".into()),
            ("affinity".into(), "positive".into()),
            ("resources".into(), "vm:201,vm:202".into()),
            ("comment".into(), "workers together (ops)".into()),
        ],
    ))
    .unwrap();
    let mut hv = ProxmoxHypervisor::new(client(&lab)).unwrap();
    hv.deadline = Duration::from_secs(20);
    let err = hv.apply(&keep(&[200, 203])).unwrap_err().to_string();
    assert!(
        err.contains("HA rule `k8s-masters` exists and is not hacli's (k8s-masters: positive resource affinity of vm:201, vm:202 (workers together (ops)))"),
        "{err}"
    );
    assert!(!hv.is_done(&keep(&[200, 203])).unwrap());
    // Nothing was written: no resource created, the rule unchanged.
    assert_eq!(lab.count("POST", "/cluster/ha/resources"), 2);
    assert_eq!(lab.count("PUT", "/cluster/ha/rules/{rule}"), 0);
    let (ha, _) = view(&lab, &rt);
    assert_eq!(ha.resources.len(), 2);
    assert_eq!(
        ha.rules[0].affinity.as_deref(),
        Some("positive"),
        "{:?}",
        ha.rules
    );
}
