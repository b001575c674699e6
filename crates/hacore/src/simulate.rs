//! The simulator: for every step of a plan and every set of up to `k`
//! simultaneous failures (a master, an etcd member, a load balancer backend,
//! a whole hypervisor host), does etcd keep quorum and does the API stay
//! reachable for its clients?
//!
//! A *risk window* is a run of steps during which some failure set breaks the
//! control plane that the finished cluster would survive. The report names
//! its cause and the step that closes it. A step that breaks the control
//! plane with no failure at all is critical.

use std::fmt::Write as _;

use serde::Serialize;

use crate::backend::{CpOp, LbOp, Op};
use crate::plan::{Plan, Step};
use crate::quorum::quorum;

/// One thing that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Node(usize),
    Member(usize),
    Backend(usize),
    Host(usize),
}

/// A failure set as masks over master indexes.
#[derive(Debug, Clone, Copy, Default)]
struct Failed {
    node: u64,
    member: u64,
    backend: u64,
}

/// The control plane's configuration at a point of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Model {
    voters: u64,
    learners: u64,
    unstarted: u64,
    pool: u64,
    frontend: bool,
    direct: Option<usize>,
    vip: bool,
    down: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    quorum: bool,
    api: bool,
}

impl Model {
    fn eval(&self, f: &Failed) -> Outcome {
        let dead = f.node | f.member;
        let total = (self.voters | self.unstarted).count_ones() as usize;
        let healthy = (self.voters & !dead).count_ones() as usize;
        let quorum_ok = total > 0 && healthy >= quorum(total);
        let serving = |i: usize| {
            let b = 1u64 << i;
            quorum_ok && self.voters & b != 0 && dead & b == 0 && self.down & b == 0
        };
        let direct_ok = self.direct.is_none_or(serving);
        let vip_ok = !self.vip
            || (self.frontend
                && (0..64).any(|i| {
                    self.pool & (1 << i) != 0 && (f.backend | f.node) & (1 << i) == 0 && serving(i)
                }));
        Outcome {
            quorum: quorum_ok,
            api: direct_ok && vip_ok,
        }
    }

    fn broken(&self, f: &Failed) -> bool {
        let o = self.eval(f);
        !(o.quorum && o.api)
    }
}

/// The simulation report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The largest failure-set size considered.
    pub failures: usize,
    /// How many failure sets were tried per step.
    pub failure_sets: usize,
    /// Before the plan starts.
    pub before: StepRisk,
    /// Every step.
    pub steps: Vec<StepRisk>,
    /// After the last step.
    pub after: StepRisk,
    /// Runs of steps that are weaker than the finished cluster.
    pub windows: Vec<Window>,
    /// Steps that break the control plane with no failure at all, and whose
    /// plan step declares no outage.
    pub critical: Vec<String>,
    /// Steps that break the control plane with no failure, as their plan
    /// step says they will.
    pub planned_outages: Vec<String>,
    /// Steps whose plan step declares an outage only on a fallback path
    /// (the retrofit's apiserver restart, if the certificate is not
    /// reloaded in time). Not simulated: the normal path has none.
    pub conditional_outages: Vec<String>,
}

/// Risk at one step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRisk {
    /// Step id (`before` / `after` for the ends).
    pub step: String,
    /// etcd voters (started).
    pub voters: usize,
    /// etcd learners.
    pub learners: usize,
    /// Voters added but not started.
    pub unstarted: usize,
    /// Servers in the load balancer pool.
    pub pool: usize,
    /// Where clients connect.
    pub clients: String,
    /// Size of the smallest failure set that breaks the control plane, if
    /// any up to the limit does.
    pub min_breaking: Option<usize>,
    /// Smallest failure sets that break it (a few).
    pub examples: Vec<Breakage>,
    /// How many failure sets break it here that the finished cluster survives.
    pub new_risks: usize,
}

/// A failure set and what it breaks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breakage {
    /// What fails.
    pub failures: Vec<String>,
    /// etcd loses quorum.
    pub quorum_lost: bool,
    /// Clients cannot reach the API.
    pub api_unreachable: bool,
    /// Why, in words.
    pub cause: String,
}

