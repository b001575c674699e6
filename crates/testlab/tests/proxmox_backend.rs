//! The Proxmox backend (crates/proxmox) against the lab's Proxmox API
//! stand-in: a VM provisioned end to end, a resumed run that never clones
//! twice, locks waited on, Proxmox's text from a failed task, a named 401, a
//! refused certificate pin, and how soon a finished task is noticed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hacore::backend::{HvOp, Hypervisor};
use proxmox::{Client, ProxmoxHypervisor, Settings, Token};
use testlab::proxmox::{Inventory, ProxmoxLab, PveOptions};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq+b/9Xr7= hacli@lab";

fn settings(lab: &ProxmoxLab) -> Settings {
    Settings {
        endpoint: Some(lab.endpoint()),
        token: Some(Token::parse(&lab.api_token(), "test token").unwrap()),
        fingerprint: Some(lab.fingerprint_hex()),
        ..Settings::default()
    }
}

fn client(lab: &ProxmoxLab) -> Client {
    Client::new(&settings(lab).build().unwrap()).unwrap()
}

fn backend(lab: &ProxmoxLab) -> ProxmoxHypervisor {
    let mut hv = ProxmoxHypervisor::new(client(lab)).unwrap();
    hv.deadline = Duration::from_secs(20);
    hv
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clone_op(vmid: u32, name: &str) -> HvOp {
    HvOp::CloneVm {
        host: "pve".into(),
        template: 9000,
        vmid,
        name: name.into(),
        cpus: 4,
        memory_gib: 8,
        disk_gib: 32,
        address: "198.18.20.106/24".into(),
        gateway: Some("198.18.20.1".parse().unwrap()),
        ciuser: Some("debian".into()),
        sshkeys: vec![KEY.into()],
        nameservers: vec!["198.18.20.1".parse::<IpAddr>().unwrap()],
        storage: Some("local-zfs".into()),
    }
}

fn lab() -> ProxmoxLab {
    ProxmoxLab::start_with(
        Inventory::realistic(),
        PveOptions {
            task_time: Duration::from_millis(150),
            ..PveOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn a_master_vm_is_provisioned_end_to_end_and_rolled_back() {
    let lab = lab();
    let mut hv = backend(&lab);
    let clone = clone_op(206, "k8s-master-3");
    let start = HvOp::StartVm {
        host: "pve".into(),
        vmid: 206,
    };
    let t0 = Instant::now();
    assert!(!hv.is_done(&clone).unwrap());
    hv.apply(&clone).unwrap();
    assert!(hv.is_done(&clone).unwrap(), "verified after the clone");
    assert!(!hv.is_done(&start).unwrap());
    hv.apply(&start).unwrap();
    assert!(hv.is_done(&start).unwrap());
    let wall = t0.elapsed();
    let calls = hv.client().calls();

    let vm = lab.vm(206).unwrap();
    assert_eq!(vm["name"], "k8s-master-3");
    assert_eq!(vm["status"], "running");
    assert_eq!(vm["cores"], "4");
    assert_eq!(vm["memory"], "8192");
    assert_eq!(vm["ipconfig0"], "ip=198.18.20.106/24,gw=198.18.20.1");
    assert_eq!(vm["ciuser"], "debian");
    assert_eq!(vm["nameserver"], "198.18.20.1");
    assert!(
        vm["scsi0"].starts_with("local-zfs:vm-206-disk-0,"),
        "{}",
        vm["scsi0"]
    );
    assert!(vm["scsi0"].contains("size=32G"), "{}", vm["scsi0"]);
    assert!(!vm.contains_key("template"));
    // Proxmox keeps sshkeys percent-encoded; it accepted ours, so it was
    // encoded before the form encoding (a raw key is refused: see the
    // proxmoxer test), and it decodes back to the key.
    assert_eq!(
        vm["sshkeys"],
        "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIHq%2Bb%2F9Xr7%3D%20hacli%40lab"
    );
    assert_eq!(lab.count("POST", "/clone"), 1);
    println!(
        "provisioned VM 206 (clone + configure + resize + cloud-init + start) in {:.0} ms with {calls} API calls (tasks take 150 ms each in the stand-in)",
        wall.as_secs_f64() * 1000.0
    );
    // SSH on the cloud-init address of a started VM (a lab host): see
    // tests/proxmox_hosts.rs.

    // Rollback of the clone: stop and delete.
    let delete = HvOp::DeleteVm {
        host: "pve".into(),
        vmid: 206,
        name: "k8s-master-3".into(),
    };
    assert!(!hv.is_done(&delete).unwrap());
    hv.apply(&delete).unwrap();
    assert!(hv.is_done(&delete).unwrap());
    assert!(lab.vm(206).is_none());
    assert_eq!(lab.count("POST", "/status/stop"), 1);
    // Applying again is harmless.
    hv.apply(&delete).unwrap();
}

#[test]
fn a_run_killed_after_the_clone_resumes_without_a_second_clone() {
    let lab = lab();
    let c = client(&lab);
    let rt = rt();
    // The killed run got as far as the clone task, not the configuration.
    let upid = rt
        .block_on(c.clone_vm(
            "pve",
            9000,
            &proxmox::CloneParams {
                newid: 206,
                name: Some("k8s-master-3".into()),
                full: true,
                ..Default::default()
            },
        ))
        .unwrap();
    rt.block_on(c.wait_task(&upid, tokio::time::Instant::now() + Duration::from_secs(5)))
        .unwrap();
    assert_eq!(lab.count("POST", "/clone"), 1);

    let mut hv = backend(&lab);
    let op = clone_op(206, "k8s-master-3");
    assert!(
        !hv.is_done(&op).unwrap(),
        "a clone with the template's size is not done"
    );
    // Without the journal's word that its own clone was cut, a VM with the
    // planned name but without hacli's mark is not taken for the clone.
    let err = hv.apply(&op).unwrap_err().to_string();
    assert!(
        err.contains("VM 206 is k8s-master-3 (stopped), not created by hacli: not taking it"),
        "{err}"
    );
    // The journal says the clone step was started and never finished
    // (what `hacli apply` reads from it: `Owner::for_run`).
    hv.owner.interrupted_clones.extend([206, 207]);
    hv.apply(&op).unwrap();
    assert!(hv.is_done(&op).unwrap());
    assert_eq!(lab.count("POST", "/clone"), 1, "no second clone");
    assert_eq!(lab.vm(206).unwrap()["memory"], "8192");

    // Killed while the clone task still ran: the VM is there, locked.
    lab.set_task_time(Some("qmclone"), Duration::from_millis(800));
    let _upid = rt
        .block_on(c.clone_vm(
            "pve",
            9000,
            &proxmox::CloneParams {
                newid: 207,
                name: Some("k8s-master-4".into()),
                full: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(lab.vm(207).unwrap()["lock"], "clone");
    let op = clone_op(207, "k8s-master-4");
    assert!(!hv.is_done(&op).unwrap(), "a locked clone is not done");
    let t = Instant::now();
    hv.apply(&op).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "waited for the lock"
    );
    assert_eq!(lab.count("POST", "/clone"), 2, "one clone per VM");
    assert!(hv.is_done(&op).unwrap());

    // A vmid taken by another VM is refused, not reused.
    let err = hv
        .apply(&clone_op(205, "k8s-master-2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("old-gitlab"), "{err}");
    assert!(!hv.is_done(&clone_op(205, "k8s-master-2")).unwrap());
}

#[test]
fn a_locked_vm_is_waited_on() {
    let lab = lab();
    lab.set_lock(200, Some("backup"));
    let mut hv = backend(&lab);
    let snap = HvOp::SnapshotVm {
        host: "pve".into(),
        vmid: 200,
        name: "before-ha".into(),
    };
    assert!(!hv.is_done(&snap).unwrap());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            lab.set_lock(200, None);
        });
        let t = Instant::now();
        hv.apply(&snap).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
    });
    assert!(hv.is_done(&snap).unwrap());
    assert!(
        lab.count("POST", "/snapshot") >= 2,
        "refused while locked, then taken"
    );

    // A lock that outlives the deadline is a timeout naming the lock.
    lab.set_lock(211, Some("backup"));
    hv.deadline = Duration::from_millis(600);
    let err = hv
        .apply(&HvOp::StartVm {
            host: "pve".into(),
            vmid: 211,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("locked (backup)"), "{err}");
}

#[test]
fn a_failed_task_surfaces_proxmox_text_and_warnings_are_success() {
    let lab = lab();
    let mut hv = backend(&lab);
    lab.set_next_exit("qmstart", "start failed: QEMU exited with code 1");
    let start = HvOp::StartVm {
        host: "pve".into(),
        vmid: 205,
    };
    let err = hv.apply(&start).unwrap_err().to_string();
    assert!(
        err.contains("start failed: QEMU exited with code 1"),
        "{err}"
    );
    assert!(err.contains("qmstart"), "{err}");
    assert!(!hv.is_done(&start).unwrap());

    lab.set_next_exit("qmsnapshot", "WARNINGS: 1");
    let snap = HvOp::SnapshotVm {
        host: "pve".into(),
        vmid: 205,
        name: "pre".into(),
    };
    hv.apply(&snap).unwrap();
    assert!(hv.is_done(&snap).unwrap());

    // Refused while running: Proxmox's text, naming the endpoint.
    let rt = rt();
    let c = client(&lab);
    let err = rt.block_on(c.delete_vm("pve", 200, true)).unwrap_err();
    assert_eq!(err.status(), Some(500));
    let text = err.to_string();
    assert!(
        text.contains("VM 200 is running - destroy failed"),
        "{text}"
    );
    assert!(text.contains("DELETE /nodes/pve/qemu/200"), "{text}");
    // A parameter error: the errors map.
    let err = rt.block_on(c.nextid(Some(205))).unwrap_err();
    assert_eq!(err.status(), Some(400));
    let text = err.to_string();
    assert!(text.contains("vmid: VM 205 already exists"), "{text}");
    assert_eq!(rt.block_on(c.nextid(Some(206))).unwrap(), 206);
}

#[test]
fn a_wrong_token_gives_a_named_401() {
    let lab = lab();
    let mut s = settings(&lab);
    s.token = Some(Token::new(lab.token_id(), "00000000-wrong-secret").unwrap());
    let mut hv = ProxmoxHypervisor::new(Client::new(&s.build().unwrap()).unwrap()).unwrap();
    let err = hv
        .is_done(&HvOp::StartVm {
            host: "pve".into(),
            vmid: 200,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401 invalid token value!"), "{err}");
    assert!(err.contains("root@pam!hacli"), "{err}");
    assert!(!err.contains("wrong-secret"), "the secret leaked: {err}");
    assert!(!format!("{hv:?}").contains("wrong-secret"));
}

#[test]
fn a_certificate_not_matching_the_pin_is_refused() {
    let lab = lab();
    let rt = rt();
    let mut s = settings(&lab);
    s.fingerprint = Some("AB:".repeat(31) + "AB");
    let c = Client::new(&s.build().unwrap()).unwrap();
    let err = rt.block_on(c.version()).unwrap_err().to_string();
    assert!(err.contains("not the pinned AB:AB"), "{err}");
    assert!(err.contains(&lab.fingerprint_hex()), "{err}");
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(c.calls(), 1, "a refused certificate is not tried again");

    // The CA file works, and so does the right pin; the system roots refuse.
    let mut s = settings(&lab);
    s.fingerprint = None;
    s.ca_file = Some(lab.ca_path().to_path_buf());
    let c = Client::new(&s.build().unwrap()).unwrap();
    assert_eq!(rt.block_on(c.version()).unwrap(), "9.0.11");
    let mut s = settings(&lab);
    s.fingerprint = None;
    let c = Client::new(&s.build().unwrap()).unwrap();
    let err = rt.block_on(c.version()).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Insecure, only when asked by the flag (PROXMOX_VE_INSECURE alone is
    // not enough), with a warning.
    let env = Settings::from_vars(|k| match k {
        "PROXMOX_VE_ENDPOINT" => Some(lab.endpoint()),
        "PROXMOX_VE_API_TOKEN" => Some(lab.api_token()),
        "PROXMOX_VE_INSECURE" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    assert!(
        env.clone().build().is_err(),
        "the variable alone skips nothing"
    );
    let flag = Settings {
        insecure: true,
        ..Settings::default()
    };
    let cfg = flag.or(env).build().unwrap();
    assert_eq!(cfg.warnings.len(), 1);
    let c = Client::new(&cfg).unwrap();
    assert_eq!(rt.block_on(c.version()).unwrap(), "9.0.11");
}

#[test]
fn a_task_not_yet_visible_is_asked_again() {
    let lab = ProxmoxLab::start_with(
        Inventory::realistic(),
        PveOptions {
            task_time: Duration::from_millis(100),
            task_invisible: Duration::from_millis(300),
            ..PveOptions::default()
        },
    )
    .unwrap();
    let mut hv = backend(&lab);
    let start = HvOp::StartVm {
        host: "pve".into(),
        vmid: 205,
    };
    hv.apply(&start).unwrap();
    assert!(hv.is_done(&start).unwrap());
    assert!(
        lab.calls()
            .iter()
            .any(|c| c.template.ends_with("/tasks/{upid}/status") && c.status == 400)
    );
}

/// How long after a task ends the client notices it. Tasks take 1.5 s
/// here, so the poll interval has reached its cap (200 ms). The target
/// (median <= 250 ms) is a benchmark figure (scripts/bench-targets.sh);
/// the test fails only where the backoff is not capped (a median of a
/// second or more).
#[test]
fn a_finished_task_is_noticed_at_the_capped_poll_interval() {
    let lab = ProxmoxLab::start_with(
        Inventory::realistic(),
        PveOptions {
            task_time: Duration::from_millis(1500),
            ..PveOptions::default()
        },
    )
    .unwrap();
    let c = client(&lab);
    let rt = rt();
    let mut lags = Vec::new();
    for i in 0..8 {
        let upid = rt
            .block_on(c.snapshot("pve", 200, &format!("s{i}")))
            .unwrap();
        rt.block_on(c.wait_task(&upid, tokio::time::Instant::now() + Duration::from_secs(10)))
            .unwrap();
        let noticed = Instant::now();
        let ended = lab.last_task_end().expect("the task ended");
        lags.push(noticed.duration_since(ended));
    }
    lags.sort();
    let median = lags[lags.len() / 2];
    let max = lags[lags.len() - 1];
    println!(
        "task-notice lag over {} tasks of 1.5 s: median {:.0} ms, max {:.0} ms (poll cap 200 ms)",
        lags.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    testlab::targets::figure(
        "Proxmox task-notice lag, median of 8",
        &format!("{:.0} ms", median.as_secs_f64() * 1000.0),
        "<= 250 ms",
        median <= Duration::from_millis(250),
    );
    assert!(
        median < Duration::from_secs(1),
        "median {median:?}: the poll interval is not capped"
    );
}

/// Issue 21: nothing is destroyed that this tool did not create. A rollback
/// (`DeleteVm` by id) whose id belongs to another VM, even with the planner's
/// check bypassed, stops nothing and deletes nothing, and says what it found.
#[test]
fn a_delete_of_a_vm_hacli_did_not_create_is_refused_and_the_vm_stays() {
    let lab = lab();
    let mut hv = backend(&lab);
    hv.owner = proxmox::Owner {
        cluster: "home".into(),
        journal: "/var/lib/hacli/migrate.jsonl".into(),
        ..Default::default()
    };
    let before = lab.vm(201).unwrap();
    // The planned VM id of k8s-master-2 belongs to k8s-node1, a production
    // worker: its clone is refused, and then its rollback.
    let clone = clone_op(201, "k8s-master-2");
    let err = hv.apply(&clone).unwrap_err().to_string();
    assert!(
        err.contains("VM 201 already exists as k8s-node1 (running)"),
        "{err}"
    );
    for name in ["k8s-master-2", "k8s-node1"] {
        let delete = HvOp::DeleteVm {
            host: "pve".into(),
            vmid: 201,
            name: name.into(),
        };
        assert!(!hv.is_done(&delete).unwrap());
        let err = hv.apply(&delete).unwrap_err().to_string();
        assert!(
            err.contains("VM 201 is k8s-node1 (running), not created by hacli: not deleting it"),
            "{err}"
        );
    }
    // A hand-made VM that someone tagged `hacli` is still not ours.
    let c = client(&lab);
    let rt = rt();
    rt.block_on(c.put_config("pve", 205, &vec![("tags".into(), "hacli".into())]))
        .unwrap();
    let err = hv
        .apply(&HvOp::DeleteVm {
            host: "pve".into(),
            vmid: 205,
            name: "old-gitlab".into(),
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VM 205 is old-gitlab (stopped), not created by hacli: not deleting it"),
        "{err}"
    );
    assert_eq!(lab.count("POST", "/status/stop"), 0, "nothing was stopped");
    assert_eq!(
        lab.count("DELETE", "/qemu/{vmid}"),
        0,
        "nothing was deleted"
    );
    assert_eq!(lab.vm(201).unwrap(), before, "k8s-node1 is unchanged");
    assert!(lab.vm(205).is_some());

    // A clone hacli makes carries the mark: the tag, and a description
    // naming the cluster, the node, the VM id and the journal.
    let ours = clone_op(206, "k8s-master-3");
    hv.apply(&ours).unwrap();
    let vm = lab.vm(206).unwrap();
    assert_eq!(vm["tags"], "hacli");
    for line in [
        "hacli-cluster: home",
        "hacli-node: k8s-master-3",
        "hacli-vmid: 206",
        "hacli-journal: /var/lib/hacli/migrate.jsonl",
    ] {
        assert!(vm["description"].lines().any(|l| l == line), "{vm:?}");
    }
    // Read back through the API as Proxmox gives it (a newline per line),
    // and in the cluster's VM list.
    let cfg = rt.block_on(c.vm_config("pve", 206)).unwrap();
    assert!(
        cfg["description"]
            .as_str()
            .unwrap()
            .ends_with("migrate.jsonl\n")
    );
    let listed = rt.block_on(c.cluster_vms()).unwrap();
    assert_eq!(
        listed.iter().find(|v| v.vmid == 206).unwrap().tags,
        vec!["hacli".to_string()]
    );
    // Ours, but not the VM this step names: refused.
    let err = hv
        .apply(&HvOp::DeleteVm {
            host: "pve".into(),
            vmid: 206,
            name: "k8s-master-2".into(),
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VM 206 is k8s-master-3 (stopped), not k8s-master-2: not deleting it"),
        "{err}"
    );
    // Its mark copied by hand onto another VM does not make that VM ours.
    let desc = vm["description"].clone();
    rt.block_on(c.put_config(
        "pve",
        202,
        &vec![
            ("tags".into(), "hacli".into()),
            ("description".into(), desc),
        ],
    ))
    .unwrap();
    let err = hv
        .apply(&HvOp::DeleteVm {
            host: "pve".into(),
            vmid: 202,
            name: "k8s-node2".into(),
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VM 202 is k8s-node2 (running), a copy of VM 206 that hacli created, not created by hacli: not deleting it"),
        "{err}"
    );
    assert_eq!(lab.vm(202).unwrap()["status"], "running");
    // The VM it created, by its name: deleted.
    let delete = HvOp::DeleteVm {
        host: "pve".into(),
        vmid: 206,
        name: "k8s-master-3".into(),
    };
    hv.apply(&delete).unwrap();
    assert!(hv.is_done(&delete).unwrap());
    assert!(lab.vm(206).is_none());
}
