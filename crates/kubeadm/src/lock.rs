//! The disruption lock: a `coordination.k8s.io/v1` Lease.
//!
//! Taking it is a create (409 AlreadyExists when someone was first) or a
//! replace carrying the resourceVersion just read (409 Conflict when someone
//! wrote in between): of two racing gates exactly one wins, and the loser
//! reports the winner. A holder that stops renewing loses the lease once
//! `renewTime + leaseDurationSeconds` has passed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use hacore::verdict::{Decision, Finding, Severity, Verdict};

use crate::{Error, ObjectRef, to_chrono, to_jiff};

/// The outcome of [`DisruptionLock::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// We hold it now (newly taken, taken over after expiry, or renewed).
    Acquired,
    /// Someone else holds it.
    HeldBy {
        /// Their identity.
        holder: String,
        /// When it expires unless renewed.
        until: Option<jiff::Timestamp>,
    },
}

/// The lock, by Lease name.
#[derive(Clone)]
pub struct DisruptionLock {
    api: Api<Lease>,
    lease: ObjectRef,
}

impl std::fmt::Debug for DisruptionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisruptionLock")
            .field("lease", &self.lease)
            .finish()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The annotation that keeps the lock held after a run's rollback failed,
/// whatever its renew time, with the reason for people (`hacli lock show`);
/// releasing the lock removes it.
pub const KEPT_ANNOTATION: &str = "hacli.io/kept-because";

/// Why the lease is kept (see [`KEPT_ANNOTATION`]), if it is.
fn kept_because(l: &Lease) -> Option<String> {
    l.metadata
        .annotations
        .as_ref()?
        .get(KEPT_ANNOTATION)
        .filter(|r| !r.is_empty())
        .cloned()
}

/// Who holds the lock now, and how (see [`DisruptionLock::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's identity.
    pub identity: String,
    /// When it expires unless renewed (None: kept, or no duration).
    pub until: Option<jiff::Timestamp>,
    /// Kept after a failed rollback, for this reason, until a person
    /// releases it.
    pub kept: Option<String>,
}

/// The live holder of a lease at `now`, with its expiry (None when kept
/// after a failed rollback: it does not expire).
fn live_holder(l: &Lease, now: jiff::Timestamp) -> Option<(String, Option<jiff::Timestamp>)> {
    let spec = l.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    if kept_because(l).is_some() {
        return Some((holder, None));
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| to_jiff(&t.0));
    let until = match (renewed, spec.lease_duration_seconds) {
        (Some(at), Some(s)) => Some(at + jiff::SignedDuration::from_secs(i64::from(s))),
        _ => None,
    };
    match until {
        Some(u) if u <= now => None,
        _ => Some((holder, until)),
    }
}

impl DisruptionLock {
    /// The lock held in Lease `lease`.
    pub fn new(client: kube::Client, lease: ObjectRef) -> Self {
        DisruptionLock {
            api: Api::namespaced(client, &lease.namespace),
            lease,
        }
    }

    /// Which Lease.
    pub fn lease(&self) -> &ObjectRef {
        &self.lease
    }

    fn err(&self, what: &str, e: kube::Error) -> Error {
        Error::kube(format!("{what} lease {}", self.lease), e)
    }

