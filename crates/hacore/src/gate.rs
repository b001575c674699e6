//! Gate policies: which rules run, with which thresholds, and the evaluation
//! that turns topology + state + request + time into a [`Verdict`].

use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use crate::action::Action;
use crate::error::Error;
use crate::rules::{self, Context, NoParams};
use crate::source;
use crate::state::ClusterState;
use crate::topology::{Hypervisor, Node, Topology};
use crate::verdict::{Decision, Finding, Verdict};

/// A named set of rules with their parameters.
///
/// In a file, `extends` starts from a built-in policy; `rules` then adds or
/// overrides rules (a rule written with no parameters, `etcd-quorum:` or
/// `etcd-quorum: {}`, is enabled with its defaults) and `disable` drops rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Policy name, shown in verdicts (required: a file without one is an
    /// error, listed with any other in the file).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A built-in policy to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// The rules.
    #[serde(default)]
    pub rules: RuleSet,
    /// Rule ids to drop from the extended policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// The Alertmanager silences a disruption under this policy creates
    /// for the alerts it causes itself (used when an Alertmanager is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<crate::silence::SilenceSpec>,
}

/// Deserialize an optional rule section so that a bare key (YAML null)
/// enables the rule with default parameters instead of disabling it.
fn enabled<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

macro_rules! rule_set {
    ($( $field:ident : $params:ty => $module:ident ),* $(,)?) => {
        /// Every rule, each enabled with its parameters or absent. Rules run
        /// in this order.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct RuleSet {
            $(
                #[doc = concat!("Rule `", stringify!($module), "`.")]
                #[serde(default, deserialize_with = "enabled", skip_serializing_if = "Option::is_none")]
                pub $field: Option<$params>,
            )*
        }

        impl RuleSet {
            /// Run every enabled rule.
            pub fn run(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
                $( if let Some(p) = &self.$field { rules::$module::check(ctx, p, out); } )*
            }

            /// Ids of the enabled rules, in order.
            pub fn ids(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.$field.is_some() { v.push(rules::$module::ID); } )*
                v
            }

            /// Every rule id there is.
            pub const ALL_IDS: &'static [&'static str] = &[$( rules::$module::ID ),*];

            /// Take every rule `other` enables, with its parameters.
            pub fn overlay(&mut self, other: &RuleSet) {
                $( if other.$field.is_some() { self.$field = other.$field.clone(); } )*
            }

            /// Disable a rule by id; false if there is no such rule.
            pub fn disable(&mut self, id: &str) -> bool {
                $( if rules::$module::ID == id { self.$field = None; return true; } )*
                false
            }
        }
    };
}

rule_set! {
    state_fresh: rules::state_fresh::Params => state_fresh,
    kill_switch: NoParams => kill_switch,
    lock: NoParams => lock,
    reboot_window: rules::reboot_window::Params => reboot_window,
    single_master: NoParams => single_master,
    alerts: rules::alerts::Params => alerts,
    soak: rules::soak::Params => soak,
    nodes_ready: rules::nodes_ready::Params => nodes_ready,
    node_drift: rules::node_drift::Params => node_drift,
    daemonsets: rules::daemonsets::Params => daemonsets,
    etcd_quorum: NoParams => etcd_quorum,
    etcd_two_voters: NoParams => etcd_two_voters,
    etcd_odd_size: NoParams => etcd_odd_size,
    etcd_leader: NoParams => etcd_leader,
    etcd_learner: rules::etcd_learner::Params => etcd_learner,
    etcd_alarms: NoParams => etcd_alarms,
    etcd_backup: rules::etcd_backup::Params => etcd_backup,
    control_plane_ready: rules::control_plane_ready::Params => control_plane_ready,
    apiserver_ready: rules::apiserver_ready::Params => apiserver_ready,
    load_balancer: rules::load_balancer::Params => load_balancer,
    hypervisor_host: NoParams => hypervisor_host,
    pdb: NoParams => pdb,
    control_plane_drift: rules::control_plane_drift::Params => control_plane_drift,
    master_disk: rules::master_disk::Params => master_disk,
    etcd_latency: rules::etcd_latency::Params => etcd_latency,
}

/// Names of the built-in policies.
/// `preflight` and `join` are the ones a migration plan's steps cite.
pub const BUILTINS: [&str; 8] = [
    "reboot",
    "upgrade",
    "drain",
    "shutdown",
    "remove-member",
    "join",
    "single-master",
    "preflight",
];

