//! Connect: from a topology and its [`Reach`], the backends every live
//! operation runs through, wired once ([`Live::wire`]): a planned
//! disruption ([`Live::connect`]) and a plan that changes the cluster (a
//! migration, a master's replacement: [`Live::connect_plan`]) are two
//! choices of the same wiring.

use std::time::Duration;

use hacore::Topology;
use hacore::backend::{Hypervisor, LoadBalancer, Observer};
use hacore::disrupt::Lock;
use hacore::plan::Plan;
use kubeadm::control_plane::KubeadmControlPlane;
use kubeadm::live::Absent;

use crate::{Error, Reach};

/// The live backends of an operation on the cluster: the observer and the
/// disruption Lease, kubeadm's control plane (the Kubernetes API, etcd,
/// the nodes over SSH), the load balancer (its `loadBalancer.manage`
/// settings, else HAProxy's runtime API; absent when neither says how to
/// reach it: a step that needs it fails) and the hypervisor (absent unless
/// the operation's plan needs one). One set serves a whole roll.
pub struct Live {
    observer: Box<dyn Observer>,
    lock: Box<dyn Lock>,
    cp: KubeadmControlPlane,
    lb: Box<dyn LoadBalancer>,
    hv: Box<dyn Hypervisor>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// What [`Live::wire`] connects: the one place every live bundle is made.
pub struct Wiring<'a> {
    /// The cluster as it is: the disruption Lease lives in it.
    pub current: &'a Topology,
    /// The cluster the control plane and the load balancer are reached
    /// from (a plan's target: the new masters, the VIP).
    pub target: &'a Topology,
    /// Observe the topology each gate is given (the masters that have
    /// joined so far) instead of `current` only.
    pub follow_topology: bool,
    /// The policy whose `daemonsets` rule adds to the observation.
    pub policy: Option<&'a hacore::Policy>,
    /// The disruption lock's TTL; None: no lock (a lock asked of the
    /// bundle refuses, naming why).
    pub lock_ttl: Option<Duration>,
    /// The hypervisor; None: absent (a step that needs it fails).
    pub hypervisor: Option<Box<dyn Hypervisor>>,
    /// Refuse to wire when nothing says how to reach the load balancer
    /// (a plan with load-balancer steps), rather than fail at its step.
    pub require_load_balancer: bool,
}

impl<'a> Wiring<'a> {
    /// The wiring of `plan`, which changes the cluster: the Lease (if
    /// `lock_ttl`) in the cluster as it is (`plan.from`), the control plane
    /// and the load balancer of `plan.to`, gates observing the nodes that
    /// exist when they run, `hypervisor` for its VM steps (None: absent).
    pub fn plan(
        plan: &'a Plan,
        policy: Option<&'a hacore::Policy>,
        lock_ttl: Option<Duration>,
        hypervisor: Option<Box<dyn Hypervisor>>,
    ) -> Wiring<'a> {
        Wiring {
            current: &plan.from,
            target: &plan.to,
            follow_topology: true,
            policy,
            lock_ttl,
            hypervisor,
            require_load_balancer: false,
        }
    }
}

impl Live {
    /// Reach the cluster for planned disruptions: `policy` adds the
    /// DaemonSets its rule names to the observation; the disruption lock
    /// lasts `lock_ttl` without renewal.
    pub fn connect(
        topology: &Topology,
        reach: &Reach,
        policy: Option<&hacore::Policy>,
        lock_ttl: Duration,
    ) -> Result<Live, Error> {
        Live::wire(
            reach,
            Wiring {
                current: topology,
                target: topology,
                follow_topology: false,
                policy,
                lock_ttl: Some(lock_ttl),
                hypervisor: None,
                require_load_balancer: false,
            },
        )
    }

    /// Reach the cluster for `plan`, which changes it ([`Wiring::plan`]).
    pub fn connect_plan(
        plan: &Plan,
        reach: &Reach,
        policy: Option<&hacore::Policy>,
        lock_ttl: Option<Duration>,
        hypervisor: Option<Box<dyn Hypervisor>>,
    ) -> Result<Live, Error> {
        Live::wire(reach, Wiring::plan(plan, policy, lock_ttl, hypervisor))
    }

    /// Wire the backends `w` describes with `reach`'s settings.
    pub fn wire(reach: &Reach, w: Wiring<'_>) -> Result<Live, Error> {
        let config = reach.observer_config(w.policy)?;
        let lb = load_balancer(w.target, reach)?;
        if lb.is_none() && w.require_load_balancer {
            return Err(Error::Setting {
                what: "loadBalancer".into(),
                why: "the topology says no way to reach the load balancer: add `loadBalancer.manage` (or `runtimeApi`)".into(),
            });
        }
        // The observer of the cluster as it is (and its Lease): only made
        // when needed, as it reads the kubeconfig and etcd's certificates.
        let fixed = if w.lock_ttl.is_some() || !w.follow_topology {
            Some(kubeadm::live::LiveObserver::connect(
                w.current,
                config.clone(),
            )?)
        } else {
            None
        };
        let lock: Box<dyn Lock> = match (w.lock_ttl, &fixed) {
            (Some(ttl), Some(o)) => Box::new(o.lock(ttl)?),
            _ => Box::new(Absent(
                "these backends were wired without the disruption lock",
            )),
        };
        // Every observation also reads the masters' files over SSH
        // (manifests, kubeadm-config, disks, kubeadm's backups) for the
        // upgrade rules.
        let masters = KubeadmControlPlane::from_topology(w.target, &reach.control_plane_options())?;
        let observer: Box<dyn Observer> = match fixed {
            Some(o) if !w.follow_topology => Box::new(o.with_masters(masters)),
            _ => Box::new(
                kubeadm::LiveObserver::new(config)
                    .map_err(|e| {
                        Error::Unreachable(format!("starting the observer's runtime: {e}"))
                    })?
                    .with_masters(masters),
            ),
        };
        let cp = KubeadmControlPlane::from_topology(w.target, &reach.control_plane_options())?;
        Ok(Live {
            observer,
            lock,
            cp,
            lb: lb.unwrap_or_else(|| {
                Box::new(Absent(
                    "no load balancer to reach (loadBalancer.manage or runtimeApi)",
                ))
            }),
            hv: w
                .hypervisor
                .unwrap_or_else(|| Box::new(Absent("no hypervisor in this operation"))),
        })
    }

    /// Run `f` with the backends and the lock.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut hacore::backend::Backends<'_>, &mut dyn Lock) -> T,
    ) -> T {
        let mut b = hacore::backend::Backends {
            hypervisor: self.hv.as_mut(),
            load_balancer: self.lb.as_mut(),
            control_plane: &mut self.cp,
            observer: self.observer.as_mut(),
            clock: &kubeadm::SystemClock,
        };
        f(&mut b, self.lock.as_mut())
    }
}

/// The load balancer of `topology`: its `loadBalancer.manage` settings,
/// else HAProxy's runtime API (`reach`'s, else the topology's); None when
/// neither says how to reach it.
pub fn load_balancer(
    topology: &Topology,
    reach: &Reach,
) -> Result<Option<Box<dyn LoadBalancer>>, Error> {
    Ok(pfsense::lb::for_disruption(topology, &reach.lb_options())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_wired_without_the_lock_never_grants_it() {
        let mut lock = Absent("these backends were wired without the disruption lock");
        let e = lock.acquire("someone").unwrap_err();
        assert!(e.to_string().contains("without the disruption lock"), "{e}");
        assert!(lock.held("someone").is_err());
        assert!(lock.keep("someone", "why").is_err());
    }
}
