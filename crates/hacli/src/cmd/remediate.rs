//! `hacli remediate`: decide from one observation whether a dead master is
//! to be replaced (`hacore::remediation`), remembering attempts between
//! runs; print the decision, its reason and the command; with `--confirm`,
//! carry the replacement out (`haops::remediate`).

use std::path::PathBuf;

use hacore::Topology;
use hacore::remediation::Decision;

use crate::args::placement::DeadArgs;

/// `hacli remediate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file of the cluster, and how to reach it.
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Decide from a state file (as `hacli check --state`) instead of
    /// observing the live cluster.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The remediation policy.
    #[command(flatten)]
    pub policy: crate::args::remediate::PolicyArgs,
    /// Where the loop's memory lives between runs (each master's unhealthy
    /// clock, the attempts): one run per observation, from cron or a timer.
    #[arg(long, value_name = "FILE")]
    pub memory: PathBuf,
    /// Write the decision as Prometheus text here (node-exporter's
    /// textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Acting on a `replace` decision (--confirm) and with what.
    #[command(flatten)]
    pub act: crate::args::remediate::ActArgs,
}

/// Run one observation's decision (and, with --confirm, its
/// replacement). Exit 0 healthy, waiting, cancelled, replaced, or to be
/// replaced (without --confirm: the command printed); 1 refused (quorum,
/// budget) or the replacement failed; 3 when the cluster cannot be
/// observed.
pub fn run(a: Args) -> anyhow::Result<crate::Exit> {
    let (topology, report) = Topology::load(&a.live.topology)?;
    crate::print_warnings(&report.warnings);
    let opts = haops::remediate::Once {
        policy: a.policy.policy()?,
        memory: a.memory.clone(),
        metrics: a.metrics.clone(),
    };
    let act = a.act.act()?;
    let ran =
        match &a.state {
            Some(_) => {
                let dead = DeadArgs {
                    dead: true,
                    state: a.state.clone(),
                };
                let state = dead.state(&a.live, &topology)?;
                let now = jiff::Timestamp::now();
                let decided = haops::remediate::decide_once(&topology, &state, &opts, now)?;
                outln!("{}", decided.decision.line());
                haops::remediate::Ran {
                    decided,
                    replaced: None,
                }
            }
            None => {
                let reach = a.act.reach(&a.live);
                let progress = crate::progress::Progress::spinner();
                let ran =
                    haops::remediate::run_once(&topology, &reach, &opts, act.as_ref(), &mut |e| {
                        match e {
                            haops::Event::Note(l) => outln!("{l}"),
                            haops::Event::Warning(l) => eprintln!("warning: {l}"),
                            e => progress.on_event(e),
                        }
                    });
                progress.finish();
                ran?
            }
        };
    let d = &ran.decided.decision;
    if let (Decision::Replace { node, .. }, None) = (d, &act) {
        outln!(
            "run: hacli replace-master {node} NEW -t {} --target TARGET --dead --journal FILE --backend live",
            a.live.topology.display()
        );
        outln!("not acting: pass --confirm --spare FILE --journal FILE to replace {node} now");
    }
    if let Some(r) = &ran.replaced {
        outln!(
            "journal: {}; the topology from now on: {}",
            r.journal.display(),
            r.topology.display()
        );
    }
    Ok(exit(d))
}

/// The exit code of a decision: 1 refused (quorum, budget, a failed
/// replacement), 3 a master's health not observed (its class, never its
/// words), else 0.
pub fn exit(d: &Decision) -> crate::Exit {
    match d {
        Decision::Refused { .. } => crate::Exit::Deny,
        d if d.unobserved() => crate::Exit::Unknown,
        _ => crate::Exit::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::remediation::Class;

    #[test]
    fn the_exit_code_follows_the_class_never_the_words() {
        let wait = |class| Decision::Wait {
            node: "m1".into(),
            reason: "the health of m1 was not observed".into(),
            class,
        };
        assert_eq!(exit(&wait(Class::Unobserved)) as u8, 3);
        assert_eq!(exit(&wait(Class::WithinBound)) as u8, 0);
        let refused = Decision::Refused {
            node: "m1".into(),
            reason: "quorum would not hold".into(),
            class: Class::Quorum,
        };
        assert_eq!(exit(&refused) as u8, 1);
        assert_eq!(exit(&Decision::Healthy) as u8, 0);
    }
}
