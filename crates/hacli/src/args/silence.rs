//! `--alertmanager-url`: the silences a disruption (`disrupt`, `roll`,
//! `drill --planned`, `replace-master`) creates for the alerts it causes
//! itself, from the policy's `silence:` section, and expires when the run
//! ends, also on failure: `haops::silence`, its flags and its lines here
//! (not a command: `disrupt`, `master` and `drill` flatten it).

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

impl SilenceArgs {
    /// Where the silences go; None without `--alertmanager-url`.
    pub fn silence(&self) -> Option<haops::silence::Silence> {
        let url = self.alertmanager_url.clone()?;
        Some(haops::silence::Silence {
            alertmanager_url: url,
            timeout: self.alertmanager_timeout,
        })
    }
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
    let silence = args.silence();
    let now = jiff::Timestamp::now();
    let started = haops::silence::start(
        silence.as_ref(),
        policy,
        nodes,
        identity,
        what,
        bound,
        now,
        &mut say,
    )?;
    Ok(started.map(Active))
}

/// The silences of a run gated by `gate` (`replace-master`,
/// `remove-master`), with the matchers of `silence_policy`'s `silence:`
/// section (`haops::silence::policy_for_run`). None without
/// `--alertmanager-url`.
pub fn start_for_run(
    args: &SilenceArgs,
    silence_policy: Option<&str>,
    gate: &hacore::disrupt::Gate,
    nodes: &[String],
    what: &str,
    bound: Duration,
) -> anyhow::Result<Option<Active>> {
    let silence = args.silence();
    match haops::silence::policy_for_run(silence.as_ref(), silence_policy, &gate.policy)? {
        Some(policy) => start(args, &policy, nodes, &gate.identity, what, bound),
        None => Ok(None),
    }
}

/// Expire `active`'s silences (if any) after `result`, whatever it is,
/// saying what became of each on stderr (one that cannot be expired ends
/// by itself at the run's deadline).
pub fn finish<T>(active: Option<Active>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    haops::silence::finish(active.map(|a| a.0), &mut say);
    result
}
