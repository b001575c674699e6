//! `hacli drill NODE`: the failover drill. Constant read traffic through
//! the control-plane endpoint (the VIP) while NODE is disrupted, the load
//! balancer watched; the measurements as text, JSON (`-o json`, schema
//! `hacli.drill/v1`) and an HTML page with a timeline chart (`--html`).
//! The drill is `haops::drill::drill`; this file only turns flags into its
//! options, shows its events on stderr and renders the report (`text`,
//! `html`).
//!
//! `--planned` disrupts the node with `hacli disrupt reboot NODE`'s plan
//! (gate and lock, drain the backend, move etcd leadership away, cordon
//! and drain, reboot, wait until healthy, backend ready, uncordon,
//! release), run on the live cluster with its journal while the traffic
//! goes; the report adds the plan's steps on the drill's time axis, where
//! etcd leadership went and the lock holder.
//!
//! Exit codes: 0 the drill ran and met its target (unplanned: the longest
//! gap within `fall × interval + interval`; planned: no failed request),
//! 1 refused by the gate, or the target was missed, 2 bad input, 3 the
//! drill could not be carried out (not healthy before, the disruption or
//! the restore failed, no recovery).

use anyhow::{Context as _, bail};
use haops::drill::Outcome;

use crate::{Exit, Output};

mod args;
mod html;
mod text;

pub use args::Args;

/// A drill's event on stderr.
fn show(e: haops::Event) {
    match e {
        haops::Event::Note(line) => eprintln!("drill: {line}"),
        haops::Event::Warning(w) => eprintln!("WARNING: {w}"),
        haops::Event::Step(s) => {
            if let Some(line) = haops::events::step_line(&s) {
                eprintln!("drill: {line}");
            }
        }
        _ => {}
    }
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    if a.planned && a.journal.is_none() {
        bail!(
            "--planned needs --journal FILE: the planned disruption of {} is `hacli disrupt reboot {}`'s plan, run with a journal so an interrupted run can be resumed",
            a.node,
            a.node
        );
    }
    let topology = a.live.topology()?;
    let policy = match &a.policy {
        Some(p) => hacore::Policy::named_or_file(p)?,
        None => hacore::Policy::for_action(hacore::Action::Reboot),
    };
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = crate::args::hostname();
        format!("hacli-drill@{host}#{}", std::process::id())
    });
    // Silenced until the lock would lapse: it covers the whole disruption.
    let silences = if a.planned {
        let node = std::slice::from_ref(&a.node);
        crate::args::silence::start(&a.silence, &policy, node, &identity, "drill", a.lock_ttl)?
    } else {
        None
    };
    let options = a.options(policy, &identity);
    let result = haops::drill::drill(&topology, &a.reach(), &options, &mut show);
    let outcome = match crate::args::silence::finish(silences, result.map_err(Into::into)) {
        Ok(o) => o,
        Err(e) => match e.downcast_ref::<haops::Error>() {
            Some(e) if e.exit_code() == 3 => {
                // A URL in an error is shown without its credentials.
                eprintln!("hacli drill: {}", kubeadm::redact_urls_in(&e.to_string()));
                return Ok(Exit::Unknown);
            }
            _ => return Err(e),
        },
    };
    let report = match outcome {
        Outcome::Ran(report) => report,
        Outcome::Refused { verdict, deny } => {
            eprint!("{}", crate::render::verdict(&verdict));
            eprintln!(
                "hacli drill: the gate does not allow taking {} down now; nothing was disrupted",
                a.node
            );
            return Ok(if deny { Exit::Deny } else { Exit::Unknown });
        }
        Outcome::NotHealthy { reason } => {
            eprintln!("hacli drill: {reason}");
            return Ok(Exit::Unknown);
        }
    };
    if let Some(path) = &a.html {
        std::fs::write(path, html::page(&report))
            .with_context(|| format!("writing --html {}", path.display()))?;
        eprintln!("drill: wrote {}", path.display());
    }
    match a.output {
        Output::Text => out!("{}", text::summary(&report)),
        o => crate::print_doc(o, "DrillReport", &report)?,
    }
    Ok(match haops::drill::exit_code(&report) {
        0 => Exit::Ok,
        1 => Exit::Deny,
        _ => Exit::Unknown,
    })
}