/// A run of steps weaker than the finished cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// First step of the window.
    pub from_step: String,
    /// Last step of the window.
    pub to_step: String,
    /// Steps in the window.
    pub steps: usize,
    /// An example failure that breaks the control plane here but not at the end.
    pub example: Breakage,
    /// The step after the window, which closes it (none: the plan ends in it).
    pub closed_by: Option<String>,
    /// The starting cluster already had this weakness (the window only
    /// lasts until the plan removes it).
    pub inherited: bool,
}

struct Universe {
    masters: Vec<String>,
    hosts: Vec<String>,
    host_mask: Vec<u64>,
    elements: Vec<Element>,
}

impl Universe {
    fn name(&self, e: Element) -> String {
        match e {
            Element::Node(i) => format!("node {}", self.masters[i]),
            Element::Member(i) => format!("etcd member {}", self.masters[i]),
            Element::Backend(i) => format!("LB backend {}", self.masters[i]),
            Element::Host(h) => format!("hypervisor {}", self.hosts[h]),
        }
    }

    fn failed(&self, set: &[Element]) -> Failed {
        let mut f = Failed::default();
        for e in set {
            match *e {
                Element::Node(i) => f.node |= 1 << i,
                Element::Member(i) => f.member |= 1 << i,
                Element::Backend(i) => f.backend |= 1 << i,
                Element::Host(h) => f.node |= self.host_mask[h],
            }
        }
        f
    }
}

fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    fn rec(start: usize, n: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left == 0 {
            return;
        }
        for i in start..n {
            cur.push(i);
            out.push(cur.clone());
            rec(i + 1, n, left - 1, cur, out);
            cur.pop();
        }
    }
    rec(0, n, k, &mut Vec::new(), &mut out);
    out.sort_by_key(Vec::len);
    out
}

/// Simulate `plan` under every failure set of size up to `k`.
pub fn simulate(plan: &Plan, k: usize) -> Report {
    let u = Universe::of(plan);
    let sets = u.failure_sets(k);
    let before = starting_model(plan, &u);
    let (during, after_model) = models(plan, &u, before);
    let final_broken: Vec<bool> = sets.iter().map(|(_, f)| after_model.broken(f)).collect();
    let before_broken: Vec<bool> = sets.iter().map(|(_, f)| before.broken(f)).collect();
    let r = Risks {
        u: &u,
        sets: &sets,
        final_broken: &final_broken,
        before_broken: &before_broken,
    };
    let (before_risk, _) = r.risk("before", &before, false);
    let (after_risk, _) = r.risk("after", &after_model, false);
    let mut steps = Vec::new();
    let mut firsts = Vec::new();
    for (id, m) in &during {
        let (risk, first) = r.risk(id, m, true);
        steps.push(risk);
        firsts.push(first);
    }
    let declared: Vec<bool> = plan
        .steps()
        .map(|(_, s)| s.outage.as_ref().is_some_and(|o| o.is_declared()))
        .collect();
    let conditional_outages: Vec<String> = plan
        .steps()
        .filter(|(_, s)| s.outage.as_ref().is_some_and(|o| o.is_conditional()))
        .map(|(_, s)| s.id.clone())
        .collect();
    let mut critical = Vec::new();
    let mut planned_outages = Vec::new();
    for (i, st) in steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.min_breaking == Some(0))
    {
        if declared[i] {
            planned_outages.push(st.step.clone())
        } else {
            critical.push(st.step.clone())
        }
    }
    let windows = r.windows(&steps, &firsts, &during);
    Report {
        failures: k,
        failure_sets: sets.len(),
        before: before_risk,
        steps,
        after: after_risk,
        windows,
        critical,
        planned_outages,
        conditional_outages,
    }
}

