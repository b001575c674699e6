//! Reconcile kubeadm-config with what the masters run (`hacli
//! reconcile-config`): the live static-pod flags and host mounts that
//! `kubeadm upgrade` would revert, written into `kube-system/kubeadm-config`
//! through kubeadm (`kubeadm::reconcile`), only when confirmed.

use hacore::Topology;

use crate::{Error, Reach};

pub use kubeadm::reconcile::{Change, Reconciled};

/// Compare every master's static-pod manifests with kubeadm-config and,
/// with `confirm`, write the differences into it (a copy of the ConfigMap
/// kept first). Without `confirm` nothing is changed: the report lists
/// what would be written.
pub fn reconcile_config(
    topology: &Topology,
    reach: &Reach,
    confirm: bool,
) -> Result<Reconciled, Error> {
    let cp = kubeadm::control_plane::KubeadmControlPlane::from_topology(
        topology,
        &reach.control_plane_options(),
    )?;
    Ok(cp.block_on(cp.reconcile_config(confirm))?)
}

/// Before an upgrade, on each master of `nodes`: remove all but the newest
/// `keep` of kubeadm's backup directories under `/etc/kubernetes/tmp`
/// (only directories named `kubeadm-backup-etcd-*` or
/// `kubeadm-backup-manifests-*`). The paths removed, per master.
pub fn prune_kubeadm_backups(
    topology: &Topology,
    reach: &Reach,
    nodes: &[String],
    keep: usize,
) -> Result<Vec<(String, Vec<String>)>, Error> {
    let cp = kubeadm::control_plane::KubeadmControlPlane::from_topology(
        topology,
        &reach.control_plane_options(),
    )?;
    let mut done = Vec::new();
    for n in nodes {
        if topology.node(n).is_some_and(|n| n.is_control_plane()) {
            done.push((n.clone(), cp.block_on(cp.prune_kubeadm_backups(n, keep))?));
        }
    }
    Ok(done)
}

/// kubeadm's version rules for an upgrade of the cluster to `to` (one
/// minor per `kubeadm upgrade apply`, no downgrade, kubelets within the
/// supported skew): Ok(Err(why)) when refused, naming the supported path.
pub fn upgrade_path(
    topology: &Topology,
    reach: &Reach,
    to: &str,
) -> Result<Result<String, String>, Error> {
    let cp = kubeadm::control_plane::KubeadmControlPlane::from_topology(
        topology,
        &reach.control_plane_options(),
    )?;
    Ok(cp.block_on(cp.upgrade_path(to))?)
}

/// What a live rolling upgrade to `to` checks and does before it touches
/// anything: kubeadm's version rules (Ok(Some(why)) when refused, naming
/// the supported path), then, with `prune`, all but the newest N of
/// kubeadm's backups removed on each master of `order` (reported as
/// notes; in a dry run only said).
pub fn before_upgrade(
    topology: &Topology,
    reach: &Reach,
    order: &[String],
    to: &str,
    prune: Option<usize>,
    dry_run: bool,
    events: crate::events::Events<'_>,
) -> Result<Option<String>, Error> {
    use crate::events::Event;
    if let Err(why) = upgrade_path(topology, reach, to)? {
        return Ok(Some(why));
    }
    let Some(keep) = prune else {
        return Ok(None);
    };
    if dry_run {
        events(Event::Note(format!(
            "dry run: would remove all but the newest {keep} of kubeadm's backups on each master"
        )));
        return Ok(None);
    }
    for (node, removed) in prune_kubeadm_backups(topology, reach, order, keep)? {
        if removed.is_empty() {
            events(Event::Note(format!(
                "{node}: no more than {keep} kubeadm backups: nothing to remove"
            )));
        }
        for p in removed {
            events(Event::Note(format!("{node}: removed kubeadm's backup {p}")));
        }
    }
    Ok(None)
}
