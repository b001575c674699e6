//! A plan's drill step (`hacli plan --verify-drill`): the control-plane
//! backend of a live `apply`, with `DrillPlannedReboot` carried out by
//! the planned drill ([`super::drill`]): traffic through the VIP while the
//! node is drained from the pool, rebooted and put back. The step fails
//! unless the drill ran and every request succeeded.

use std::path::{Path, PathBuf};

use hacore::backend::{BackendError, ControlPlane, CpOp};
use hacore::{Action, Policy, Topology};

use super::{Kind, Options, Outcome, drill};
use crate::Reach;

/// `inner`, with the drill step run by the drill.
pub struct WithDrill<'a> {
    /// The live control-plane backend.
    pub inner: &'a mut dyn ControlPlane,
    /// The plan's target topology.
    pub topology: &'a Topology,
    /// How the cluster is reached.
    pub reach: &'a Reach,
    /// The apply's journal: each drill gets a new journal beside it.
    pub journal: &'a Path,
    /// The lock holder and the gate's requester.
    pub identity: String,
    /// The nodes drilled in this run, with every request answered.
    drilled: Vec<String>,
}

impl<'a> WithDrill<'a> {
    /// `inner` with the drill step run by the drill.
    pub fn new(
        inner: &'a mut dyn ControlPlane,
        topology: &'a Topology,
        reach: &'a Reach,
        journal: &'a Path,
        identity: String,
    ) -> WithDrill<'a> {
        WithDrill {
            inner,
            topology,
            reach,
            journal,
            identity,
            drilled: Vec::new(),
        }
    }

    /// A new journal for the drill of `node`, beside the apply's (a drill
    /// refuses a journal that records a run; a resumed apply drills again).
    fn drill_journal(&self, node: &str) -> PathBuf {
        let stamp = jiff::Timestamp::now().as_second();
        let mut name = self.journal.as_os_str().to_owned();
        name.push(format!(".drill-{node}-{stamp}.jsonl"));
        PathBuf::from(name)
    }

    fn run_drill(&self, node: &str) -> Result<(), BackendError> {
        let what = format!("planned reboot drill of {node}");
        let o = Options {
            journal: Some(self.drill_journal(node)),
            policy: Some(drill_policy()),
            ..Options::new(node, Kind::PlannedReboot, &self.identity)
        };
        let failed = |message: String| BackendError::Failed {
            what: what.clone(),
            message,
        };
        let outcome =
            drill(self.topology, self.reach, &o, &mut |_| {}).map_err(|e| failed(e.to_string()))?;
        match outcome {
            Outcome::Ran(r) if super::exit_code(&r) == 0 => Ok(()),
            Outcome::Ran(r) => Err(failed(format!(
                "{} of {} requests failed{}",
                r.total.failed,
                r.total.sent,
                r.disruption
                    .error
                    .as_ref()
                    .map(|e| format!("; the disruption: {e}"))
                    .unwrap_or_default()
            ))),
            Outcome::Refused { verdict, .. } => Err(failed(format!(
                "the gate did not allow it: {}",
                verdict
                    .blocking()
                    .map(|f| format!("{}: {}", f.rule, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
            Outcome::NotHealthy { reason } => Err(failed(reason)),
        }
    }
}

/// The drill's gate: the `reboot` built-in without its soak (the
/// migration has just changed the nodes' readiness on purpose: joins and
/// kubelet restarts); every other rule as it is.
pub fn drill_policy() -> Policy {
    let mut p = Policy::for_action(Action::Reboot);
    p.name = "reboot-after-migration".into();
    p.rules.soak = None;
    p
}

impl ControlPlane for WithDrill<'_> {
    /// A drill is done once it ran in this run (a resumed apply drills
    /// again: the proof is the traffic, not a state left behind).
    fn is_done(&mut self, op: &CpOp) -> Result<bool, BackendError> {
        match op {
            CpOp::DrillPlannedReboot { node } => Ok(self.drilled.contains(node)),
            _ => self.inner.is_done(op),
        }
    }

    fn apply(&mut self, op: &CpOp) -> Result<(), BackendError> {
        match op {
            CpOp::DrillPlannedReboot { node } => {
                self.run_drill(node)?;
                self.drilled.push(node.clone());
                Ok(())
            }
            _ => self.inner.apply(op),
        }
    }

    fn boot_id(&mut self, node: &str) -> Result<Option<String>, BackendError> {
        self.inner.boot_id(node)
    }

    fn await_reboot(&mut self, node: &str, before: &str) -> Result<(), BackendError> {
        self.inner.await_reboot(node, before)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_drill_after_a_migration_is_gated_without_the_soak_only() {
        let p = super::drill_policy();
        assert!(p.rules.soak.is_none());
        let reboot = hacore::Policy::for_action(hacore::Action::Reboot);
        let mut ids = reboot.rules.ids();
        ids.retain(|i| *i != "soak");
        assert_eq!(p.rules.ids(), ids);
    }
}
