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
