//! Planning from the hypervisor's own inventory: the stand-in holds the
//! home lab as it really is (one host almost fully committed, VM 205 taken by
//! a VM the topology does not list, a stopped VM, a template); every problem
//! of the single -> HA migration is refused with its reason, and the sizes
//! that would fit are named.

use std::path::Path;

use hacore::Topology;
use hacore::plan::{Options, plan};
use hacore::state::ClusterState;
use proxmox::{Client, InventoryView, Settings, Token};
use testlab::proxmox::{Inventory, ProxmoxLab};

fn topology(name: &str) -> Topology {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/topology")
        .join(name);
    Topology::load(&p).unwrap().0
}

fn read(lab: &ProxmoxLab) -> InventoryView {
    let cfg = Settings {
        endpoint: Some(lab.endpoint()),
        token: Some(Token::parse(&lab.api_token(), "test").unwrap()),
        fingerprint: Some(lab.fingerprint_hex()),
        ..Settings::default()
    }
    .build()
    .unwrap();
    let c = Client::new(&cfg).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(InventoryView::read(&c))
        .unwrap()
}

#[test]
fn the_inventory_is_read_as_it_is() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let inv = read(&lab);
    let pve = &inv.hosts[0];
    assert_eq!(pve.node, "pve");
    assert_eq!(pve.memory, 256 << 30);
    assert_eq!(pve.cpus, 64);
    let c = pve.committed();
    assert_eq!(c.running_memory, 200 << 30);
    assert_eq!(
        c.stopped_memory,
        24 << 30,
        "the stopped VM, not the template"
    );
    assert_eq!((c.running_cpus, c.stopped_cpus), (58, 4));
    // Not only the totals the inventory was seeded with: the client's
    // sums equal the test's own sum over each VM as the API lists it
    // (memory and cores per VM, running or not, templates left out).
    let seeded = Inventory::realistic();
    let on_pve = |running: bool, f: fn(&testlab::proxmox::PveVm) -> u64| -> u64 {
        seeded
            .vms
            .iter()
            .filter(|v| v.node == "pve" && !v.template && v.running == running)
            .map(f)
            .sum()
    };
    assert_eq!(c.running_memory, on_pve(true, |v| v.memory_mib << 20));
    assert_eq!(c.stopped_memory, on_pve(false, |v| v.memory_mib << 20));
    assert_eq!(
        u64::from(c.running_cpus),
        on_pve(true, |v| u64::from(v.cores))
    );
    assert_eq!(
        u64::from(c.stopped_cpus),
        on_pve(false, |v| u64::from(v.cores))
    );
    // Every VM the stand-in holds is in the view, on its node, nothing more.
    let mut listed: Vec<u32> = inv
        .hosts
        .iter()
        .flat_map(|h| h.vms.iter().map(|v| v.vmid))
        .collect();
    listed.sort();
    let mut want: Vec<u32> = seeded.vms.iter().map(|v| v.vmid).collect();
    want.sort();
    assert_eq!(listed, want);
    let (_, t) = inv.vm(9000).unwrap();
    assert!(t.template);
    let text = inv.render();
    println!("{text}");
    assert!(
        text.contains(
            "pve (online): memory 256 GiB, committed 200 GiB running + 24 GiB stopped = 87%"
        ),
        "{text}"
    );
    assert!(text.contains("old-gitlab"), "{text}");
    assert!(text.contains("template"), "{text}");
    assert!(text.contains("pve2 (online): memory 64 GiB"), "{text}");
}

#[test]
fn every_problem_is_refused_with_its_reason_and_the_sizes_that_fit() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let inv = read(&lab);
    let from = topology("single-master.yaml");
    let to = topology("ha.yaml");

    let (reasons, placement) = inv.check(&from, &to, Some(9000));
    let text = reasons.join("\n");
    println!("{text}");
    assert!(
        text.contains("VM id 205 for `k8s-master-2` is already taken by VM `old-gitlab` (stopped, on pve), a VM the topology does not list"),
        "{text}"
    );
    assert!(
        text.contains("host `pve`: 256 GiB physical, 200 GiB committed to running VMs and 24 GiB to stopped ones; the new masters need 64 GiB more; 2 master(s) of at most 16 GiB each fit (at most 28 GiB each if the stopped VMs are never started again)"),
        "{text}"
    );
    assert_eq!(reasons.len(), 2, "{text}");
    assert_eq!(
        placement["pve"],
        vec!["k8s-master", "k8s-master-2", "k8s-master-3"],
        "one failure domain"
    );

    // The template: missing, or not a template.
    let (r, _) = inv.check(&from, &to, Some(9999));
    assert!(
        r.iter().any(|r| r
            == "template VM 9000 does not exist in the Proxmox cluster"
                .replace("9000", "9999")
                .as_str()),
        "{r:?}"
    );
    let (r, _) = inv.check(&from, &to, Some(212));
    assert!(
        r.iter()
            .any(|r| r.contains("VM 212 `plex` on pve is not a template")),
        "{r:?}"
    );

    // hacore's planner, given the observed hosts, refuses too.
    let mut state = ClusterState::empty(jiff::Timestamp::now());
    state.hypervisors = Some(inv.host_states());
    let refusal = plan(
        &from,
        &to,
        Some(&state),
        &Options {
            template: Some(9000),
        },
    )
    .unwrap_err();
    let text = refusal.to_string();
    println!("{text}");
    assert!(
        text.contains("VM id 205 for `k8s-master-2` is already taken on hypervisor `pve`"),
        "{text}"
    );
    assert!(
        text.contains("hypervisor `pve`: 224 of 256 GiB already committed"),
        "{text}"
    );
    assert!(text.contains("at most 16 GiB each would fit"), "{text}");
    assert!(!text.contains("pve2"), "{text}");
}
