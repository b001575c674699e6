//! The decisions made from files, shared by the commands that make them
//! (`check`, `simulate`) and the Woodpecker plugin: no command imports
//! another.

use std::path::Path;

use anyhow::Context as _;
use hacore::gate::{Request, evaluate};
use hacore::plan::{Options, Plan, Refusal};
use hacore::simulate::Report;
use hacore::{Action, ClusterState, Policy, Topology, Verdict};

/// Load topology and state, printing their warnings.
pub fn load(topology: &Path, state: &Path) -> anyhow::Result<(Topology, ClusterState)> {
    let (topo, warnings) = Topology::load(topology)?;
    crate::print_warnings(&warnings.warnings);
    let (state, warnings) = ClusterState::load(state, &topo)?;
    crate::print_warnings(&warnings);
    Ok((topo, state))
}

/// Parse `--at`: RFC 3339, or `now`.
pub fn parse_at(at: Option<&str>) -> anyhow::Result<Option<jiff::Timestamp>> {
    match at {
        None => Ok(None),
        Some("now") => Ok(Some(jiff::Timestamp::now())),
        Some(s) => s.parse().map(Some).with_context(|| {
            format!("--at `{s}`: expected an RFC 3339 time such as 2026-05-21T12:00:00Z, or `now`")
        }),
    }
}

/// A built-in policy name or a policy file; the action's built-in when
/// none is given.
pub fn policy(spec: Option<&str>, action: Action) -> anyhow::Result<Policy> {
    Ok(match spec {
        Some(p) => Policy::named_or_file(p)?,
        None => Policy::for_action(action),
    })
}

/// What `hacli check` is asked.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The action, as given.
    pub action: &'a str,
    /// The node or hypervisor host.
    pub target: &'a str,
    /// The topology file.
    pub topology: &'a Path,
    /// The observed state file.
    pub state: &'a Path,
    /// The policy, as given.
    pub policy: Option<&'a str>,
    /// `--at`, as given.
    pub at: Option<&'a str>,
    /// Who asks.
    pub requester: Option<&'a str>,
}

/// The verdict on a saved state, as of `at` (now by default).
pub fn check(c: &Check<'_>) -> anyhow::Result<Verdict> {
    let action: Action = c.action.parse()?;
    let (topology, state) = load(c.topology, c.state)?;
    let policy = policy(c.policy, action)?;
    let now = parse_at(c.at)?.unwrap_or_else(jiff::Timestamp::now);
    let request = Request {
        action,
        target: c.target,
        requester: c.requester,
    };
    Ok(evaluate(&topology, &state, &policy, &request, now)?)
}

/// Read a plan file (`hacli plan -o json`).
pub fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not a plan: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Every step of the plan in `path` under every failure set up to
/// `failures` (at most 3).
pub fn simulate(path: &Path, failures: usize) -> anyhow::Result<Report> {
    if failures > 3 {
        anyhow::bail!("--failures {failures}: at most 3 simultaneous failures are simulated");
    }
    Ok(hacore::simulate::simulate(&read_plan(path)?, failures))
}

/// The offline plan from topology `from` to `to` (with an observed
/// `state`, if given): the planner alone, no live inventory.
pub fn plan(
    from: &Path,
    to: &Path,
    state: Option<&Path>,
    template: Option<u32>,
) -> anyhow::Result<Result<Plan, Refusal>> {
    let (from, w1) = Topology::load(from)?;
    let (to, w2) = Topology::load(to)?;
    crate::print_warnings(&w1.warnings);
    crate::print_warnings(&w2.warnings);
    let state = match state {
        Some(p) => Some(ClusterState::load(p, &from)?.0),
        None => None,
    };
    Ok(hacore::plan::plan(
        &from,
        &to,
        state.as_ref(),
        &Options { template },
    ))
}