impl Policy {
    /// A built-in policy by name.
    ///
    /// Every built-in policy runs `state-fresh`, `kill-switch` (the
    /// kill-switch ConfigMap halts every disruption, whatever the policy)
    /// and, except `preflight`, `lock`.
    ///
    /// - `reboot`: what the home-lab's kured sentinel gate checks (all nodes
    ///   Ready, calico-node running, 24h soak) plus quorum: etcd, masters
    ///   Ready (>= 2), apiservers, load balancer, leader, joins, PDBs, lock;
    ///   and critical alerts when an alert source is observed (kured blocks
    ///   on firing alerts when it is given Prometheus): a Prometheus that
    ///   does not answer is unknown, no Prometheus at all is a warning.
    /// - `upgrade`: the upgrade chain's preflight (critical alerts, which
    ///   must be observed, 600s quiet baseline) plus the same quorum rules.
    /// - `drain`: PDBs, nodes Ready.
    /// - `shutdown`: like reboot with a 600s soak.
    /// - `remove-member`: quorum after removal, no join in progress, leader moved.
    /// - `join`: quorum after the join, one join at a time, odd size advice.
    /// - `single-master`: a cluster with one master, whose outage is stated
    ///   and accepted (`single-master` rule: a warning naming the outage, a
    ///   denial on a cluster with more masters): only in the reboot window
    ///   (01:00-05:00 UTC by default), with a verified etcd snapshot under
    ///   24h old (deny), every node Ready, PDBs, etcd alarms, the lock,
    ///   alerts when Prometheus is given.
    /// - `preflight`: before a migration step: nodes Ready, etcd quorum now,
    ///   no join in progress, no alarm.
    ///
    /// Every policy with `nodes-ready` also runs `node-drift` (a warning
    /// naming a node the cluster reports that the topology does not list).
    pub fn builtin(name: &str) -> Option<Policy> {
        // Every built-in policy: a fresh state, and the kill switch halts
        // everything (a test walks every built-in policy for it).
        let mut r = RuleSet {
            state_fresh: Some(Default::default()),
            kill_switch: Some(NoParams {}),
            lock: Some(NoParams {}),
            ..Default::default()
        };
        let description = match name {
            "reboot" => reboot_rules(&mut r),
            "upgrade" => upgrade_rules(&mut r),
            "drain" => drain_rules(&mut r),
            "shutdown" => shutdown_rules(&mut r),
            "remove-member" => remove_member_rules(&mut r),
            "join" => join_rules(&mut r),
            "single-master" => single_master_rules(&mut r),
            "preflight" => preflight_rules(&mut r),
            _ => return None,
        };
        // Wherever nodes count, a node the topology does not list is named.
        if r.nodes_ready.is_some() {
            r.node_drift = Some(Default::default());
        }
        Some(Policy {
            name: name.to_string(),
            description: Some(description.to_string()),
            extends: None,
            rules: r,
            disable: Vec::new(),
            silence: None,
        })
    }

    /// The built-in policy for an action.
    pub fn for_action(action: Action) -> Policy {
        Policy::builtin(action.name()).expect("every action has a built-in policy")
    }

    /// Parse a policy document, resolving `extends` and `disable`.
    pub fn from_yaml(name: &str, text: &str) -> Result<Policy, Error> {
        let policy: Policy = source::parse(name, text)?;
        policy.resolve(name, text)
    }

    /// Load a policy file.
    pub fn load(path: &Path) -> Result<Policy, Error> {
        let (policy, text): (Policy, String) = source::read(path)?;
        policy.resolve(&path.display().to_string(), &text)
    }

    /// A built-in name, or else a file path.
    pub fn named_or_file(spec: &str) -> Result<Policy, Error> {
        if let Some(p) = Policy::builtin(spec) {
            return Ok(p);
        }
        let path = Path::new(spec);
        if path.exists() {
            return Policy::load(path);
        }
        let looks_like_a_path = spec.contains('/')
            || [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| spec.ends_with(ext));
        if looks_like_a_path {
            return Err(Error::PolicyFileMissing(
                spec.to_string(),
                BUILTINS.join(", "),
            ));
        }
        Err(Error::UnknownPolicy(spec.to_string(), BUILTINS.join(", ")))
    }