impl Universe {
    /// The target topology's masters (at most 64), their hypervisor hosts,
    /// and every element that can fail.
    fn of(plan: &Plan) -> Universe {
        let masters: Vec<String> = plan
            .to
            .control_plane_nodes()
            .map(|n| n.name.clone())
            .take(64)
            .collect();
        let mut hosts: Vec<String> = Vec::new();
        let mut host_mask: Vec<u64> = Vec::new();
        for (i, m) in masters.iter().enumerate() {
            if let Some(h) = plan.to.node(m).and_then(|n| n.hypervisor.clone()) {
                let hi = match hosts.iter().position(|x| *x == h) {
                    Some(p) => p,
                    None => {
                        hosts.push(h);
                        host_mask.push(0);
                        hosts.len() - 1
                    }
                };
                host_mask[hi] |= 1 << i;
            }
        }
        let mut elements: Vec<Element> = Vec::new();
        for i in 0..masters.len() {
            elements.extend([Element::Node(i), Element::Member(i), Element::Backend(i)]);
        }
        elements.extend((0..hosts.len()).map(Element::Host));
        Universe {
            masters,
            hosts,
            host_mask,
            elements,
        }
    }

    fn idx(&self, name: &str) -> Option<usize> {
        self.masters.iter().position(|m| m == name)
    }

    fn mask_of<'a>(&self, names: impl Iterator<Item = &'a str>) -> u64 {
        names
            .filter_map(|n| self.idx(n))
            .fold(0u64, |m, i| m | 1 << i)
    }

    /// Every set of up to `k` elements, smallest first, with what fails.
    fn failure_sets(&self, k: usize) -> Vec<(Vec<Element>, Failed)> {
        combinations(self.elements.len(), k)
            .into_iter()
            .map(|c| {
                let set: Vec<Element> = c.iter().map(|&i| self.elements[i]).collect();
                let f = self.failed(&set);
                (set, f)
            })
            .collect()
    }

    /// Why `set` breaks the control plane of `m`, in words.
    fn describe(&self, m: &Model, set: &[Element], f: &Failed) -> Breakage {
        let masters = &self.masters;
        let o = m.eval(f);
        let mut causes = Vec::new();
        if !o.quorum {
            let total = (m.voters | m.unstarted).count_ones();
            if m.unstarted != 0 {
                causes.push(
                    "etcd counts a voter that has not started yet (join without learner mode)"
                        .to_string(),
                );
            } else if total == 2 {
                causes.push("etcd has exactly 2 voters: no failure is tolerated".to_string());
            } else if total == 1 {
                causes.push("etcd has a single voter".to_string());
            } else {
                causes.push(format!("etcd loses quorum ({total} voters)"));
            }
        }
        if !o.api && o.quorum {
            if m.down & !(f.node | f.member) != 0 {
                let names: Vec<&str> = (0..masters.len())
                    .filter(|i| m.down & (1 << i) != 0)
                    .map(|i| masters[i].as_str())
                    .collect();
                causes.push(format!(
                    "the apiserver of {} is restarting",
                    names.join(", ")
                ));
            } else if let Some(d) = m.direct {
                causes.push(format!("clients still connect straight to {}", masters[d]));
            } else if m.pool.count_ones() <= 1 {
                causes.push("the load balancer pool has a single usable backend".to_string());
            } else {
                causes.push("no load balancer backend is left serving".to_string());
            }
        }
        if set.iter().any(|e| matches!(e, Element::Host(_))) {
            causes.push("a hypervisor host carries several masters".to_string());
        }
        Breakage {
            failures: set.iter().map(|e| self.name(*e)).collect(),
            quorum_lost: !o.quorum,
            api_unreachable: !o.api,
            cause: if causes.is_empty() {
                "control plane unavailable".into()
            } else {
                causes.join("; ")
            },
        }
    }

    /// Where clients of `m` connect.
    fn clients(&self, m: &Model) -> String {
        match (m.direct, m.vip) {
            (Some(d), true) => format!("{} and the VIP", self.masters[d]),
            (Some(d), false) => self.masters[d].clone(),
            (None, true) => "the VIP".to_string(),
            (None, false) => "nothing".to_string(),
        }
    }
}

/// The starting cluster, as a model.
fn starting_model(plan: &Plan, u: &Universe) -> Model {
    let from_masters = u.mask_of(plan.from.control_plane_nodes().map(|n| n.name.as_str()));
    let from_lb = plan.from.has_load_balancer();
    Model {
        voters: from_masters,
        learners: 0,
        unstarted: 0,
        pool: if from_lb { from_masters } else { 0 },
        frontend: from_lb,
        direct: if from_lb {
            None
        } else {
            plan.from
                .nodes
                .iter()
                .find(|n| n.address == plan.from.control_plane_endpoint.address)
                .and_then(|n| u.idx(&n.name))
        },
        vip: from_lb,
        down: 0,
    }
}

