//! `hacli lock take|show|release`: the disruption lock (a Lease) by hand,
//! for a pipeline that took it with `hacli gate --lock` and is done; the
//! operations are `haops::lock`'s.

use std::path::PathBuf;
use std::time::Duration;

use haops::lock::{Released, Taken};

use crate::args::parse_duration;
use crate::{Exit, Output};

/// Where the lock is.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// kubeconfig; by default KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (as `kubectl --context`); by default its current context.
    #[arg(long, env = "HACLI_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Disruption lock Lease, namespace/name.
    #[arg(
        long,
        env = "HACLI_LOCK",
        default_value = "kube-system/hacli-disruption-lock"
    )]
    pub lock_lease: String,
}

impl Where {
    fn reach(&self) -> haops::Reach {
        haops::Reach {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            lock_lease: self.lock_lease.clone(),
            ..haops::Reach::default()
        }
    }
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Who holds the lock now. Exit 0 (free or held), 3 if it cannot be read.
    Show {
        #[command(flatten)]
        at: Where,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Take (or renew) the lock for IDENTITY, whatever a gate would say.
    /// Exit 0 taken, 1 held by someone else, 3 if it cannot be reached.
    Take {
        /// The holder identity (give the same to `hacli lock release`).
        #[arg(long, env = "HACLI_IDENTITY")]
        identity: String,
        /// How long the lock lasts without renewal.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        lock_ttl: Duration,
        #[command(flatten)]
        at: Where,
    },
    /// Release the lock held by IDENTITY. Exit 0 released, 1 not held by it.
    Release {
        /// The identity that took it (`hacli gate --identity`).
        #[arg(long, env = "HACLI_IDENTITY")]
        identity: String,
        #[command(flatten)]
        at: Where,
    },
}

/// Run.
pub fn run(c: Command) -> anyhow::Result<Exit> {
    match c {
        Command::Show { at, output } => {
            // An error (the lease cannot be read) ends with its own exit
            // code: 3, 2 for a bad setting.
            let s = haops::lock::show(&at.reach(), jiff::Timestamp::now())?;
            let lease = &s.lease;
            match output {
                o @ (Output::Json | Output::Yaml) => crate::print_doc(
                    o,
                    "Lock",
                    &serde_json::json!({
                        "lease": lease,
                        "holder": s.holder,
                        "keptBecause": s.kept,
                    }),
                )?,
                Output::Text => match (&s.holder, &s.kept) {
                    (Some(h), Some(why)) => outln!(
                        "{lease}: held by {h}, KEPT until a person releases it (hacli lock release --identity '{h}'): {why}"
                    ),
                    (Some(h), None) => outln!("{lease}: held by {h}"),
                    (None, _) => outln!("{lease}: free"),
                },
            }
            Ok(Exit::Ok)
        }
        Command::Take {
            identity,
            lock_ttl,
            at,
        } => match haops::lock::take(&at.reach(), &identity, lock_ttl, jiff::Timestamp::now()) {
            Ok(Taken::Taken { lease, identity }) => {
                outln!("{lease}: held by {identity} for {}s", lock_ttl.as_secs());
                Ok(Exit::Ok)
            }
            Ok(Taken::HeldBy { lease, holder, .. }) => {
                outln!("{lease}: held by {holder}; not taken");
                Ok(Exit::Deny)
            }
            Err(e) => Err(e.into()),
        },
        Command::Release { identity, at } => match haops::lock::release(&at.reach(), &identity) {
            Ok(Released::Released { lease }) => {
                outln!("{lease}: released by {identity}");
                Ok(Exit::Ok)
            }
            Ok(Released::NotHeld { lease }) => {
                outln!("{lease}: not held by {identity}; nothing released");
                Ok(Exit::Deny)
            }
            Err(e) => Err(e.into()),
        },
    }
}
