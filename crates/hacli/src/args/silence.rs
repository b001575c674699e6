//! `--alertmanager-url`: the silences a disruption (`disrupt`, `roll`,
//! `drill --planned`, `replace-master`) creates for the alerts it causes
//! itself, from the policy's `silence:` section, and expires when the run
//! ends, also on failure: `haops::silence`, its flags and its lines here.

use std::time::Duration;

use hacore::Policy;

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
pub struct Active(haops::silence::Silences);

fn say(e: haops::Event) {
    match e {
        haops::Event::Note(l) => eprintln!("{l}"),
        haops::Event::Warning(l) => eprintln!("warning: {l}"),
        _ => {}
    }
}

/// Create the silences for `nodes` (`haops::silence::start`; none without
/// `--alertmanager-url`), ending `bound` from now, created by `identity`.
pub fn start(
    args: &SilenceArgs,
    policy: &Policy,
    nodes: &[String],
    identity: &str,
    what: &str,
    bound: Duration,
) -> anyhow::Result<Option<Active>> {
    let reach = haops::silence::SilenceReach {
        alertmanager_url: args.alertmanager_url.clone(),
        timeout: args.alertmanager_timeout,
    };
    let now = jiff::Timestamp::now();
    let started =
        haops::silence::start(&reach, policy, nodes, identity, what, bound, now, &mut say)?;
    Ok(started.map(Active))
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
        self.0.finish(&mut say)
    }
}

/// Expire `active`'s silences (if any) after `result`, whatever it is.
pub fn finish<T>(active: Option<Active>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let Some(a) = active {
        a.finish();
    }
    result
}