    /// Take (or renew) the lock for `identity` for `ttl`, at `now`.
    pub async fn acquire(
        &self,
        identity: &str,
        ttl: Duration,
        now: jiff::Timestamp,
    ) -> Result<Acquire, Error> {
        let ttl_s = i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX);
        let current = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?;
        let at = Some(MicroTime(to_chrono(now)));
        match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.lease.name.clone()),
                        namespace: Some(self.lease.namespace.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "hacli".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(identity.to_string()),
                        lease_duration_seconds: Some(ttl_s),
                        acquire_time: at.clone(),
                        renew_time: at,
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Acquire::Acquired),
                    Err(e) if is_status(&e, 409) => self.loser(identity, now).await,
                    Err(e) => Err(self.err("create", e)),
                }
            }
            Some(mut lease) => {
                let live = live_holder(&lease, now);
                if let Some((holder, until)) = &live {
                    if holder != identity {
                        return Ok(Acquire::HeldBy {
                            holder: holder.clone(),
                            until: *until,
                        });
                    }
                }
                let renewing = live.is_some();
                let spec = lease.spec.get_or_insert_with(Default::default);
                if !renewing {
                    spec.acquire_time = at.clone();
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(identity.to_string());
                spec.lease_duration_seconds = Some(ttl_s);
                spec.renew_time = at;
                // `lease` carries the resourceVersion we read: a write by
                // anyone in between makes this a 409 Conflict.
                match self
                    .api
                    .replace(&self.lease.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(Acquire::Acquired),
                    Err(e) if is_status(&e, 409) => self.loser(identity, now).await,
                    Err(e) => Err(self.err("update", e)),
                }
            }
        }
    }

    /// After losing a race: who won.
    async fn loser(&self, identity: &str, now: jiff::Timestamp) -> Result<Acquire, Error> {
        let lease = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?;
        match lease.as_ref().and_then(|l| live_holder(l, now)) {
            Some((h, _)) if h == identity => Ok(Acquire::Acquired),
            Some((holder, until)) => Ok(Acquire::HeldBy { holder, until }),
            // The winner released already; report the race honestly.
            None => Ok(Acquire::HeldBy {
                holder: "(a concurrent writer)".into(),
                until: None,
            }),
        }
    }

    /// Release the lock if `identity` holds it. Returns whether it did.
    pub async fn release(&self, identity: &str) -> Result<bool, Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?
        else {
            return Ok(false);
        };
        let holds = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(identity);
        if !holds {
            return Ok(false);
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        }
        if let Some(a) = lease.metadata.annotations.as_mut() {
            a.remove(KEPT_ANNOTATION);
        }
        match self
            .api
            .replace(&self.lease.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => Err(self.err("release", e)),
        }
    }

    /// Keep the lock for `identity` after its run's rollback failed: held
    /// whatever its renew time, with `reason` on the Lease
    /// ([`KEPT_ANNOTATION`]) for people, until someone releases it. Refused
    /// when another identity holds it.
    pub async fn keep(
        &self,
        identity: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<(), Error> {
        let mut lease = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?
            .ok_or_else(|| Error::Disruption {
                node: self.lease.to_string(),
                reason: "the lease is gone: nothing to keep".into(),
            })?;
        if let Some((holder, _)) = live_holder(&lease, now)
            && holder != identity
        {
            return Err(Error::Disruption {
                node: self.lease.to_string(),
                reason: format!("held by {holder}, not {identity}: not keeping it"),
            });
        }
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(identity.to_string());
        spec.renew_time = Some(MicroTime(to_chrono(now)));
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(KEPT_ANNOTATION.to_string(), reason.to_string());
        self.api
            .replace(&self.lease.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| self.err("keep", e))
    }

    /// Who holds the lock at `now`, until when, and whether it is kept
    /// after a failed rollback (and why).
    pub async fn status(&self, now: jiff::Timestamp) -> Result<Option<Holder>, Error> {
        let lease = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?;
        Ok(lease.as_ref().and_then(|l| {
            live_holder(l, now).map(|(identity, until)| Holder {
                identity,
                until,
                kept: kept_because(l),
            })
        }))
    }

    /// Who holds the lock at `now`, if anyone.
    pub async fn holder(&self, now: jiff::Timestamp) -> Result<Option<String>, Error> {
        let lease = self
            .api
            .get_opt(&self.lease.name)
            .await
            .map_err(|e| self.err("read", e))?;
        Ok(lease
            .as_ref()
            .and_then(|l| live_holder(l, now))
            .map(|(h, _)| h))
    }
}

impl DisruptionLock {
    /// For a gate: take the lock for an allowed `verdict` within `deadline`,
    /// and record the outcome as its `lock` finding: pass when taken, deny
    /// when someone else holds it, unknown when the API did not answer. The
    /// decision is recomputed; a verdict that is not allowed is left alone.
    pub async fn take_for(
        &self,
        verdict: &mut Verdict,
        identity: &str,
        ttl: Duration,
        now: jiff::Timestamp,
        deadline: Duration,
    ) {
        if !verdict.allowed() {
            return;
        }
        let finding = match tokio::time::timeout(deadline, self.acquire(identity, ttl, now)).await {
            Ok(Ok(Acquire::Acquired)) => Finding::new(
                "lock",
                Severity::Pass,
                format!(
                    "took the disruption lock {} as {identity} for {}s",
                    self.lease(),
                    ttl.as_secs()
                ),
            ),
            Ok(Ok(Acquire::HeldBy { holder, until })) => Finding::new(
                "lock",
                Severity::Deny,
                format!(
                    "the disruption lock is held by {holder}{}",
                    until
                        .map(|u| format!(" until {u} unless renewed"))
                        .unwrap_or_default()
                ),
            )
            .fix("wait for the holder to finish; one disruption at a time"),
            Ok(Err(e)) => Finding::new(
                "lock",
                Severity::Unknown,
                format!("could not take the lock: {}", e.chain()),
            ),
            Err(_) => Finding::new(
                "lock",
                Severity::Unknown,
                format!(
                    "could not take the lock: no answer within {} ms",
                    deadline.as_millis()
                ),
            ),
        };
        verdict.findings.push(finding);
        verdict.decision = Decision::from_findings(&verdict.findings);
    }
}
