//! `hacli lock show|release`: the disruption lock (a Lease) by hand, for a
//! pipeline that took it with `hacli gate --lock` and is done.

use std::path::PathBuf;

use kubeadm::{DisruptionLock, ObjectRef};

use crate::args::runtime;
use crate::{Exit, Output};

/// Where the lock is.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// kubeconfig; by default KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Disruption lock Lease, namespace/name.
    #[arg(
        long,
        env = "HACLI_LOCK",
        default_value = "kube-system/hacli-disruption-lock"
    )]
    pub lock_lease: String,
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
    let rt = runtime()?;
    match c {
        Command::Show { at, output } => {
            let lease = ObjectRef::parse("--lock-lease", &at.lock_lease)?;
            let client = rt.block_on(kubeadm::kube_client(at.kubeconfig.as_deref()))?;
            let lock = DisruptionLock::new(client, lease.clone());
            let status = match rt.block_on(lock.status(jiff::Timestamp::now())) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: {}", e.chain());
                    return Ok(Exit::Unknown);
                }
            };
            let holder = status.as_ref().map(|h| h.identity.clone());
            let kept = status.as_ref().and_then(|h| h.kept.clone());
            match output {
                Output::Json => crate::print_json(&serde_json::json!({
                    "lease": lease.to_string(),
                    "holder": holder,
                    "keptBecause": kept,
                }))?,
                Output::Text => match (&holder, &kept) {
                    (Some(h), Some(why)) => outln!(
                        "{lease}: held by {h}, KEPT until a person releases it (hacli lock release --identity '{h}'): {why}"
                    ),
                    (Some(h), None) => outln!("{lease}: held by {h}"),
                    (None, _) => outln!("{lease}: free"),
                },
            }
            Ok(Exit::Ok)
        }
        Command::Release { identity, at } => {
            let lease = ObjectRef::parse("--lock-lease", &at.lock_lease)?;
            let client = rt.block_on(kubeadm::kube_client(at.kubeconfig.as_deref()))?;
            let lock = DisruptionLock::new(client, lease.clone());
            match rt.block_on(lock.release(&identity)) {
                Ok(true) => {
                    outln!("{lease}: released by {identity}");
                    Ok(Exit::Ok)
                }
                Ok(false) => {
                    outln!("{lease}: not held by {identity}; nothing released");
                    Ok(Exit::Deny)
                }
                Err(e) => {
                    eprintln!("error: {}", e.chain());
                    Ok(Exit::Unknown)
                }
            }
        }
    }
}
