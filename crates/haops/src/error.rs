//! The one error type of the live operations.

/// Why a live operation could not be carried out. A verdict that denies is
/// not an error: it is data ([`hacore::Verdict`]); an error is a setting
/// that is wrong (the frontend's exit 2) or a cluster that cannot be
/// reached or observed at all (exit 3), as [`Error::exit_code`] tells.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting given to the operation is wrong: `what` names it.
    #[error("{what}: {why}")]
    Setting {
        /// The flag, keyword, variable or file.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// Bad input found by the core (topology, policy, plan, state).
    #[error(transparent)]
    Core(#[from] hacore::Error),
    /// The plan was refused (a disruption, a roll's order).
    #[error(transparent)]
    Refused(#[from] hacore::plan::Refusal),
    /// The executor or the journal.
    #[error(transparent)]
    Exec(#[from] hacore::exec::ExecError),
    /// The kubeadm backend (the Kubernetes API, etcd).
    #[error(transparent)]
    Kubeadm(#[from] kubeadm::Error),
    /// kubeadm's control-plane backend (SSH, etcd TLS).
    #[error(transparent)]
    ControlPlane(#[from] kubeadm::control_plane::CpError),
    /// The load balancer backend.
    #[error(transparent)]
    LoadBalancer(#[from] pfsense::lb::LbError),
    /// The journal already records a run and the caller did not resume it.
    #[error("{journal} already records a run: pass --resume to continue it, or use a new journal")]
    JournalInUse {
        /// The journal file.
        journal: String,
    },
    /// An etcd snapshot could not be taken, checked, restored or kept
    /// (its own exit code: 1 integrity refused, 2 bad input, 3 unreachable).
    #[error(transparent)]
    Snapshot(#[from] kubeadm::snapshot::SnapshotError),
    /// Something needed could not be reached or read (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

impl Error {
    /// The CLI's exit code for this error: 2 for bad input or settings,
    /// 3 for a cluster that could not be reached or observed; a refusal
    /// as unsafe (a plan's, a load balancer's: not ours, still in use) is 1.
    pub fn exit_code(&self) -> i32 {
        use pfsense::lb::LbError;
        match self {
            Error::Kubeadm(_) | Error::Unreachable(_) => 3,
            Error::LoadBalancer(LbError::Refused(_)) => 1,
            Error::LoadBalancer(
                LbError::Config(_) | LbError::Auth { .. } | LbError::Invalid { .. },
            ) => 2,
            Error::LoadBalancer(_) => 3,
            Error::Refused(r) => r.exit_code(),
            Error::Snapshot(e) => i32::from(e.exit_code()),
            _ => 2,
        }
    }
}