/// The model during each step (by step id), and after the last.
fn models(plan: &Plan, u: &Universe, start: Model) -> (Vec<(String, Model)>, Model) {
    let last_cutover = plan
        .steps()
        .filter(|(p, _)| p.id == "cutover")
        .map(|(_, s)| s.id.clone())
        .last();
    let mut model = start;
    let mut during: Vec<(String, Model)> = Vec::new();
    for (_, s) in plan.steps() {
        let (d, mut after) = step_effect(s, u, model, plan.learner_joins);
        if last_cutover.as_deref() == Some(s.id.as_str()) {
            after.direct = None;
            after.vip = true;
        }
        during.push((s.id.clone(), d));
        model = after;
    }
    (during, model)
}

/// The model during step `s`, and after it, from the model before it.
fn step_effect(s: &Step, u: &Universe, model: Model, learner: bool) -> (Model, Model) {
    let idx = |name: &str| u.idx(name);
    let mut d = model;
    let mut after = model;
    match &s.op {
        Op::ControlPlane(CpOp::RenewApiserverCert { node, .. }) => {
            // The apiserver reloads the new pair from disk: it stays up,
            // unless the plan says the restart is certain (a plan
            // written before the reload, with an unconditional outage).
            let restart_only_as_fallback = s.outage.as_ref().is_some_and(|o| o.only_if.is_some());
            if let Some(i) = idx(node)
                && !restart_only_as_fallback
            {
                d.down |= 1 << i;
            }
        }
        Op::LoadBalancer(LbOp::CreatePool { servers, .. }) => {
            after.pool = u.mask_of(servers.iter().map(|s| s.0.as_str()));
        }
        Op::LoadBalancer(LbOp::CreateFrontend { .. }) => after.frontend = true,
        Op::LoadBalancer(LbOp::AddServer { server, .. }) => {
            if let Some(i) = idx(server) {
                after.pool |= 1 << i;
            }
        }
        Op::ControlPlane(CpOp::JoinControlPlane { node, .. }) => {
            if let Some(i) = idx(node) {
                if learner {
                    d.learners |= 1 << i;
                    after.learners |= 1 << i;
                } else {
                    d.unstarted |= 1 << i;
                    after.voters |= 1 << i;
                }
            }
        }
        Op::ControlPlane(CpOp::MemberPromoted { node }) => {
            if let Some(i) = idx(node) {
                after.learners &= !(1 << i);
                after.voters |= 1 << i;
            }
        }
        Op::ControlPlane(CpOp::SetKubeletServer { .. }) => {
            d.vip = true;
            after.vip = true;
        }
        _ => {}
    }
    (d, after)
}

/// The failure sets, and which of them break the finished and the
/// starting cluster: what a step's risks are compared with.
struct Risks<'a> {
    u: &'a Universe,
    sets: &'a [(Vec<Element>, Failed)],
    final_broken: &'a [bool],
    before_broken: &'a [bool],
}

