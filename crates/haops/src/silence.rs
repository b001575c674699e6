//! The Alertmanager silences of a disruption (`disrupt`, `roll`, a
//! planned drill, `replace-master`): one per node for the alerts the
//! disruption causes itself, with the matchers of the policy's `silence:`
//! section, until the run's deadline; expired when the run ends, also on
//! failure. The client is `kubeadm::silence`.

use std::time::Duration;

use hacore::Policy;
use kubeadm::silence::{Alertmanager, RunSilences};

use crate::Error;
use crate::events::{Event, Events};
use crate::observe::runtime;

/// Where a run's silences go (no `Silence`: nothing is silenced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Alertmanager base URL (e.g. `http://alertmanager:9093`).
    pub alertmanager_url: String,
    /// The deadline of each Alertmanager request.
    pub timeout: Duration,
}

/// A run's silences, while it runs.
#[derive(Debug)]
pub struct Silences {
    rt: tokio::runtime::Runtime,
    run: RunSilences,
}

fn setting(what: &str, why: String) -> Error {
    Error::Setting {
        what: what.into(),
        why,
    }
}

/// Create the silences for `nodes` (none without `silence`), ending
/// `bound` after `now`, created by `identity` (the run's lock holder) for
/// `what`. A policy without a `silence:` section is a setting error when
/// an Alertmanager is given; a silence that cannot be created stops the
/// run before anything is disrupted. Each silence is reported as a note.
#[allow(clippy::too_many_arguments)]
pub fn start(
    silence: Option<&Silence>,
    policy: &Policy,
    nodes: &[String],
    identity: &str,
    what: &str,
    bound: Duration,
    now: jiff::Timestamp,
    events: Events<'_>,
) -> Result<Option<Silences>, Error> {
    let Some(silence) = silence else {
        return Ok(None);
    };
    let Some(spec) = &policy.silence else {
        return Err(setting(
            &format!("policy `{}`", policy.name),
            format!(
                "it has no `silence:` section (the matchers of each node's silence) for the Alertmanager at {}; add one, or give no Alertmanager URL",
                silence.alertmanager_url
            ),
        ));
    };
    if let Some(d) = spec.check(policy.rules.alerts.as_ref()).first() {
        return Err(setting(
            &format!("policy `{}`", policy.name),
            format!("{}: {}", d.path, d.message),
        ));
    }
    let am = Alertmanager::new(&silence.alertmanager_url, silence.timeout)
        .map_err(|e| setting("the Alertmanager URL", e.to_string()))?;
    let ends_at =
        now + jiff::SignedDuration::try_from(bound).unwrap_or(jiff::SignedDuration::from_hours(1));
    let rt = runtime()?;
    let run = rt
        .block_on(RunSilences::create(
            am, spec, nodes, identity, what, ends_at,
        ))
        .map_err(|e| {
            Error::Unreachable(format!(
                "silencing the disruption's alerts: {e}; nothing was disrupted"
            ))
        })?;
    for (node, id) in &run.silences {
        events(Event::Note(format!(
            "silence {id} for {node} until {ends_at} (created by {identity})"
        )));
    }
    Ok(Some(Silences { rt, run }))
}

/// Expire `active`'s silences (if any): `Silences::finish`.
pub fn finish(active: Option<Silences>, events: Events<'_>) -> bool {
    active.is_none_or(|a| a.finish(events))
}

/// The policy whose `silence:` section silences a run gated by `gate`
/// (`replace-master`, `remove-master`): `gate` with the `silence:`
/// section of `silence_policy` (a built-in name or a file), checked
/// against the gate's own `alerts` rule. None without `silence`; an
/// Alertmanager without a silence policy is a setting error.
pub fn policy_for_run(
    silence: Option<&Silence>,
    silence_policy: Option<&str>,
    gate: &Policy,
) -> Result<Option<Policy>, Error> {
    if silence.is_none() {
        return Ok(None);
    }
    let Some(p) = silence_policy else {
        return Err(setting(
            "--silence-policy",
            "an Alertmanager URL needs a silence policy: its `silence:` section gives each node's matchers".into(),
        ));
    };
    let named = Policy::named_or_file(p).map_err(|e| setting("--silence-policy", e.to_string()))?;
    let policy = Policy {
        silence: named.silence,
        ..gate.clone()
    };
    if let Some(d) = policy
        .silence
        .as_ref()
        .and_then(|s| s.check(policy.rules.alerts.as_ref()).into_iter().next())
    {
        return Err(setting(
            &format!("--silence-policy {p}"),
            format!("{}: {}", d.path, d.message),
        ));
    }
    Ok(Some(policy))
}

impl Silences {
    /// Expire every silence of the run, reporting what became of each
    /// (a note, or a warning for one that ends by itself at the run's
    /// deadline). Returns false if one could not be expired.
    pub fn finish(self, events: Events<'_>) -> bool {
        let mut ok = true;
        for r in self.rt.block_on(self.run.expire_all()) {
            match r {
                Ok(line) => events(Event::Note(line)),
                Err(e) => {
                    ok = false;
                    events(Event::Warning(format!(
                        "{e} (it ends by itself at the run's deadline)"
                    )));
                }
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_url_nothing_is_silenced_and_with_one_a_policy_needs_matchers() {
        let policy = Policy::named_or_file("reboot").unwrap();
        let am = Silence {
            alertmanager_url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_secs(1),
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        let run = |r: Option<&Silence>| {
            start(
                r,
                &policy,
                &["m1".into()],
                "me",
                "reboot",
                Duration::from_secs(60),
                now,
                &mut crate::events::ignore,
            )
        };
        assert!(run(None).unwrap().is_none());
        assert!(policy.silence.is_none(), "the built-in names no matchers");
        let e = run(Some(&am)).unwrap_err();
        assert!(e.to_string().contains("no `silence:` section"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
