//! One cycle of the sentinel: what the gate decided (`haops::gate`), and
//! what that means for the gated file kured watches and for the lock.

use std::time::Duration;

use hacore::state::Probe;
use hacore::{Action, Policy, Verdict};
use haops::Event;
use haops::gate::{Gate, GateOutcome, GateRequest, LeaderMove};
use kubeadm::Reads;

use super::{Args, NOT_EVALUATED, set_sentinel};

/// What one cycle did.
pub(super) struct Outcome {
    pub message: String,
    /// None: not evaluated (no reboot pending, nothing observed).
    pub verdict: Option<Verdict>,
    pub probe_errors: Vec<Probe>,
    pub lock_held: bool,
}

/// Everything a cycle needs, the same every cycle.
pub(super) struct Cycle<'a> {
    pub a: &'a Args,
    pub policy: &'a Policy,
    pub gate: &'a Gate,
    pub identity: &'a str,
}

impl Cycle<'_> {
    /// Whether we hold the lock, read once (the first cycle: the sentinel
    /// may restart after its node's reboot, holding it).
    async fn holds_lock(&self) -> anyhow::Result<bool> {
        let lock = self.gate.lock();
        let deadline = (self.gate.observer().config().deadline).max(Duration::from_secs(5));
        match tokio::time::timeout(deadline, lock.holder(jiff::Timestamp::now())).await {
            Ok(Ok(h)) => Ok(h.as_deref() == Some(self.identity)),
            Ok(Err(e)) => Err(anyhow::anyhow!(e.chain())),
            Err(_) => anyhow::bail!(
                "reading the lock {}: no answer within {} ms",
                lock.lease(),
                deadline.as_millis()
            ),
        }
    }

    /// One cycle; `lock_held`: whether we held the lock after the last one
    /// (None: not known yet).
    pub async fn run(&self, lock_held: Option<bool>) -> anyhow::Result<Outcome> {
        let a = self.a;
        let needs = a.reboot_required.exists();
        // Idle: no reboot pending and the lock is not ours. Nothing to
        // observe, nothing asked of the cluster.
        if !needs && !a.observe_every_cycle {
            let holds = match lock_held {
                Some(h) => h,
                None => self.holds_lock().await?,
            };
            if !holds {
                let removed = set_sentinel(&a.sentinel, false)?;
                return Ok(Outcome {
                    message: format!(
                        "no reboot required{}; {NOT_EVALUATED}",
                        if removed { "; sentinel removed" } else { "" }
                    ),
                    verdict: None,
                    probe_errors: Vec::new(),
                    lock_held: false,
                });
            }
        }
        let request = GateRequest {
            action: Action::Reboot,
            target: &a.node,
            policy: self.policy,
            identity: self.identity,
            move_leader: needs && a.move_leader,
            lock: needs,
            lock_ttl: a.lock_ttl,
            reads: if a.observe_every_cycle {
                Reads::Cluster
            } else {
                Reads::Node {
                    name: &a.node,
                    consistent: false,
                }
            },
        };
        let now = jiff::Timestamp::now();
        let mut events = |e: Event| match e {
            Event::Note(l) | Event::Warning(l) => eprintln!("{now} node {}: {l}", a.node),
            _ => {}
        };
        let g = self.gate.run(&request, now, &mut events).await?;
        let holds = (g.state.lock.as_ref())
            .and_then(|l| l.live_holder(now))
            .is_some_and(|h| h == self.identity);
        let (message, held) = if needs {
            self.pending(&g, holds)?
        } else {
            self.done(&g, holds).await?
        };
        Ok(Outcome {
            message,
            verdict: Some(g.verdict),
            probe_errors: g.probe_errors,
            lock_held: held,
        })
    }

    /// No reboot pending (any more): no gated file; the lock released once
    /// the node is Ready after its reboot.
    async fn done(&self, g: &GateOutcome, holds: bool) -> anyhow::Result<(String, bool)> {
        let a = self.a;
        let removed = set_sentinel(&a.sentinel, false)?;
        let ready = g.state.node(&a.node).and_then(|n| n.ready) == Some(true);
        let mut msg = String::from("no reboot required");
        if removed {
            msg.push_str("; sentinel removed");
        }
        if holds && ready {
            self.gate.lock().release(self.identity).await?;
            msg.push_str("; node is Ready after reboot: lock released");
            return Ok((msg, false));
        }
        if holds {
            msg.push_str("; holding the lock until the node is Ready");
        }
        Ok((msg, holds))
    }

    /// A reboot pending: the gated file exists exactly while the gate
    /// allows and we hold the lock.
    fn pending(&self, g: &GateOutcome, holds: bool) -> anyhow::Result<(String, bool)> {
        let (a, policy, v) = (self.a, &self.policy.name, &g.verdict);
        let moved = match &g.leader {
            Some(LeaderMove::Moved(m)) => format!(" ({m})"),
            Some(LeaderMove::Failed(e)) => format!(" (moving etcd leadership failed: {e})"),
            Some(LeaderMove::LockHeld(_)) | None => String::new(),
        };
        match &g.lock {
            Some(Ok(())) => {
                set_sentinel(&a.sentinel, true)?;
                let lease = self.gate.lock().lease();
                let file = a.sentinel.display();
                let msg = format!(
                    "reboot required and allowed by policy {policy}{moved}: lock {lease} held, sentinel {file} present"
                );
                Ok((msg, true))
            }
            Some(Err(why)) => {
                set_sentinel(&a.sentinel, false)?;
                Ok((
                    format!("reboot required and allowed, but {why}: waiting"),
                    false,
                ))
            }
            None => {
                let removed = set_sentinel(&a.sentinel, false)?;
                let why: Vec<String> = (v.blocking())
                    .map(|f| format!("{}: {}", f.rule, f.message))
                    .take(3)
                    .collect();
                // A lock we hold is not released here, nor renewed: kured may
                // already be draining this node. It lapses after its TTL, or
                // is released once the node has rebooted and is Ready.
                let msg = format!(
                    "reboot required but {} by policy {policy}{moved}{}{}{}: {}",
                    v.decision,
                    if g.denied_on_confirmation {
                        " (on a consistent read just before taking the lock)"
                    } else {
                        ""
                    },
                    if removed { " (sentinel removed)" } else { "" },
                    if holds {
                        " (our lock is left to lapse unless the node reboots)"
                    } else {
                        ""
                    },
                    why.join("; ")
                );
                Ok((msg, holds))
            }
        }
    }
}
