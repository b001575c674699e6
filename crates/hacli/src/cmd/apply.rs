//! `hacli apply PLAN --journal J`: execute a plan step by step, resumably.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hacore::backend::{BackendError, LbOp, LoadBalancer};
use hacore::exec::{self, Event, Journal, Outcome};
use hacore::simulated::{SimHandle, SimulatedCluster, with_backends};
use haops::journal::FileJournal;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Exit, Output};

/// Which backends carry the plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The in-memory SimulatedCluster test double, persisted next to the
    /// journal (`JOURNAL.sim.json`): a rehearsal, nothing real is touched.
    Simulated,
    /// The real systems: Proxmox (the target topology's `proxmox:` section,
    /// the `--proxmox*` flags and the environment), the load balancer
    /// (`loadBalancer.manage`), kubeadm over SSH, the Kubernetes API and
    /// etcd (`ssh:`, the kubeconfig, the etcd client certificates); gates
    /// observe the live cluster.
    Live,
}

/// How the live backends reach the cluster (`--backend live`).
#[derive(Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// kubeconfig; by default KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// etcd client URLs, comma-separated; by default the topology's `etcd.endpoints`, else every control-plane node's address on :2379.
    #[arg(long, env = "HACLI_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Directory with the etcd CA and client pair (kubeadm layout); by default the topology's `etcd.pki`, else /etc/kubernetes/pki/etcd.
    #[arg(long, env = "HACLI_ETCD_PKI")]
    pub etcd_pki: Option<PathBuf>,
    /// etcd CA file (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// etcd client certificate (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd client key (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// SSH known_hosts file for the nodes (over the topology's `ssh.knownHosts`).
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
    /// SSH private key for the nodes (over the topology's `ssh.identityFile`).
    #[arg(long)]
    pub ssh_identity: Option<PathBuf>,
    /// Where etcd snapshots taken by the plan are written (mode 0600).
    #[arg(long, default_value = "etcd-snapshots")]
    pub snapshot_dir: PathBuf,
    /// Deadline of one gate observation.
    #[arg(long, default_value = "5s", value_parser = crate::args::parse_duration)]
    pub observe_deadline: std::time::Duration,
    /// How long a VM just started may take until its sshd answers
    /// (cloud-init's first boot); then its provisioning phase fails and is
    /// rolled back (the VM deleted).
    #[arg(long, default_value = "5m", value_parser = crate::args::parse_duration)]
    pub boot_wait: std::time::Duration,
}

impl ClusterArgs {
    fn etcd_tls(&self) -> kubeadm::EtcdTlsOverrides {
        kubeadm::EtcdTlsOverrides {
            pki: self.etcd_pki.clone(),
            ca: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        }
    }

    fn observer(&self) -> kubeadm::ObserverConfig {
        kubeadm::ObserverConfig {
            kubeconfig: self.kubeconfig.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: self.etcd_tls(),
            deadline: self.observe_deadline,
            member_timeout: self.observe_deadline.min(std::time::Duration::from_secs(2)),
            ..Default::default()
        }
    }

    fn control_plane(
        &self,
        accept_new_host_key: bool,
    ) -> kubeadm::control_plane::ControlPlaneOptions {
        kubeadm::control_plane::ControlPlaneOptions {
            kubeconfig: self.kubeconfig.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: self.etcd_tls(),
            snapshot_dir: self.snapshot_dir.clone(),
            accept_new_host_key,
            known_hosts: self.ssh_known_hosts.clone(),
            identity_file: self.ssh_identity.clone(),
            boot_wait: self.boot_wait,
            ..Default::default()
        }
    }
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan written by `hacli plan -o json`.
    pub plan: PathBuf,
    /// The journal file (JSON lines, appended and synced before each action).
    #[arg(long)]
    pub journal: PathBuf,
    /// Observe and report what would be applied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue a run whose journal already has entries.
    #[arg(long)]
    pub resume: bool,
    /// Confirm a manual step as done (repeatable).
    #[arg(long, value_name = "STEP")]
    pub confirm: Vec<String>,
    /// Backends: `simulated` (a rehearsal) or `live` (the real systems).
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// How the live backends reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How the live backend reaches Proxmox.
    #[command(flatten)]
    pub proxmox: super::hypervisor::ProxmoxArgs,
    /// Carry the load-balancer steps out on the real load balancer (the
    /// plan's target topology, `loadBalancer.manage`), while the other
    /// systems stay simulated; the simulation mirrors each real change so
    /// its gates see it.
    /// (Only with `--backend simulated`; `--backend live` always uses the
    /// real load balancer.)
    #[arg(long, value_enum)]
    pub lb: Option<LbBackendKind>,
    /// Record the SSH host key of a load balancer or node seen for the
    /// first time (said loudly), instead of refusing it.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Output format of the outcome.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub measure: super::measure::MeasureArgs,
}