impl Risks<'_> {
    /// The risk of model `m` at step `id`; with `compare`, the failure sets
    /// that break it but not the finished cluster (new risks), and the
    /// index of the one to show.
    fn risk(&self, id: &str, m: &Model, compare: bool) -> (StepRisk, Option<usize>) {
        let mut min = None;
        let mut examples = Vec::new();
        let mut new_risks = 0;
        // The example of a new risk: preferably a failure the starting
        // cluster survived too (a risk the plan itself introduces).
        let mut first_new: Option<usize> = None;
        for (j, (set, f)) in self.sets.iter().enumerate() {
            if !m.broken(f) {
                continue;
            }
            if compare && !self.final_broken[j] {
                new_risks += 1;
                match first_new {
                    None => first_new = Some(j),
                    Some(p) if self.before_broken[p] && !self.before_broken[j] => {
                        first_new = Some(j)
                    }
                    _ => {}
                }
            }
            match min {
                None => {
                    min = Some(set.len());
                    examples.push(self.u.describe(m, set, f));
                }
                Some(s) if s == set.len() && examples.len() < 3 => {
                    examples.push(self.u.describe(m, set, f))
                }
                _ => {}
            }
        }
        (
            StepRisk {
                step: id.to_string(),
                voters: m.voters.count_ones() as usize,
                learners: m.learners.count_ones() as usize,
                unstarted: m.unstarted.count_ones() as usize,
                pool: m.pool.count_ones() as usize,
                clients: self.u.clients(m),
                min_breaking: min,
                examples,
                new_risks,
            },
            first_new,
        )
    }

    /// Windows: maximal runs of steps with new risks and the same cause.
    fn windows(
        &self,
        steps: &[StepRisk],
        firsts: &[Option<usize>],
        during: &[(String, Model)],
    ) -> Vec<Window> {
        let sets = self.sets;
        let causes: Vec<Option<(usize, Breakage)>> = firsts
            .iter()
            .zip(during)
            .map(|(first, (_, m))| first.map(|j| (j, self.u.describe(m, &sets[j].0, &sets[j].1))))
            .collect();
        let mut windows = Vec::new();
        let mut i = 0;
        while i < steps.len() {
            let Some((j, example)) = causes[i].clone() else {
                i += 1;
                continue;
            };
            let start = i;
            while i < steps.len()
                && causes[i]
                    .as_ref()
                    .is_some_and(|(_, c)| c.cause == example.cause)
            {
                i += 1;
            }
            let inherited = self.before_broken[j];
            windows.push(Window {
                from_step: steps[start].step.clone(),
                to_step: steps[i - 1].step.clone(),
                steps: i - start,
                example,
                inherited,
                closed_by: steps.get(i).map(|s| s.step.clone()),
            });
        }
        windows
    }
}

impl Report {
    /// A summary for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulated every set of up to {} failure(s) ({} sets) at each of {} steps",
            self.failures,
            self.failure_sets,
            self.steps.len()
        );
        let line = |r: &StepRisk| match (r.min_breaking, r.examples.first()) {
            (Some(0), Some(e)) => format!("broken with no failure: {}", e.cause),
            (Some(n), Some(e)) => format!(
                "{n} failure(s) break it, e.g. {} ({})",
                e.failures.join(" + "),
                e.cause
            ),
            _ => format!("survives every set of up to {} failure(s)", self.failures),
        };
        let _ = writeln!(s, "before: {}", line(&self.before));
        let _ = writeln!(s, "after:  {}", line(&self.after));
        if !self.planned_outages.is_empty() {
            let _ = writeln!(
                s,
                "planned outage (declared in the plan): {}",
                self.planned_outages.join(", ")
            );
        }
        if !self.conditional_outages.is_empty() {
            let _ = writeln!(
                s,
                "conditional outage (declared in the plan, only if a fallback is taken): {}",
                self.conditional_outages.join(", ")
            );
        }
        if self.critical.is_empty() {
            let _ = writeln!(s, "no step breaks the control plane without a failure");
        } else {
            let _ = writeln!(
                s,
                "CRITICAL: broken with no failure at all during {}",
                self.critical.join(", ")
            );
        }
        if self.windows.is_empty() {
            let _ = writeln!(
                s,
                "no risk window: no step is weaker than the finished cluster"
            );
        }
        for w in &self.windows {
            let _ = writeln!(
                s,
                "{} {} .. {} ({} step(s)): {} breaks it ({}); closed by {}",
                if w.example.failures.is_empty() && self.planned_outages.contains(&w.from_step) {
                    "planned outage"
                } else if w.inherited {
                    "inherited weakness"
                } else {
                    "RISK WINDOW"
                },
                w.from_step,
                w.to_step,
                w.steps,
                if w.example.failures.is_empty() {
                    "no failure at all".to_string()
                } else {
                    w.example.failures.join(" + ")
                },
                w.example.cause,
                w.closed_by
                    .as_deref()
                    .unwrap_or("nothing: the plan ends inside it")
            );
        }
        s
    }
}
