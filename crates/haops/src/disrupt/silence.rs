//! The Alertmanager silences a disruption creates for the alerts it
//! causes itself, from the policy's `silence:` section, expired when the
//! run ends, also on failure (the client is `kubeadm::silence`).

use std::time::Duration;

use hacore::Policy;
use kubeadm::silence::{Alertmanager, RunSilences};

use crate::Error;
use crate::events::{Event, Events};

/// Where a disruption's silences go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Alertmanager base URL (e.g. `http://alertmanager:9093`).
    pub alertmanager_url: String,
    /// The deadline of each Alertmanager request.
    pub timeout: Duration,
}

/// A run's silences, while it runs.
pub(crate) struct Active {
    rt: tokio::runtime::Runtime,
    run: RunSilences,
}

/// Create the silences for `nodes` (none without `silence`), ending
/// `bound` from now, created by `identity` (the run's lock holder). A
/// policy without a `silence:` section is a setting error; a silence that
/// cannot be created stops the run before anything is disrupted.
pub(crate) fn start(
    silence: Option<&Silence>,
    policy: &Policy,
    nodes: &[String],
    identity: &str,
    what: &str,
    bound: Duration,
    events: Events<'_>,
) -> Result<Option<Active>, Error> {
    let Some(silence) = silence else {
        return Ok(None);
    };
    let setting = |why: String| Error::Setting {
        what: format!("policy `{}`", policy.name),
        why,
    };
    let Some(spec) = &policy.silence else {
        return Err(setting(format!(
            "it has no `silence:` section (the matchers of each node's silence) for the Alertmanager at {}; add one, or give no Alertmanager URL",
            silence.alertmanager_url
        )));
    };
    if let Some(d) = spec.check(policy.rules.alerts.as_ref()).first() {
        return Err(setting(format!("{}: {}", d.path, d.message)));
    }
    let unreachable = |e: String| {
        Error::Unreachable(format!(
            "silencing the disruption's alerts: {e}; nothing was disrupted"
        ))
    };
    let am = Alertmanager::new(&silence.alertmanager_url, silence.timeout).map_err(|e| {
        Error::Setting {
            what: "the Alertmanager URL".into(),
            why: e.to_string(),
        }
    })?;
    let ends_at = jiff::Timestamp::now()
        + jiff::SignedDuration::try_from(bound).unwrap_or(jiff::SignedDuration::from_hours(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(format!("starting the async runtime: {e}")))?;
    let run = rt
        .block_on(RunSilences::create(
            am, spec, nodes, identity, what, ends_at,
        ))
        .map_err(|e| unreachable(e.to_string()))?;
    for (node, id) in &run.silences {
        events(Event::Note(format!(
            "silence {id} for {node} until {ends_at} (created by {identity})"
        )));
    }
    Ok(Some(Active { rt, run }))
}

/// Expire every silence of the run (if any), saying what became of each.
pub(crate) fn finish(active: Option<Active>, events: Events<'_>) {
    let Some(a) = active else { return };
    for r in a.rt.block_on(a.run.expire_all()) {
        events(match r {
            Ok(line) => Event::Note(line),
            Err(e) => Event::Warning(format!("{e} (it ends by itself at the run's deadline)")),
        });
    }
}
