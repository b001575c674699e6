//! Observe: the live cluster once, as every frontend does it (the CLI's
//! `gate` and `observe`, the sentinel, Python's `observe` and `gate`).
//!
//! One observation is the observer's probes under its deadline, the newest
//! verified etcd snapshot in the [`Reach`]'s `snapshot_dir` (for the
//! `etcd-backup` rule), and the refusal of a state that is not the
//! topology's cluster (a kubeconfig or etcd endpoints that reach another
//! one): that is bad input, not a verdict.

use std::time::{Duration, Instant};

use hacore::{ClusterState, Policy, Topology};
use kubeadm::{Observer, ObserverConfig, Reads, Timings};

use crate::{Error, Reach};

/// One observation of the cluster.
#[derive(Debug, Clone)]
pub struct Observation {
    /// What was observed; what could not be is in its `probe_errors`.
    pub state: ClusterState,
    /// When each probe finished, from the observation's start.
    pub probes: Timings,
    /// How long setting up the observer took (clients, TLS).
    pub setup: Duration,
    /// How long the observation took.
    pub took: Duration,
}

/// A single-threaded runtime for one blocking operation (measured faster
/// than a two-worker one for a gate: the probes wait on I/O, not on each
/// other).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Unreachable(format!("starting the async runtime: {e}")))
}

/// An observer of the cluster `topology` describes, with `config` (see
/// [`Reach::observer_config`]). Errs when the cluster cannot be reached at
/// all (no kubeconfig, unreadable etcd certificates).
pub async fn connect(topology: &Topology, config: ObserverConfig) -> Result<Observer, Error> {
    Ok(Observer::new(topology.clone(), config).await?)
}

/// Add the newest verified etcd snapshot in `reach.snapshot_dir` (a local
/// read of the records `hacli snapshot` writes) to `state`.
pub fn add_backup(state: &mut ClusterState, reach: &Reach) {
    if let Some(dir) = &reach.snapshot_dir {
        state.etcd_backup = Some(kubeadm::snapshot::newest_verified(dir));
    }
}

/// Observe once with `observer`, reads of shape `reads`: the probes, the
/// snapshot directory of `reach`, and the refusal of another cluster's
/// state.
pub async fn observe_with(
    observer: &Observer,
    reach: &Reach,
    reads: Reads<'_>,
) -> Result<(ClusterState, Timings), Error> {
    let (mut state, probes) = observer.observe_reads_timed(reads).await;
    add_backup(&mut state, reach);
    state.check_topology(observer.topology(), "the observed state")?;
    Ok((state, probes))
}

/// Observe the cluster once: connect (the DaemonSets `policy`'s rule names
/// included), observe with consistent reads, and return the state with its
/// timings. Blocking: runs on a runtime of its own.
pub fn observe(
    topology: &Topology,
    reach: &Reach,
    policy: Option<&Policy>,
) -> Result<Observation, Error> {
    let config = reach.observer_config(policy)?;
    runtime()?.block_on(async {
        let started = Instant::now();
        let observer = connect(topology, config).await?;
        let setup = started.elapsed();
        let (state, probes) = observe_with(&observer, reach, Reads::Cluster).await?;
        Ok(Observation {
            state,
            probes,
            setup,
            took: started.elapsed() - setup,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_verified_snapshot_is_read_from_the_snapshot_dir_only_when_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ClusterState::empty(jiff::Timestamp::UNIX_EPOCH);
        add_backup(&mut state, &Reach::default());
        assert!(state.etcd_backup.is_none());
        let reach = Reach {
            snapshot_dir: Some(dir.path().to_path_buf()),
            ..Reach::default()
        };
        add_backup(&mut state, &reach);
        let backup = state.etcd_backup.expect("read from the directory");
        assert_eq!(backup.place, dir.path().display().to_string());
    }

    #[test]
    fn an_unreadable_kubeconfig_is_an_error_that_exits_3() {
        let (topology, _) = Topology::from_yaml(
            "t.yaml",
            "cluster: lab\ncontrolPlaneEndpoint: { address: 127.0.0.1 }\nnodes:\n  - { name: m1, role: control-plane, address: 127.0.0.1 }\n",
        )
        .unwrap();
        let reach = Reach {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Reach::default()
        };
        let e = observe(&topology, &reach, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
        assert_eq!(e.exit_code(), 3);
    }
}
