//! The disruption lock (a `coordination.k8s.io/v1` Lease) by hand: take,
//! release, show, for a pipeline that gates in one step and releases in a
//! later one (`hacli lock`, `hapy.lock_*`). Only the Kubernetes API is
//! reached: the [`Reach`]'s `kubeconfig` and `lock_lease`; every call
//! within its `deadline` (at least 5 s).

use std::time::Duration;

use kubeadm::{Acquire, DisruptionLock, ObjectRef};

use crate::observe::runtime;
use crate::{Error, Reach};

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The Lease, `namespace/name`.
    pub lease: String,
    /// Its live holder; None: free.
    pub holder: Option<String>,
    /// When it expires unless renewed (None: free, kept, or no duration).
    pub until: Option<jiff::Timestamp>,
    /// Kept after a failed rollback, for this reason, until a person
    /// releases it.
    #[serde(rename = "keptBecause")]
    pub kept: Option<String>,
}

/// What taking the lock did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Taken {
    /// Held by the caller now (taken, taken over after expiry, or renewed).
    Taken {
        /// The Lease.
        lease: String,
        /// The caller.
        identity: String,
    },
    /// Someone else holds it.
    HeldBy {
        /// The Lease.
        lease: String,
        /// Its holder.
        holder: String,
        /// When it expires unless renewed.
        until: Option<jiff::Timestamp>,
    },
}

/// What releasing the lock did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Released {
    /// It was held by the caller and is free now.
    Released {
        /// The Lease.
        lease: String,
    },
    /// It was not held by the caller: nothing was done.
    NotHeld {
        /// The Lease.
        lease: String,
    },
}

fn deadline(reach: &Reach) -> Duration {
    reach.deadline.max(Duration::from_secs(5))
}

/// Run `f` with the lock `reach` names, within its deadline.
fn with_lock<T, F>(
    reach: &Reach,
    what: &str,
    f: impl FnOnce(DisruptionLock) -> F,
) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, kubeadm::Error>>,
{
    let lease = ObjectRef::parse("lock lease", &reach.lock_lease).map_err(|e| Error::Setting {
        what: "lock lease".into(),
        why: e.to_string(),
    })?;
    let limit = deadline(reach);
    runtime()?.block_on(async {
        let work = async {
            let client =
                kubeadm::kube_client_in(reach.kubeconfig.as_deref(), reach.context.as_deref())
                    .await?;
            f(DisruptionLock::new(client, lease.clone())).await
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Unreachable(format!(
                "{what} the lock {lease}: no answer within {} ms",
                limit.as_millis()
            ))),
        }
    })
}

/// Who holds the lock at `now`.
pub fn show(reach: &Reach, now: jiff::Timestamp) -> Result<LockStatus, Error> {
    with_lock(reach, "reading", |lock| async move {
        let holder = lock.status(now).await?;
        Ok(LockStatus {
            lease: lock.lease().to_string(),
            until: holder.as_ref().and_then(|h| h.until),
            kept: holder.as_ref().and_then(|h| h.kept.clone()),
            holder: holder.map(|h| h.identity),
        })
    })
}

/// Take (or renew) the lock for `identity` for `ttl`, at `now`.
pub fn take(
    reach: &Reach,
    identity: &str,
    ttl: Duration,
    now: jiff::Timestamp,
) -> Result<Taken, Error> {
    with_lock(reach, "taking", |lock| async move {
        let lease = lock.lease().to_string();
        Ok(match lock.acquire(identity, ttl, now).await? {
            Acquire::Acquired => Taken::Taken {
                lease,
                identity: identity.to_string(),
            },
            Acquire::HeldBy { holder, until } => Taken::HeldBy {
                lease,
                holder,
                until,
            },
        })
    })
}

/// Release the lock if `identity` holds it (idempotent: says when it did
/// not).
pub fn release(reach: &Reach, identity: &str) -> Result<Released, Error> {
    with_lock(reach, "releasing", |lock| async move {
        let lease = lock.lease().to_string();
        Ok(if lock.release(identity).await? {
            Released::Released { lease }
        } else {
            Released::NotHeld { lease }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_lease_is_a_setting_error_before_any_request() {
        let reach = Reach {
            lock_lease: "no-slash".into(),
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Reach::default()
        };
        let e = show(&reach, jiff::Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(e.to_string().contains("lock lease"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn an_unreadable_kubeconfig_cannot_release_and_exits_3() {
        let reach = Reach {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Reach::default()
        };
        let e = release(&reach, "me").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
        assert_eq!(e.exit_code(), 3);
    }
}