/// Where the load-balancer steps go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LbBackendKind {
    /// The simulation.
    Simulated,
    /// The real load balancer (`loadBalancer.manage` in the plan's target).
    Live,
}

/// The real load balancer, with the simulation following each change.
struct Mirrored<'a> {
    live: &'a mut pfsense::lb::LbBackend,
    sim: hacore::simulated::SimHandle,
}

impl LoadBalancer for Mirrored<'_> {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        self.live.is_done(op)
    }
    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        self.live.apply(op)?;
        if !self.sim.is_done(op)? {
            self.sim.apply(op)?;
        }
        Ok(())
    }
}

fn live_lb(
    plan: &hacore::plan::Plan,
    accept_new_host_key: bool,
) -> anyhow::Result<pfsense::lb::LbBackend> {
    let lb_opts = pfsense::lb::LbOptions {
        accept_new_host_key,
        ..Default::default()
    };
    pfsense::lb::LbBackend::from_topology(&plan.to, &lb_opts)
        .context("the plan's target topology: loadBalancer")
}

/// The run's owner mark: the plan's cluster, the journal (absolute), the
/// clones a killed run of this journal left unmarked.
pub(crate) fn owner(
    plan: &hacore::plan::Plan,
    journal: &Path,
    records: &[exec::Record],
) -> proxmox::Owner {
    let path = std::path::absolute(journal).unwrap_or_else(|_| journal.to_path_buf());
    proxmox::Owner::for_run(plan, &path.display().to_string(), records)
}

fn touches_vms(plan: &hacore::plan::Plan) -> bool {
    plan.steps().any(|(_, s)| {
        matches!(s.op, hacore::backend::Op::Hypervisor(_))
            || matches!(s.rollback, Some(hacore::backend::Op::Hypervisor(_)))
    })
}

/// Why the live run must not start, from the Proxmox cluster as it is now
/// (VM ids, VMs to delete, template, hosts, capacity, addresses:
/// [`proxmox::inventory::plan_refusals`]), whatever the plan was made
/// from. Empty: nothing stands in the way, or the plan has no VM step.
/// An inventory that cannot be read is an error (unknown, never safe).
pub(crate) fn proxmox_refusals(
    plan: &hacore::plan::Plan,
    args: &super::hypervisor::ProxmoxArgs,
    owner: &proxmox::Owner,
) -> anyhow::Result<Vec<String>> {
    if !touches_vms(plan) || !args.wanted_for(Some(&plan.to)) {
        return Ok(Vec::new());
    }
    let client = args.client_for(Some(&plan.to))?;
    let rt = crate::args::runtime()?;
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            proxmox::inventory::plan_refusals(&client, plan, owner),
        )
        .await
    })
    .map_err(|_| anyhow::anyhow!("{}: no inventory within 30 s", client.base()))?
    .with_context(|| format!("reading the Proxmox inventory from {}", client.base()))
}

