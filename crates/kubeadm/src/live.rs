//! The live cluster as the executor's observer, clock and disruption lock
//! of `hacore::exec` and `hacore::disrupt::run` (synchronous adapters over
//! the async observer and Lease, each on its own runtime), and the absent
//! backend.

use std::time::Duration;

use hacore::backend::{BackendError, Clock};
use hacore::disrupt::{Lock, LockAnswer};
use hacore::{ClusterState, Topology};

use crate::{Acquire, DisruptionLock, Error, Observer, ObserverConfig};

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Timeout {
            what: format!("starting the async runtime: {e}"),
            ms: 0,
        })
}

/// [`Observer`] as the executor's `hacore::backend::Observer`, on a
/// runtime of its own. hacore's observer is synchronous and takes the
/// topology of the moment (a gate before a join sees the masters that have
/// joined so far): an observation of a topology other than the last one
/// builds an observer for it, under the same configuration. A
/// configuration error at that point (no kubeconfig, unreadable etcd
/// certificates) is recorded as a probe error on every probe, so every
/// rule answers "unknown" and no gate allows.
pub struct LiveObserver {
    /// Shared with the lock: the Kubernetes client's pooled connections
    /// live on the runtime that made them.
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    config: ObserverConfig,
    /// The observer of the last topology observed (or connected to).
    observer: Option<Observer>,
    /// When set, every observation also reads the masters' files over SSH
    /// (`crate::masters`: manifests, kubeadm-config, disks, kubeadm's
    /// backups) for the upgrade rules.
    masters: Option<crate::control_plane::KubeadmControlPlane>,
}

impl std::fmt::Debug for LiveObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveObserver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LiveObserver {
    /// An observer with `config` that connects to the topology each
    /// observation is given.
    pub fn new(config: ObserverConfig) -> std::io::Result<LiveObserver> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(LiveObserver {
            rt: std::sync::Arc::new(rt),
            config,
            observer: None,
            masters: None,
        })
    }

    /// Connect now to the cluster `topology` describes with `config`: an
    /// error says why it cannot be reached at all.
    pub fn connect(topology: &Topology, config: ObserverConfig) -> Result<LiveObserver, Error> {
        let rt = std::sync::Arc::new(runtime()?);
        let observer = rt.block_on(Observer::new(topology.clone(), config.clone()))?;
        Ok(LiveObserver {
            rt,
            config,
            observer: Some(observer),
            masters: None,
        })
    }

    /// Also read the masters' files over SSH at every observation, through
    /// `cp` (its own SSH sessions and runtime).
    pub fn with_masters(mut self, cp: crate::control_plane::KubeadmControlPlane) -> LiveObserver {
        self.masters = Some(cp);
        self
    }

    /// The disruption lock this observer's cluster holds (its configured
    /// Lease), on the same runtime.
    pub fn lock(&self, ttl: Duration) -> Result<LiveLock, Error> {
        let client = match &self.observer {
            Some(o) => o.client().clone(),
            None => (self.rt).block_on(crate::kube_client_in(
                self.config.kubeconfig.as_deref(),
                self.config.kube_context.as_deref(),
            ))?,
        };
        Ok(LiveLock {
            rt: self.rt.clone(),
            lock: DisruptionLock::new(client, self.config.lock.clone()),
            ttl,
            deadline: self.config.deadline.max(Duration::from_secs(5)),
            kubeconfig: self.config.kubeconfig.clone(),
            kube_context: self.config.kube_context.clone(),
            renewer: None,
        })
    }
}

impl hacore::backend::Observer for LiveObserver {
    fn start_new_window(&mut self) {
        if let Some(o) = &self.observer {
            o.forget_latency_reads();
        }
    }

    fn observe(&mut self, topology: &Topology) -> ClusterState {
        if self
            .observer
            .as_ref()
            .is_none_or(|o| o.topology() != topology)
        {
            let made = (self.rt).block_on(Observer::new(topology.clone(), self.config.clone()));
            match made {
                Ok(o) => self.observer = Some(o),
                Err(e) => return unobservable(&e),
            }
        }
        let observer = self.observer.as_ref().expect("made above");
        let mut state = self.rt.block_on(Box::pin(observer.observe()));
        if let Some(cp) = &self.masters {
            let ssh = crate::masters::observe_blocking(cp);
            // Disks read from Prometheus stand over `df`'s.
            state.masters = Some(match state.masters.take() {
                Some(prometheus) => ssh.with_disks_from(prometheus, "not read over SSH"),
                None => ssh,
            });
        }
        state
    }
}

/// A state in which every probe failed with `e`.
fn unobservable(e: &Error) -> ClusterState {
    use hacore::state::Probe;
    let mut s = ClusterState::empty(jiff::Timestamp::now());
    for p in [
        Probe::Nodes,
        Probe::Etcd,
        Probe::EtcdAlarms,
        Probe::LoadBalancer,
        Probe::Apiservers,
        Probe::Pdbs,
        Probe::DaemonSets,
    ] {
        s.probe_errors.insert(p, format!("cannot observe: {e}"));
    }
    s
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// How often a held lock is renewed: every third of its TTL.
pub fn renew_every(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(100))
}

