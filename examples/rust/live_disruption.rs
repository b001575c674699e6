//! A planned reboot of one node of a live cluster through haops, as hacli
//! and hapy run it: gate (POLICY, else the built-in `reboot`), take the lock,
//! drain the node's load-balancer backend, move etcd leadership away,
//! cordon and drain, reboot, wait until healthy, restore (backend ready,
//! uncordon), release the lock; with a journal, so a killed run resumes.
//! Reached through KUBECONFIG, HACLI_ETCD_ENDPOINTS, ETCDCTL_CACERT|CERT|KEY,
//! else the topology's `etcd`, `ssh` and `loadBalancer` sections. Run:
//! cargo run -p examples --example live_disruption -- TOPOLOGY NODE JOURNAL [POLICY]

use std::{error::Error, path::Path, process::ExitCode};

use hacore::{Policy, Topology, disrupt::DisruptAction, disrupt::Report, exec::Event as Step};
use haops::{Event, Reach, disrupt::Backend, disrupt::Request, disrupt::disrupt};

/// `TOPOLOGY NODE JOURNAL [POLICY]`: reboot NODE as a planned disruption
/// gated by POLICY (a built-in name or a file), its journal at JOURNAL.
pub fn run(args: &[String], reach: Reach) -> Result<Report, Box<dyn Error>> {
    let [topology, node, journal, policy @ ..] = args else {
        return Err("usage: live_disruption TOPOLOGY NODE JOURNAL [POLICY]".into());
    };
    let (topology, _warnings) = Topology::load(topology.as_ref())?;
    let policy = policy.first().map(|p| Policy::named_or_file(p));
    let action = DisruptAction::Reboot;
    let me = format!("live_disruption#{}", std::process::id());
    let request = Request::new(&action, policy.transpose()?, me);
    let mut events = |e: Event| match e {
        Event::Step(Step::Done { id }) => eprintln!("done {id}"),
        Event::Step(Step::Failed { id, error }) => eprintln!("FAILED {id}: {error}"),
        Event::Note(line) | Event::Warning(line) => eprintln!("{line}"),
        _ => {}
    };
    let (j, live): (&Path, _) = (journal.as_ref(), Backend::Live(reach));
    let report = disrupt(&topology, &action, node, &request, j, &live, &mut events)?;
    Ok(report)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reach = Reach::default().with_env(|k| std::env::var(k).ok());
    match reach
        .map_err(Into::into)
        .and_then(|reach| run(&args, reach))
    {
        Ok(r) => {
            println!("{}", r.summary());
            ExitCode::from(u8::from(!r.ok()))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
