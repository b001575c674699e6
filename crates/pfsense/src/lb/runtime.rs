//! The load-balancer operations of a planned disruption, carried out
//! through HAProxy's runtime API alone (no configuration edit): set a
//! server's administrative state, wait until it is idle, check it is UP.
//! Runtime changes do not survive a reload, which is what a disruption
//! wants: a reload puts every server back in service.
//!
//! [`RuntimeLb`] is a [`LoadBalancer`] for topologies that only name the
//! runtime API (`loadBalancer.runtimeApi`, no `manage`); [`super::LbBackend`]
//! routes the same operations here.

use std::collections::BTreeSet;
use std::time::Duration;

use hacore::backend::{BackendError, LbOp, LoadBalancer, ServerState};
use hacore::topology::{HealthCheck, RuntimeApi};
use hacore::units::Dur;
use tokio::time::Instant;

use crate::haproxy::{self, AdminState, POLL, RuntimeClient, ServerStatus, Want};

/// The runtime API's word for a state.
pub fn admin(state: ServerState) -> AdminState {
    match state {
        ServerState::Ready => AdminState::Ready,
        ServerState::Drain => AdminState::Drain,
        ServerState::Maint => AdminState::Maint,
    }
}

/// Whether `op` is a runtime operation this module handles.
pub fn handles(op: &LbOp) -> bool {
    matches!(
        op,
        LbOp::SetServerState { .. } | LbOp::WaitServerIdle { .. }
    )
}

/// How long a server put back in service may take to come UP: one check
/// interval per `rise`, and one more, plus a second.
pub fn up_within(hc: &HealthCheck) -> Duration {
    let interval: Duration = hc.interval.0.try_into().unwrap_or(Duration::from_secs(2));
    interval * (hc.rise + 1) + Duration::from_secs(1)
}

/// What the runtime operations remember between calls: the idle waits
/// that gave up at their bound (their step is then done).
#[derive(Debug, Default, Clone)]
pub struct RuntimeMemory {
    gave_up: BTreeSet<(String, String)>,
}

/// Whether the effect of a runtime `op` is in place.
pub async fn is_done(
    rc: &RuntimeClient,
    memory: &RuntimeMemory,
    op: &LbOp,
    until: Instant,
) -> Result<bool, haproxy::Error> {
    match op {
        LbOp::SetServerState {
            pool,
            server,
            state,
        } => Ok(rc.admin_state(pool, server, until).await? == admin(*state)),
        LbOp::WaitServerIdle { pool, server, .. } => {
            if memory.gave_up.contains(&(pool.clone(), server.clone())) {
                return Ok(true);
            }
            Ok(rc.server(pool, server, until).await?.sessions == Some(0))
        }
        _ => Ok(false),
    }
}

/// Carry a runtime `op` out. `ready` waits up to `up_within` for the server
/// to come UP and goes on if it does not (a rollback must not fail because
/// the node is still down; the plan checks UP in a step of its own). An idle
/// wait that reaches its bound goes on, saying so on stderr.
pub async fn apply(
    rc: &RuntimeClient,
    memory: &mut RuntimeMemory,
    op: &LbOp,
    up_within: Duration,
    until: Instant,
) -> Result<(), haproxy::Error> {
    match op {
        LbOp::SetServerState {
            pool,
            server,
            state,
        } => {
            rc.set_server_state(pool, server, admin(*state), until)
                .await?;
            if *state == ServerState::Ready {
                let by = until.min(Instant::now() + up_within);
                let _ = rc
                    .wait_server(pool, server, Want::Status(ServerStatus::Up), POLL, by)
                    .await;
            }
            Ok(())
        }
        LbOp::WaitServerIdle {
            pool,
            server,
            bound,
        } => {
            let bound: Duration = bound.0.try_into().unwrap_or_default();
            let by = until.min(Instant::now() + bound);
            match rc.wait_server(pool, server, Want::Idle, POLL, by).await {
                Ok(_) => Ok(()),
                Err(haproxy::Error::WaitDeadline { last, .. }) => {
                    eprintln!(
                        "{pool}/{server}: still {last} after {}: going on",
                        Dur(jiff::SignedDuration::try_from(bound).unwrap_or_default())
                    );
                    memory.gave_up.insert((pool.clone(), server.clone()));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    }
}

/// A load balancer reached through HAProxy's runtime API only: the
/// disruption operations and `VerifyServersUp`; configuration changes are
/// [`BackendError::Unsupported`].
pub struct RuntimeLb {
    rt: tokio::runtime::Runtime,
    client: RuntimeClient,
    memory: RuntimeMemory,
    health_check: HealthCheck,
    timeout: Duration,
}

impl std::fmt::Debug for RuntimeLb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeLb")
            .field("runtime_api", self.client.endpoint())
            .finish_non_exhaustive()
    }
}

impl RuntimeLb {
    /// Over `api`, each call within `timeout`.
    pub fn new(
        api: RuntimeApi,
        health_check: HealthCheck,
        timeout: Duration,
    ) -> Result<RuntimeLb, super::LbError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| super::LbError::Config(format!("cannot start the async runtime: {e}")))?;
        Ok(RuntimeLb {
            rt,
            client: RuntimeClient::new(api),
            memory: RuntimeMemory::default(),
            health_check,
            timeout,
        })
    }

    fn what(&self, op: &LbOp) -> String {
        format!(
            "HAProxy runtime API {}: {}",
            self.client.endpoint(),
            hacore::backend::Op::LoadBalancer(op.clone())
        )
    }

    fn failed(&self, op: &LbOp, e: haproxy::Error) -> BackendError {
        BackendError::Failed {
            what: self.what(op),
            message: super::error_chain(&e),
        }
    }
}

impl LoadBalancer for RuntimeLb {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        let until = Instant::now() + self.timeout;
        let r = match op {
            LbOp::VerifyServersUp { pool, servers } => self.rt.block_on(async {
                let rows = self.client.servers(pool, until).await?;
                Ok(servers.iter().all(|s| {
                    rows.iter()
                        .any(|r| &r.server == s && r.status == Some(ServerStatus::Up))
                }))
            }),
            op if handles(op) => self
                .rt
                .block_on(is_done(&self.client, &self.memory, op, until)),
            _ => return Err(BackendError::Unsupported(self.what(op))),
        };
        r.map_err(|e| self.failed(op, e))
    }

    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        let until = Instant::now() + self.timeout;
        let up = up_within(&self.health_check);
        match op {
            LbOp::VerifyServersUp { .. } => Ok(()),
            op if handles(op) => {
                let r = self
                    .rt
                    .block_on(apply(&self.client, &mut self.memory, op, up, until));
                r.map_err(|e| self.failed(op, e))
            }
            _ => Err(BackendError::Unsupported(self.what(op))),
        }
    }
}
