//! `hacli reconcile-config`: write what the masters run (static-pod flags
//! and host mounts that `kubeadm upgrade` would revert, as the
//! `control-plane-drift` rule reports them) into
//! `kube-system/kubeadm-config` through kubeadm (`kubeadm init phase
//! upload-config kubeadm`), after a copy of the ConfigMap as it was. Shows
//! the change; acts only with `--confirm`.

use crate::args::LiveArgs;
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Write the change (without it, only show it).
    #[arg(long)]
    pub confirm: bool,
    /// How the masters are reached over SSH.
    #[command(flatten)]
    pub ssh: crate::args::SshArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Run. Exit 0 nothing to do or written; 1 refused (a master unread,
/// masters disagree); 2 bad input; 3 the cluster could not be reached; 4
/// shown, waiting for `--confirm` (the command is printed).
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let topology = a.live.topology()?;
    let mut reach = a.live.reach();
    reach.ssh = a.ssh.reach();
    let done = match haops::reconcile::reconcile_config(&topology, &reach, a.confirm) {
        Ok(d) => d,
        Err(haops::Error::ControlPlane(kubeadm::control_plane::CpError::Refused(why))) => {
            eprintln!("REFUSED: {why}");
            return Ok(Exit::Deny);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(match e.exit_code() {
                2 => Exit::Usage,
                _ => Exit::Unknown,
            });
        }
    };
    match a.output {
        o @ (Output::Json | Output::Yaml) => crate::print_doc(o, "ReconcileConfig", &done)?,
        Output::Text => {
            if done.changes.is_empty() {
                outln!(
                    "kube-system/kubeadm-config already produces what every master runs: nothing to do"
                );
                return Ok(Exit::Ok);
            }
            outln!("kube-system/kubeadm-config, ClusterConfiguration:");
            for c in &done.changes {
                outln!("{c}");
            }
            if done.written {
                outln!(
                    "written through `kubeadm init phase upload-config kubeadm` on {}; the ConfigMap as it was is kept in {}",
                    done.via.as_deref().unwrap_or("?"),
                    done.backup.as_deref().unwrap_or("?")
                );
            } else {
                outln!("not written: run again with --confirm to write it through kubeadm");
            }
        }
    }
    Ok(if done.changes.is_empty() || done.written {
        Exit::Ok
    } else {
        crate::waiting_for(&["--confirm"])
    })
}
