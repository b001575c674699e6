//! A VM the Proxmox stand-in starts becomes a lab host (crates/testlab
//! host.rs): the backend provisions a master end to end and SSH then answers
//! on its cloud-init address with the cloud-init key and the VM's name as
//! hostname; deleting the VM removes the host.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hacore::backend::{HvOp, Hypervisor};
use proxmox::{Client, ProxmoxHypervisor, Settings, Token};
use testlab::host::HostLab;
use testlab::proxmox::{Inventory, ProxmoxLab, PveOptions};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ssh(key: &Path, kh: &Path, addr: Ipv4Addr, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=3",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg(format!("root@{addr}"))
        .arg(cmd)
        .output()
        .unwrap()
}

#[test]
fn a_started_vm_is_a_lab_host_answering_ssh_with_the_cloud_init_key() {
    if !have("ssh") || !have("sshd") {
        testlab::skip::skip(
            "a_started_vm_is_a_lab_host_answering_ssh_with_the_cloud_init_key",
            "ssh or sshd missing (install openssh-client, openssh-server)",
        );
        return;
    }
    let hosts = HostLab::start_for("pve_hosts");
    if !hosts.isolated_or_skip("a_started_vm_is_a_lab_host_answering_ssh_with_the_cloud_init_key") {
        return;
    }
    let gw = hosts.gateway();
    let addr = Ipv4Addr::new(gw.octets()[0], gw.octets()[1], gw.octets()[2], 50);
    let dir = hosts.dir().join("client");
    let (key, public) = testlab::sshd::client_key(&dir, "ed25519", None).unwrap();
    let kh = dir.join("known_hosts");

    let lab = Arc::new(
        ProxmoxLab::start_with(
            Inventory::realistic(),
            PveOptions {
                task_time: Duration::from_millis(150),
                ..PveOptions::default()
            },
        )
        .unwrap(),
    );
    lab.attach_hosts(hosts);
    let cfg = Settings {
        endpoint: Some(lab.endpoint()),
        token: Some(Token::parse(&lab.api_token(), "test").unwrap()),
        fingerprint: Some(lab.fingerprint_hex()),
        ..Settings::default()
    }
    .build()
    .unwrap();
    let mut hv = ProxmoxHypervisor::new(Client::new(&cfg).unwrap()).unwrap();
    hv.deadline = Duration::from_secs(60);
    {
        let lab = lab.clone();
        let (key, kh) = (key.clone(), kh.clone());
        hv.ready_check = Some(Box::new(move |name, vmid| {
            let line = lab
                .known_hosts_line(vmid)
                .ok_or("no lab host for the VM yet")?;
            std::fs::write(&kh, format!("{line}\n")).map_err(|e| e.to_string())?;
            let o = ssh(&key, &kh, addr, "hostname");
            let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && got == name {
                Ok(())
            } else {
                Err(format!(
                    "ssh root@{addr}: {} {}",
                    got,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        }));
    }

    let clone = HvOp::CloneVm {
        host: "pve".into(),
        template: 9000,
        vmid: 206,
        name: "k8s-master-3".into(),
        cpus: 4,
        memory_gib: 8,
        disk_gib: 32,
        address: format!("{addr}/24"),
        gateway: Some(gw.into()),
        ciuser: Some("root".into()),
        sshkeys: vec![public.trim().to_string()],
        nameservers: vec![gw.into()],
        storage: None,
    };
    let start = HvOp::StartVm {
        host: "pve".into(),
        vmid: 206,
    };
    let t = Instant::now();
    hv.apply(&clone).unwrap();
    hv.apply(&start).unwrap();
    println!(
        "VM 206 provisioned and answering SSH as a lab host in {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(lab.host_is_on(206), Some(true));
    let o = ssh(&key, &kh, addr, "hostname; ip -4 -o addr show eth0");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.starts_with("k8s-master-3"), "{text}");
    assert!(text.contains(&format!("{addr}/24")), "{text}");

    // The rollback: stop (the host powers off) and delete (it is removed).
    hv.apply(&HvOp::DeleteVm {
        host: "pve".into(),
        vmid: 206,
        name: "k8s-master-3".into(),
    })
    .unwrap();
    assert_eq!(lab.host_is_on(206), None);
    let o = ssh(&key, &kh, addr, "true");
    assert!(!o.status.success(), "a deleted VM still answers SSH");
}
