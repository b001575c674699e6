//! The worst case, outside the run (the design's rollback discussion): when
//! rolling a phase back is not enough (etcd lost quorum with two voters, a
//! member's data is damaged), restore the preflight etcd snapshot onto the
//! first master, alone, by hand. Every step gives the exact commands, with
//! kubeadm's paths, and what to check before the next.

use std::net::IpAddr;

use super::{Ctx, Recovery, RecoveryStep};

/// Where a person puts the snapshot on the master.
const SNAPSHOT_ON_MASTER: &str = "/root/pre-ha-migration-etcd.db";
/// Where the static pod manifests wait while etcd is restored.
const STOPPED: &str = "/etc/kubernetes/manifests.stopped";

fn host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    }
}

fn etcdctl(args: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key {args}"
    )
}

fn rstep(
    id: &str,
    title: String,
    on: String,
    commands: Vec<String>,
    confirm: String,
) -> RecoveryStep {
    RecoveryStep {
        id: format!("recovery/{id}"),
        title,
        on,
        commands,
        confirm,
    }
}

/// The procedure for this plan's first master, when it has one.
pub(super) fn plan(ctx: &Ctx<'_>) -> Option<Recovery> {
    let master = ctx.masters_from.first()?;
    let (name, addr) = (&master.name, host(master.address));
    let peer = format!("https://{addr}:2380");
    let api = format!("https://{addr}:{}", ctx.port);
    let on_master = format!("{name} ({}), as root", master.address);
    let mut steps = Vec::new();
    let others: Vec<&str> = ctx
        .masters_from
        .iter()
        .skip(1)
        .chain(ctx.new_masters.iter())
        .map(|n| n.name.as_str())
        .collect();
    if !others.is_empty() {
        steps.push(rstep(
            "stop-other-masters",
            format!(
                "stop every other master's etcd and apiserver ({}), and take them out of pool {}",
                others.join(", "),
                ctx.pool
            ),
            format!("each of {}, as root; then where hacli runs", others.join(", ")),
            std::iter::once(format!(
                "mkdir -p {STOPPED} && mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/kube-apiserver.yaml {STOPPED}/   # on each; a master that never joined has neither"
            ))
            .chain(others.iter().map(|n| {
                format!("hacli lb remove-server {n} -t TARGET.yaml   # TARGET.yaml: the plan's target topology")
            }))
            .collect(),
            "no other master runs etcd (`crictl ps --name etcd` is empty on each); the pool lists only the first master".into(),
        ));
    }
    steps.push(rstep(
        "copy-snapshot",
        format!("copy the preflight etcd snapshot of {name} to it and check it"),
        "where hacli ran, then on the master".into(),
        vec![
            format!(
                "scp etcd-snapshots/{}-{name}-etcd.db root@{addr}:{SNAPSHOT_ON_MASTER}   # the live backend's default snapshot path",
                ctx.to.cluster
            ),
            format!("etcdutl snapshot status {SNAPSHOT_ON_MASTER} -w table"),
        ],
        "the status shows a hash, a revision and the total keys, with no error".into(),
    ));
    steps.push(rstep(
        "stop-control-plane",
        format!("stop {name}'s etcd and apiserver: their static pod manifests move out of the kubelet's directory"),
        on_master.clone(),
        vec![
            format!("mkdir -p {STOPPED}"),
            format!("mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/etcd.yaml {STOPPED}/"),
            "while crictl ps -q --name '^(etcd|kube-apiserver)$' | grep -q .; do sleep 2; done".into(),
        ],
        "`crictl ps` lists neither etcd nor kube-apiserver".into(),
    ));
    steps.push(rstep(
        "restore",
        format!("restore the snapshot into a fresh data directory, as a one-member cluster of {name} (etcdutl from the cluster's etcd version; the old data is kept aside)"),
        on_master.clone(),
        vec![
            "mv /var/lib/etcd /var/lib/etcd.before-restore".into(),
            format!(
                "etcdutl snapshot restore {SNAPSHOT_ON_MASTER} --name {name} --initial-cluster {name}={peer} --initial-advertise-peer-urls {peer} --data-dir /var/lib/etcd"
            ),
        ],
        "/var/lib/etcd/member exists; /var/lib/etcd.before-restore holds the old data".into(),
    ));
    steps.push(rstep(
        "start-etcd",
        format!("start etcd on {name} and check it is alone and healthy"),
        on_master.clone(),
        vec![
            format!("mv {STOPPED}/etcd.yaml /etc/kubernetes/manifests/"),
            format!("until {}; do sleep 2; done", etcdctl("endpoint health")),
            etcdctl("member list -w table"),
        ],
        format!("healthy; the member list shows one member, {name}, at {peer}"),
    ));
    steps.push(rstep(
        "start-apiserver",
        format!("start {name}'s apiserver and check the cluster as it was before the migration"),
        on_master,
        vec![
            format!("mv {STOPPED}/kube-apiserver.yaml /etc/kubernetes/manifests/"),
            format!("until kubectl --kubeconfig /etc/kubernetes/admin.conf --server {api} get --raw /readyz; do sleep 2; done"),
            format!("kubectl --kubeconfig /etc/kubernetes/admin.conf --server {api} get nodes"),
        ],
        "/readyz answers ok; the nodes are the cluster's before the migration, Ready; clients on the VIP reach this master through the pool".into(),
    ));
    Some(Recovery {
        title: format!("Worst case: restore the preflight etcd snapshot onto {name}, alone"),
        when: format!(
            "only when rolling the failed phase back is not enough: etcd has lost quorum or its data is damaged. Everything written to the API since the preflight snapshot is lost; the VM snapshot `pre-ha-migration` of {name} is the coarser alternative. A person runs each step, checks it, and ticks it off."
        ),
        steps,
    })
}