/// The hypervisor backend, or one that refuses every operation when the
/// plan has none to do (no Proxmox configured and no VM to create).
pub(crate) fn live_hypervisor(
    plan: &hacore::plan::Plan,
    args: &super::hypervisor::ProxmoxArgs,
    owner: proxmox::Owner,
) -> anyhow::Result<Box<dyn hacore::backend::Hypervisor>> {
    let needs = plan
        .steps()
        .any(|(_, s)| matches!(s.op, hacore::backend::Op::Hypervisor(_)));
    if !args.wanted_for(Some(&plan.to)) {
        if needs {
            anyhow::bail!(
                "the plan creates or snapshots VMs, but no Proxmox API is configured: add `proxmox: {{endpoint: ...}}` to the target topology, or pass --proxmox URL (token: PROXMOX_VE_API_TOKEN or --proxmox-token-env)"
            );
        }
        return Ok(Box::new(NoHypervisor));
    }
    let client = args.client_for(Some(&plan.to))?;
    let mut hv = proxmox::ProxmoxHypervisor::new(client)?;
    hv.owner = owner;
    Ok(Box::new(hv))
}

/// No hypervisor is configured: a plan without VM steps never calls it.
struct NoHypervisor;

impl hacore::backend::Hypervisor for NoHypervisor {
    fn is_done(&mut self, op: &hacore::backend::HvOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!(
            "{op:?}: no Proxmox API is configured"
        )))
    }
    fn apply(&mut self, op: &hacore::backend::HvOp) -> Result<(), BackendError> {
        self.is_done(op).map(|_| ())
    }
}

fn sim_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".sim.json");
    PathBuf::from(p)
}