/// How much of a lock's TTL is kept for clock skew between this host and
/// the others that judge its expiry (and the renewal's own latency): a
/// sixth, at most 30 s. A lock not renewed for its TTL less this margin is
/// lost: the run stops before its next step.
pub fn skew_margin(ttl: Duration) -> Duration {
    (ttl / 6).min(Duration::from_secs(30))
}

/// Where the background renewal of a held lock stands.
#[derive(Debug)]
struct Renewal {
    /// The start of the last renewal that succeeded.
    last_ok: std::time::Instant,
    /// The last renewal's error, if it failed.
    last_error: Option<String>,
    /// Lost for good (another holder, or not renewed in time): why.
    lost: Option<String>,
}

/// Record a renewal `attempt` started at `started` in `r`; whether the
/// lock is lost for good.
fn judge(
    r: &mut Renewal,
    attempt: &Result<Acquire, Error>,
    started: std::time::Instant,
    ttl: Duration,
    budget: Duration,
) -> bool {
    let mut done = false;
    match attempt {
        // Taken again after a gap longer than the budget: the
        // lease may have expired in between, so it was not held
        // throughout.
        Ok(Acquire::Acquired) if started.duration_since(r.last_ok) >= budget => {
            r.lost = Some(format!(
                "not renewed for {:.1} s (TTL {} s, {:.1} s kept for clock skew)",
                started.duration_since(r.last_ok).as_secs_f64(),
                ttl.as_secs(),
                skew_margin(ttl).as_secs_f64(),
            ));
            done = true;
        }
        Ok(Acquire::Acquired) => {
            r.last_ok = started;
            r.last_error = None;
        }
        Ok(Acquire::HeldBy { holder, .. }) => {
            r.lost = Some(format!("another holder appeared: {holder}"));
            done = true;
        }
        Err(e) => {
            r.last_error = Some(e.chain());
            let since = r.last_ok.elapsed();
            if since >= budget {
                r.lost = Some(format!(
                    "not renewed for {:.1} s (TTL {} s, {:.1} s kept for clock skew): {}",
                    since.as_secs_f64(),
                    ttl.as_secs(),
                    skew_margin(ttl).as_secs_f64(),
                    e.chain()
                ));
                done = true;
            }
        }
    }
    done
}

