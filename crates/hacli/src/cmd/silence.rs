//! `--alertmanager-url`: the silences a disruption (`disrupt`, `roll`,
//! `drill --planned`, `replace-master`) creates for the alerts it causes
//! itself, from the policy's `silence:` section, and expires when the run
//! ends, also on failure. The client is `kubeadm::silence`.

use std::time::Duration;

use hacore::Policy;
use kubeadm::silence::{Alertmanager, RunSilences};

use crate::args::parse_duration;

/// Where the silences go.
#[derive(Debug, Clone, clap::Args)]
pub struct SilenceArgs {
    /// Alertmanager base URL (e.g. http://alertmanager:9093): silence the
    /// alerts the disruption causes, per node, with the matchers of the
    /// policy's `silence:` section, until the run's deadline; expired when
    /// the run ends. Without it, nothing is silenced.
    #[arg(long, env = "HACLI_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<String>,
    /// The deadline of each Alertmanager request.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub alertmanager_timeout: Duration,
}

/// A run's silences, while it runs.
#[derive(Debug)]
pub struct Active {
    rt: tokio::runtime::Runtime,
    run: RunSilences,
}

/// Create the silences for `nodes` (none without `--alertmanager-url`),
/// ending `bound` from now, created by `identity` (the run's lock holder).
/// A policy without a `silence:` section is a usage error when a URL is
/// given; a silence that cannot be created stops the run before anything
/// is disrupted.
pub fn start(
    args: &SilenceArgs,
    policy: &Policy,
    nodes: &[String],
    identity: &str,
    what: &str,
    bound: Duration,
) -> anyhow::Result<Option<Active>> {
    let Some(url) = &args.alertmanager_url else {
        return Ok(None);
    };
    let Some(spec) = &policy.silence else {
        anyhow::bail!(
            "--alertmanager-url: policy `{}` has no `silence:` section (the matchers of each node's silence); add one, or drop --alertmanager-url",
            policy.name
        );
    };
    if let Some(d) = spec.check(policy.rules.alerts.as_ref()).first() {
        anyhow::bail!("policy `{}`: {}: {}", policy.name, d.path, d.message);
    }
    let am = Alertmanager::new(url, args.alertmanager_timeout)?;
    let ends_at = jiff::Timestamp::now()
        + jiff::SignedDuration::try_from(bound).unwrap_or(jiff::SignedDuration::from_hours(1));
    let rt = crate::args::runtime()?;
    let run = rt
        .block_on(RunSilences::create(
            am, spec, nodes, identity, what, ends_at,
        ))
        .map_err(|e| {
            anyhow::anyhow!("silencing the disruption's alerts: {e}; nothing was disrupted")
        })?;
    for (node, id) in &run.silences {
        eprintln!("silence {id} for {node} until {ends_at} (created by {identity})");
    }
    Ok(Some(Active { rt, run }))
}

/// The silences of a run gated by `gate` (`replace-master`,
/// `remove-master`), with the matchers of `silence_policy`'s `silence:`
/// section (a built-in name or a file), checked against the run's own
/// `alerts` rule too. None without `--alertmanager-url`.
pub fn start_for_run(
    args: &SilenceArgs,
    silence_policy: Option<&str>,
    gate: &hacore::disrupt::Gate,
    nodes: &[String],
    what: &str,
    bound: Duration,
) -> anyhow::Result<Option<Active>> {
    let Some(p) = silence_policy else {
        if args.alertmanager_url.is_some() {
            anyhow::bail!(
                "--alertmanager-url needs --silence-policy POLICY: its `silence:` section gives each node's matchers"
            );
        }
        return Ok(None);
    };
    let policy = Policy {
        silence: Policy::named_or_file(p)?.silence,
        ..gate.policy.clone()
    };
    if let Some(s) = &policy.silence {
        if let Some(d) = s.check(policy.rules.alerts.as_ref()).first() {
            anyhow::bail!("--silence-policy {p}: {}: {}", d.path, d.message);
        }
    }
    start(args, &policy, nodes, &gate.identity, what, bound)
}

impl Active {
    /// Expire every silence of the run, saying what became of each on
    /// stderr. Returns false if one could not be expired (it ends by
    /// itself at the run's deadline).
    pub fn finish(self) -> bool {
        let mut ok = true;
        for r in self.rt.block_on(self.run.expire_all()) {
            match r {
                Ok(line) => eprintln!("{line}"),
                Err(e) => {
                    ok = false;
                    eprintln!("warning: {e} (it ends by itself at the run's deadline)");
                }
            }
        }
        ok
    }
}

/// Expire `active`'s silences (if any) after `result`, whatever it is.
pub fn finish<T>(active: Option<Active>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let Some(a) = active {
        a.finish();
    }
    result
}