/// Run. Exit 0 completed (or dry run), 1 blocked, awaiting confirmation or
/// rolled back, 2 bad input or journal error.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let plan = super::simulate::read_plan(&a.plan)?;
    let mut journal = FileJournal::open(&a.journal)?;
    if !journal.records().is_empty() && !a.resume && !a.dry_run {
        anyhow::bail!(
            "{} already records a run: pass --resume to continue it, or use a new journal",
            a.journal.display()
        );
    }
    let step_ids: BTreeSet<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    for c in &a.confirm {
        if !step_ids.contains(c.as_str()) {
            anyhow::bail!("--confirm {c}: no such step in the plan");
        }
    }
    let opts = exec::Options {
        dry_run: a.dry_run,
        confirm: a.confirm.iter().cloned().collect(),
    };

    let bar = ProgressBar::new(plan.steps().count() as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos:>3}/{len} [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // The bar draws only on a terminal; in a pipeline's log every event is
    // a line on stderr.
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut measure = super::measure::start(&a.measure, &plan)?;
    let mut on_event = |e: Event| {
        if let Some(m) = measure.as_mut() {
            super::measure::on_event(m, &plan, &e);
        }
        match e {
            Event::Step { index, id, .. } => {
                bar.set_position(index as u64);
                bar.set_message(id);
            }
            Event::Skipped { id, why } => say(format!("skip {id}: {why}")),
            Event::WouldApply { id } => say(format!("would apply {id}")),
            Event::Done { id } => say(format!("done {id}")),
            Event::CertificateKey => say("uploaded a fresh certificate key".into()),
            Event::Failed { id, error } => say(format!("FAILED {id}: {error}")),
            Event::RollingBack { id } => say(format!("rolling back {id}")),
        }
    };
    let result = match a.backend {
        Backend::Simulated => {
            let sim_file = sim_path(&a.journal);
            let sim = match std::fs::read_to_string(&sim_file) {
                Ok(text) => serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a simulated cluster", sim_file.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    SimulatedCluster::new(&plan.from, &plan.to, jiff::Timestamp::now())
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot read", sim_file.display()));
                }
            };
            let sim = sim.shared();
            let result = match a.lb.unwrap_or(LbBackendKind::Simulated) {
                LbBackendKind::Simulated => with_backends(&sim, |b| {
                    exec::run(&plan, b, &mut journal, &opts, &mut on_event)
                }),
                LbBackendKind::Live => {
                    let mut live = live_lb(&plan, a.accept_new_host_key)?;
                    say(format!("load balancer: {}", live.describe()));
                    let mut lb = Mirrored {
                        live: &mut live,
                        sim: SimHandle(sim.clone()),
                    };
                    let (mut hv, mut cp, mut ob, clock) = (
                        SimHandle(sim.clone()),
                        SimHandle(sim.clone()),
                        SimHandle(sim.clone()),
                        SimHandle(sim.clone()),
                    );
                    let mut b = hacore::backend::Backends {
                        hypervisor: &mut hv,
                        load_balancer: &mut lb,
                        control_plane: &mut cp,
                        observer: &mut ob,
                        clock: &clock,
                    };
                    exec::run(&plan, &mut b, &mut journal, &opts, &mut on_event)
                }
            };
            if !a.dry_run {
                std::fs::write(&sim_file, serde_json::to_string_pretty(&*sim.borrow())?)
                    .with_context(|| format!("{}: cannot write", sim_file.display()))?;
            }
            result
        }
        Backend::Live => {
            if a.lb == Some(LbBackendKind::Simulated) {
                anyhow::bail!(
                    "--lb simulated: with --backend live every system is real; use --backend simulated for a rehearsal"
                );
            }
            // Before the first step: the plan against the Proxmox cluster
            // as it is now, whatever the plan was made from.
            let owner = owner(&plan, &a.journal, journal.records());
            let refusals = match proxmox_refusals(&plan, &a.proxmox, &owner) {
                Ok(r) => r,
                Err(e) => {
                    bar.finish_and_clear();
                    eprintln!("hacli apply: {e:#}");
                    return Ok(Exit::Unknown);
                }
            };
            if !refusals.is_empty() {
                let (status, _, _) = exec::replay(journal.records());
                let step = plan
                    .steps()
                    .map(|(_, s)| &s.id)
                    .find(|id| status.get(*id) != Some(&exec::StepStatus::Done))
                    .cloned()
                    .unwrap_or_default();
                Ok(Outcome::Blocked {
                    step,
                    reasons: refusals
                        .into_iter()
                        .map(|r| format!("the Proxmox cluster as it is now: {r}"))
                        .collect(),
                })
            } else {
                let mut hv = live_hypervisor(&plan, &a.proxmox, owner)?;
                let mut lb = live_lb(&plan, a.accept_new_host_key)?;
                say(format!("load balancer: {}", lb.describe()));
                let mut cp = kubeadm::control_plane::KubeadmControlPlane::from_topology(
                    &plan.to,
                    &a.cluster.control_plane(a.accept_new_host_key),
                )
                .context("the control plane (kubeconfig, etcd certificates, ssh:)")?;
                let mut ob = kubeadm::LiveObserver::new(a.cluster.observer())
                    .context("starting the observer's runtime")?;
                let clock = kubeadm::SystemClock;
                let mut b = hacore::backend::Backends {
                    hypervisor: &mut *hv,
                    load_balancer: &mut lb,
                    control_plane: &mut cp,
                    observer: &mut ob,
                    clock: &clock,
                };
                exec::run(&plan, &mut b, &mut journal, &opts, &mut on_event)
            }
        }
    };
    bar.finish_and_clear();
    let measured = match measure.take() {
        Some(m) => Some(super::measure::finish(&a.measure, m)?),
        None => None,
    };
    let outcome = result?;
    match a.output {
        Output::Json => crate::print_json(&outcome)?,
        Output::Text => match &outcome {
            Outcome::Completed => outln!("completed: every step is done"),
            Outcome::DryRun { would_apply } => outln!(
                "dry run: {} step(s) would be applied: {}",
                would_apply.len(),
                would_apply.join(", ")
            ),
            Outcome::Blocked { step, reasons } => {
                outln!("BLOCKED before {step}:\n  {}", reasons.join("\n  "))
            }
            Outcome::AwaitingConfirmation { step, instruction } => {
                outln!(
                    "WAITING for a person: {instruction}\nthen: hacli apply ... --resume --confirm {step}"
                )
            }
            Outcome::RolledBack { phase, step, error } => outln!(
                "FAILED at {step}: {error}\nphase {phase} was rolled back; fix the cause and resume"
            ),
        },
    }
    if let Some((_, table)) = &measured {
        match a.output {
            Output::Text => out!("{table}"),
            Output::Json => eprint!("{table}"),
        }
    }
    Ok(match outcome {
        Outcome::Completed | Outcome::DryRun { .. } => Exit::Ok,
        _ => Exit::Deny,
    })
}