/// The thread that renews a held lock every TTL/3 (its own runtime and
/// Kubernetes client, so it renews while the run waits on a long step).
#[derive(Debug)]
struct Renewer {
    stop: std::sync::mpsc::Sender<()>,
    state: std::sync::Arc<std::sync::Mutex<Renewal>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewer {
    fn start(
        target: ObjectRefFor,
        identity: String,
        ttl: Duration,
        deadline: Duration,
        taken: std::time::Instant,
    ) -> Renewer {
        let state = std::sync::Arc::new(std::sync::Mutex::new(Renewal {
            last_ok: taken,
            last_error: None,
            lost: None,
        }));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let set = |f: &mut dyn FnMut(&mut Renewal)| {
                let mut r = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                f(&mut r);
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    set(&mut |r| r.lost = Some(format!("cannot renew: {}", e.chain())));
                    return;
                }
            };
            let every = renew_every(ttl);
            let budget = ttl.saturating_sub(skew_margin(ttl));
            // Each attempt may take until the budget is spent; attempts
            // start every TTL/3 (at once after a slow one).
            let patience = deadline.min(budget);
            let mut client: Option<DisruptionLock> = None;
            let mut next = taken + every;
            loop {
                let wait = next.saturating_duration_since(std::time::Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let started = std::time::Instant::now();
                next = started + every;
                let attempt = rt.block_on(async {
                    let lock = match &client {
                        Some(l) => l.clone(),
                        None => {
                            let c = crate::kube_client_in(
                                target.kubeconfig.as_deref(),
                                target.kube_context.as_deref(),
                            )
                            .await?;
                            let l = DisruptionLock::new(c, target.lease.clone());
                            client = Some(l.clone());
                            l
                        }
                    };
                    match tokio::time::timeout(
                        patience,
                        lock.acquire(&identity, ttl, jiff::Timestamp::now()),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Error::Timeout {
                            what: format!("renewing the disruption lock {}", lock.lease()),
                            ms: patience.as_millis(),
                        }),
                    }
                });
                let mut done = false;
                set(&mut |r| done = judge(r, &attempt, started, ttl, budget));
                if done {
                    return;
                }
            }
        });
        Renewer {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Whether the lock is still ours: renewed within its TTL less the
    /// skew margin, no other holder.
    fn check(&self, ttl: Duration) -> Result<(), String> {
        let r = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(why) = &r.lost {
            return Err(why.clone());
        }
        let since = r.last_ok.elapsed();
        if since >= ttl.saturating_sub(skew_margin(ttl)) {
            return Err(format!(
                "not renewed for {:.1} s (TTL {} s, {:.1} s kept for clock skew){}",
                since.as_secs_f64(),
                ttl.as_secs(),
                skew_margin(ttl).as_secs_f64(),
                r.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        Ok(())
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the renewer needs to reach the Lease on its own.
#[derive(Debug, Clone)]
struct ObjectRefFor {
    kubeconfig: Option<std::path::PathBuf>,
    kube_context: Option<String>,
    lease: crate::ObjectRef,
}

/// [`DisruptionLock`] as `hacore::disrupt::Lock`: once taken, renewed in
/// the background every TTL/3 until released or kept.
pub struct LiveLock {
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    lock: DisruptionLock,
    ttl: Duration,
    deadline: Duration,
    kubeconfig: Option<std::path::PathBuf>,
    kube_context: Option<String>,
    renewer: Option<Renewer>,
}

impl std::fmt::Debug for LiveLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLock")
            .field("lock", &self.lock)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LiveLock {
    fn failed(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Failed {
            what: format!("disruption lock {}", self.lock.lease()),
            message: e.to_string(),
        }
    }
}

impl Lock for LiveLock {
    fn acquire(&mut self, identity: &str) -> Result<LockAnswer, BackendError> {
        let f = self
            .lock
            .acquire(identity, self.ttl, jiff::Timestamp::now());
        let deadline = self.deadline;
        let taken = std::time::Instant::now();
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, f).await })
        {
            Ok(Ok(Acquire::Acquired)) => {
                eprintln!(
                    "took the disruption lock {} as {identity} for {} s, renewed every {} ms",
                    self.lock.lease(),
                    self.ttl.as_secs(),
                    renew_every(self.ttl).as_millis()
                );
                self.renewer = Some(Renewer::start(
                    ObjectRefFor {
                        kubeconfig: self.kubeconfig.clone(),
                        kube_context: self.kube_context.clone(),
                        lease: self.lock.lease().clone(),
                    },
                    identity.to_string(),
                    self.ttl,
                    self.deadline,
                    taken,
                ));
                Ok(LockAnswer::Acquired)
            }
            Ok(Ok(Acquire::HeldBy { holder, .. })) => Ok(LockAnswer::HeldBy(holder)),
            Ok(Err(e)) => Err(self.failed(e.chain())),
            Err(_) => Err(self.failed("no answer before the deadline")),
        }
    }

    fn held(&mut self, _identity: &str) -> Result<(), String> {
        match &self.renewer {
            Some(r) => r.check(self.ttl),
            None => Err("the disruption lock was not taken".into()),
        }
    }

    fn keep(&mut self, identity: &str, reason: &str) -> Result<(), BackendError> {
        self.renewer = None;
        let f = self.lock.keep(identity, reason, jiff::Timestamp::now());
        let deadline = self.deadline;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, f).await })
        {
            Ok(Ok(())) => {
                eprintln!(
                    "kept the disruption lock {} as {identity}: {reason}",
                    self.lock.lease()
                );
                Ok(())
            }
            Ok(Err(e)) => Err(self.failed(e.chain())),
            Err(_) => Err(self.failed("no answer before the deadline")),
        }
    }

    fn release(&mut self, identity: &str) -> Result<(), BackendError> {
        self.renewer = None;
        let f = self.lock.release(identity);
        let deadline = self.deadline;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, f).await })
        {
            Ok(Ok(_)) => {
                eprintln!("released the disruption lock {}", self.lock.lease());
                Ok(())
            }
            Ok(Err(e)) => Err(self.failed(e.chain())),
            Err(_) => Err(self.failed("no answer before the deadline")),
        }
    }
}

/// A backend that carries out none of its operations: what a planned
/// disruption does not need (no hypervisor step; no load balancer the
/// topology says how to reach), and the lock of backends wired without
/// one (never granted, so an operation that needs the lock is refused
/// rather than run unlocked). The one absent backend of every kind.
#[derive(Debug, Clone)]
pub struct Absent(pub &'static str);

impl hacore::backend::Lock for Absent {
    fn acquire(&mut self, _identity: &str) -> Result<hacore::backend::LockAnswer, BackendError> {
        Err(BackendError::Unsupported(self.0.into()))
    }
    fn release(&mut self, _identity: &str) -> Result<(), BackendError> {
        Ok(())
    }
    fn keep(&mut self, identity: &str, _reason: &str) -> Result<(), BackendError> {
        self.acquire(identity).map(|_| ())
    }
}

impl hacore::backend::Hypervisor for Absent {
    fn is_done(&mut self, op: &hacore::backend::HvOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
    fn apply(&mut self, op: &hacore::backend::HvOp) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
}

impl hacore::backend::LoadBalancer for Absent {
    fn is_done(&mut self, op: &hacore::backend::LbOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
    fn apply(&mut self, op: &hacore::backend::LbOp) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
}