    fn resolve(self, file: &str, text: &str) -> Result<Policy, Error> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(source::Diagnostic::error(
                "name",
                "missing: every policy needs a name, shown in its verdicts",
            ));
        }
        let mut rules = match &self.extends {
            None => RuleSet::default(),
            Some(base) => match Policy::builtin(base) {
                Some(p) => p.rules,
                None => {
                    errors.push(source::Diagnostic::error(
                        "extends",
                        format!(
                            "unknown built-in policy `{base}` (known: {})",
                            BUILTINS.join(", ")
                        ),
                    ));
                    RuleSet::default()
                }
            },
        };
        rules.overlay(&self.rules);
        for (i, id) in self.disable.iter().enumerate() {
            if !rules.disable(id) {
                errors.push(source::Diagnostic::error(
                    format!("disable[{i}]"),
                    format!(
                        "unknown rule `{id}` (known: {})",
                        RuleSet::ALL_IDS.join(", ")
                    ),
                ));
            }
        }
        // (A policy whose `extends` is unknown enables nothing: that error
        // says why, once.)
        if rules.ids().is_empty() && errors.iter().all(|e| e.path != "extends") {
            errors.push(source::Diagnostic::error(
                "rules",
                "the policy enables no rule",
            ));
        }
        if let Some(s) = &self.silence {
            errors.extend(s.check(rules.alerts.as_ref()));
        }
        if !errors.is_empty() {
            for e in &mut errors {
                e.locate_in(file, text);
            }
            return Err(Error::Invalid {
                file: file.to_string(),
                errors,
            });
        }
        Ok(Policy {
            rules,
            disable: Vec::new(),
            ..self
        })
    }
}

/// What is asked: an action on a target, by someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The action.
    pub action: Action,
    /// A node name or a hypervisor host name.
    pub target: &'a str,
    /// Identity of the caller, for the disruption lock.
    pub requester: Option<&'a str>,
}

/// The nodes a target stands for: the node itself, or every node on a host.
pub fn resolve_target<'a>(
    topology: &'a Topology,
    target: &str,
) -> Result<(Vec<&'a Node>, Option<&'a Hypervisor>), Error> {
    if let Some(n) = topology.node(target) {
        return Ok((vec![n], None));
    }
    if let Some(h) = topology.hypervisor(target) {
        let nodes = topology
            .nodes
            .iter()
            .filter(|n| n.hypervisor.as_deref() == Some(h.name.as_str()))
            .collect();
        return Ok((nodes, Some(h)));
    }
    let known: Vec<&str> = topology
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(topology.hypervisors.iter().map(|h| h.name.as_str()))
        .collect();
    Err(Error::UnknownTarget {
        target: target.to_string(),
        known: known.join(", "),
    })
}

/// Evaluate a request under a policy at time `now`. Pure: no I/O, no clock.
pub fn evaluate(
    topology: &Topology,
    state: &ClusterState,
    policy: &Policy,
    request: &Request<'_>,
    now: Timestamp,
) -> Result<Verdict, Error> {
    let (targets, host) = resolve_target(topology, request.target)?;
    let affected = targets.iter().map(|n| n.name.clone()).collect();
    let ctx = Context::new(
        topology,
        state,
        request.action,
        request.target,
        targets,
        host,
        now,
        request.requester,
    );
    let mut findings = Vec::with_capacity(24);
    policy.rules.run(&ctx, &mut findings);
    Ok(Verdict {
        decision: Decision::from_findings(&findings),
        action: request.action,
        target: request.target.to_string(),
        affected,
        policy: policy.name.clone(),
        at: now,
        observed_at: state.observed_at,
        findings,
    })
}

/// The control-plane quorum rules several built-in policies share.
fn quorum_rules(r: &mut RuleSet) {
    r.etcd_quorum = Some(NoParams {});
    r.etcd_two_voters = Some(NoParams {});
    r.etcd_leader = Some(NoParams {});
    r.etcd_learner = Some(Default::default());
    r.etcd_alarms = Some(NoParams {});
    r.control_plane_ready = Some(Default::default());
    r.apiserver_ready = Some(Default::default());
    r.load_balancer = Some(Default::default());
    r.hypervisor_host = Some(NoParams {});
}

/// The calico-node DaemonSet, which must be running.
fn calico() -> rules::daemonsets::Params {
    rules::daemonsets::Params {
        names: vec!["calico-node".into()],
    }
}

