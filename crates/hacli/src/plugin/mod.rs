//! hacli as a Woodpecker CI plugin step (`hacli plugin`, `cmd/plugin.rs`):
//! its settings ([`settings`]), the call they stand for ([`map`]), and
//! that call run through the library (`haops::gate`, `haops::lock`) or
//! the offline decisions ([`crate::offline`]), as the commands run them;
//! `disrupt` and `roll` run the command line itself ([`disrupt`]).

pub(crate) mod disrupt;
pub(crate) mod map;
pub(crate) mod settings;

use hacore::Verdict;
use haops::gate::{GateRequest, default_identity};
use haops::lock::Released;
use map::{Call, Target};

use crate::{Exit, render};

/// What a call produced: a summary for people, the JSON result, the exit.
pub(crate) struct Done {
    pub summary: String,
    pub value: serde_json::Value,
    pub exit: Exit,
}

fn verdict(v: Verdict) -> anyhow::Result<Done> {
    Ok(Done {
        summary: render::verdict_short(&v),
        value: serde_json::to_value(&v)?,
        exit: v.decision.into(),
    })
}

fn load_topology(t: &Target) -> anyhow::Result<hacore::Topology> {
    let (topology, warnings) = hacore::Topology::load(&t.topology)?;
    crate::print_warnings(&warnings.warnings);
    Ok(topology)
}

/// Run `call`.
pub(crate) fn run(call: Call) -> anyhow::Result<Done> {
    match call {
        Call::Gate {
            target: t,
            reach,
            lock,
            lock_ttl,
            identity,
        } => {
            let topology = load_topology(&t)?;
            let policy = crate::offline::policy(t.policy.as_deref(), t.action)?;
            let identity = identity
                .or_else(|| std::env::var("HACLI_IDENTITY").ok())
                .unwrap_or_else(|| default_identity(t.action, &t.node));
            let request = GateRequest {
                lock,
                lock_ttl,
                ..GateRequest::new(t.action, &t.node, &policy, &identity)
            };
            let now = jiff::Timestamp::now();
            let mut notes = |e: haops::Event| {
                if let haops::Event::Note(l) | haops::Event::Warning(l) = e {
                    eprintln!("{l}");
                }
            };
            verdict(haops::gate::gate(&topology, &reach, &request, now, &mut notes)?.verdict)
        }
        Call::Check {
            target: t,
            state,
            at,
            requester,
        } => verdict(crate::offline::check(&crate::offline::Check {
            action: &t.action.to_string(),
            target: &t.node,
            topology: &t.topology,
            state: &state,
            policy: t.policy.as_deref(),
            at: at.as_deref(),
            requester: requester.as_deref(),
        })?),
        Call::Plan {
            from,
            to,
            state,
            template,
        } => Ok(
            match crate::offline::plan(&from, &to, state.as_deref(), template)? {
                Ok(p) => Done {
                    summary: p.to_text(),
                    value: serde_json::to_value(&p)?,
                    exit: Exit::Ok,
                },
                Err(r) => Done {
                    summary: format!("REFUSED: {r}"),
                    value: serde_json::to_value(&r)?,
                    exit: Exit::Deny,
                },
            },
        ),
        Call::Simulate { plan, failures } => {
            let r = crate::offline::simulate(&plan, failures)?;
            Ok(Done {
                summary: r.to_text(),
                value: serde_json::to_value(&r)?,
                exit: if r.critical.is_empty() {
                    Exit::Ok
                } else {
                    Exit::Deny
                },
            })
        }
        Call::Release { reach, identity } => release(&reach, &identity),
        // The command prints its own report.
        Call::Command { argv } => {
            let cli = <crate::Cli as clap::Parser>::try_parse_from(&argv)?;
            Ok(Done {
                summary: String::new(),
                value: serde_json::Value::Null,
                exit: crate::dispatch(cli)?,
            })
        }
    }
}

/// Release the lock as `hacli lock release` does (no JSON result).
fn release(reach: &haops::Reach, identity: &str) -> anyhow::Result<Done> {
    let (summary, exit) = match haops::lock::release(reach, identity) {
        Ok(Released::Released { lease }) => (format!("{lease}: released by {identity}"), Exit::Ok),
        Ok(Released::NotHeld { lease }) => (
            format!("{lease}: not held by {identity}; nothing released"),
            Exit::Deny,
        ),
        Err(e) if e.exit_code() == 2 => return Err(e.into()),
        Err(e) => {
            eprintln!("error: {}", kubeadm::redact_urls_in(&e.to_string()));
            (String::new(), Exit::Unknown)
        }
    };
    Ok(Done {
        summary,
        value: serde_json::Value::Null,
        exit,
    })
}