/// `reboot`: the kured sentinel gate plus control-plane quorum.
fn reboot_rules(r: &mut RuleSet) -> &'static str {
    quorum_rules(r);
    r.nodes_ready = Some(Default::default());
    r.daemonsets = Some(calico());
    r.soak = Some(rules::soak::Params {
        window: crate::units::Dur::hours(24),
    });
    r.pdb = Some(NoParams {});
    // kured blocks on firing alerts when it is given Prometheus,
    // and many of its users have none: a Prometheus that does
    // not answer is unknown, no Prometheus at all a warning.
    r.alerts = Some(rules::alerts::Params {
        required: false,
        ..Default::default()
    });
    // A slow etcd makes a master's reboot riskier: said, not blocking.
    r.etcd_latency = Some(rules::etcd_latency::Params::advisory());
    "kured sentinel gate (all nodes Ready, calico-node running, 24h soak, kill-switch, critical alerts when Prometheus is given) plus control-plane quorum"
}

/// `upgrade`: the upgrade chain's preflight plus control-plane quorum.
fn upgrade_rules(r: &mut RuleSet) -> &'static str {
    quorum_rules(r);
    r.alerts = Some(Default::default());
    r.soak = Some(Default::default());
    r.nodes_ready = Some(Default::default());
    r.pdb = Some(NoParams {});
    r.control_plane_drift = Some(Default::default());
    r.master_disk = Some(Default::default());
    r.etcd_latency = Some(Default::default());
    "upgrade-chain preflight (kill-switch, critical alerts, 600s quiet baseline) plus control-plane quorum, and what stalls a kubeadm upgrade (manifest drift kubeadm would revert, a master's disk without room, etcd too slow: WAL fsync p99 over 10ms, backend commit p99 over 25ms, slow applies or leader changes over 5s)"
}

/// `drain`: evictions only.
fn drain_rules(r: &mut RuleSet) -> &'static str {
    r.nodes_ready = Some(Default::default());
    r.pdb = Some(NoParams {});
    "evictions only: PodDisruptionBudgets, nodes Ready, kill-switch"
}

/// `shutdown`: like reboot with a 600s soak.
fn shutdown_rules(r: &mut RuleSet) -> &'static str {
    quorum_rules(r);
    r.nodes_ready = Some(Default::default());
    r.daemonsets = Some(calico());
    r.soak = Some(Default::default());
    r.pdb = Some(NoParams {});
    "power-off for an unknown time: quorum, nodes Ready, 600s soak"
}

/// `remove-member`: quorum after removal, leader moved first.
fn remove_member_rules(r: &mut RuleSet) -> &'static str {
    quorum_rules(r);
    r.etcd_two_voters = None;
    r.etcd_odd_size = Some(NoParams {});
    r.pdb = Some(NoParams {});
    "permanent removal: quorum after removal, no join in progress, leader moved first"
}

/// `join`: quorum during the join, one join at a time.
fn join_rules(r: &mut RuleSet) -> &'static str {
    r.etcd_quorum = Some(NoParams {});
    r.etcd_learner = Some(Default::default());
    r.etcd_alarms = Some(NoParams {});
    r.etcd_odd_size = Some(NoParams {});
    r.nodes_ready = Some(Default::default());
    "add a control-plane member: quorum during the join, one join at a time"
}

/// `single-master`: one master, its outage accepted, only in the window.
fn single_master_rules(r: &mut RuleSet) -> &'static str {
    r.single_master = Some(NoParams {});
    r.reboot_window = Some(rules::reboot_window::Params {
        days: Vec::new(),
        start: rules::reboot_window::Clock(jiff::civil::time(1, 0, 0, 0)),
        end: rules::reboot_window::Clock(jiff::civil::time(5, 0, 0, 0)),
        time_zone: Default::default(),
    });
    r.etcd_backup = Some(rules::etcd_backup::Params {
        max_age: crate::units::Dur::hours(24),
        severity: rules::etcd_backup::BackupSeverity::Deny,
    });
    r.etcd_alarms = Some(NoParams {});
    r.nodes_ready = Some(Default::default());
    r.pdb = Some(NoParams {});
    r.alerts = Some(rules::alerts::Params {
        required: false,
        ..Default::default()
    });
    "one master, its outage accepted: the API and etcd are down while it reboots; only in the window (01:00-05:00 UTC), with a verified etcd snapshot under 24h old, every node Ready, nothing else disrupted (the lock), kill-switch and alerts respected"
}

/// `preflight`: before a migration step, the cluster is healthy.
fn preflight_rules(r: &mut RuleSet) -> &'static str {
    r.lock = None;
    r.nodes_ready = Some(Default::default());
    r.etcd_quorum = Some(NoParams {});
    r.etcd_learner = Some(Default::default());
    r.etcd_alarms = Some(NoParams {});
    "before a migration step: the cluster is healthy (nodes Ready, etcd quorum, no join in progress, no alarm, no kill-switch)"
}
