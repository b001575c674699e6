//! hacli's mark on the VMs it creates, and the check before any stop or
//! delete: nothing is destroyed that this tool did not create.
//!
//! A clone is marked in the same configuration call that sizes and
//! addresses it: the Proxmox tag [`TAG`] (added to the template's tags) and a
//! description naming the cluster, the node, the VM id and the journal of
//! the run (no secrets). A VM is ours when it carries the tag, its
//! description's `hacli-vmid` is its own id (a VM cloned by hand from a
//! marked one inherits the lines, not the id), its `hacli-node` and its name
//! are the node the plan names, and its `hacli-cluster`, when the backend
//! knows its cluster, is that cluster. Anything else is refused, naming what
//! was found: `VM 205 is k8s-node5 (running), not created by hacli: not
//! deleting it`.

use std::collections::BTreeSet;

use hacore::backend::{HvOp, Op};
use hacore::exec::Record;
use hacore::plan::Plan;
use serde_json::{Map, Value};

/// The Proxmox tag on every VM hacli creates (a valid `pve-tag-list` entry).
pub const TAG: &str = "hacli";

const CLUSTER: &str = "hacli-cluster:";
const NODE: &str = "hacli-node:";
const VMID: &str = "hacli-vmid:";
const JOURNAL: &str = "hacli-journal:";

/// Who marks and who may delete: the run's cluster and journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The cluster (the plan's `cluster`); empty: not recorded, not checked.
    pub cluster: String,
    /// The journal of the run, recorded in the description (not checked:
    /// a later run, with another journal, may remove what a migration made).
    pub journal: String,
    /// VM ids whose clone this journal started and never finished (the
    /// step's last record is `started`: the run was killed during it). Such
    /// a VM, with the planned name, may be ours before it got its mark.
    pub interrupted_clones: BTreeSet<u32>,
}

impl Owner {
    /// The owner of a run of `plan` with `journal` and its `records` so far.
    pub fn for_run(plan: &Plan, journal: &str, records: &[Record]) -> Owner {
        Owner {
            cluster: plan.cluster.clone(),
            journal: journal.to_string(),
            interrupted_clones: interrupted_clones(plan, records),
        }
    }

    /// The description a clone of `name` as VM `vmid` gets.
    pub fn description(&self, name: &str, vmid: u32) -> String {
        let mut lines =
            vec!["Created by hacli; hacli stops or deletes only VMs with this mark.".to_string()];
        if !self.cluster.is_empty() {
            lines.push(format!("{CLUSTER} {}", self.cluster));
        }
        lines.push(format!("{NODE} {name}"));
        lines.push(format!("{VMID} {vmid}"));
        if !self.journal.is_empty() {
            lines.push(format!("{JOURNAL} {}", self.journal));
        }
        lines.join("\n")
    }
}

/// The `tags` value for a clone: the template's tags and [`TAG`], sorted and
/// without duplicates, `;`-separated as Proxmox writes them.
pub fn tags_with_mark(existing: &[String]) -> String {
    let mut tags: BTreeSet<String> = existing.iter().map(|t| t.to_ascii_lowercase()).collect();
    tags.insert(TAG.to_string());
    tags.into_iter().collect::<Vec<_>>().join(";")
}

/// A VM as found before acting on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// VM id.
    pub vmid: u32,
    /// Its name, if any.
    pub name: Option<String>,
    /// `running`, `stopped`...
    pub status: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its description, if any.
    pub description: Option<String>,
}

impl Found {
    /// From a VM's config (`GET .../config`) and status.
    pub fn from_config(vmid: u32, status: &str, config: &Map<String, Value>) -> Found {
        Found {
            vmid,
            name: config
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
            status: status.to_string(),
            tags: crate::client::split_tags(config.get("tags")),
            description: config
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.description
            .as_deref()?
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(str::trim)
    }

    /// Whether it carries the tag and a description mark for its own id.
    pub fn marked(&self) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(TAG))
            && self.field(VMID) == Some(self.vmid.to_string().as_str())
    }

    fn what(&self) -> String {
        format!(
            "VM {} is {} ({})",
            self.vmid,
            self.name.as_deref().unwrap_or("unnamed"),
            self.status
        )
    }
}

/// Whether `found` is the VM this tool created for node `name`: `Ok`, or
/// what it is instead (`VM 205 is k8s-node5 (running), not created by
/// hacli`); the caller adds what it will not do. `allow_interrupted`: a VM
/// of [`Owner::interrupted_clones`] with the planned name counts as ours
/// without the mark (its clone was cut before the mark was written).
pub fn judge(
    owner: &Owner,
    found: &Found,
    name: &str,
    allow_interrupted: bool,
) -> Result<(), String> {
    let what = found.what();
    if name.is_empty() {
        return Err(format!(
            "{what}; the plan names no VM for id {} (written by an older hacli), and hacli does not act on a VM by id alone",
            found.vmid
        ));
    }
    let named = found.name.as_deref() == Some(name);
    if !found.marked() {
        if allow_interrupted && named && owner.interrupted_clones.contains(&found.vmid) {
            return Ok(());
        }
        return Err(match found.field(VMID) {
            Some(other) if found.tags.iter().any(|t| t.eq_ignore_ascii_case(TAG)) => {
                format!("{what}, a copy of VM {other} that hacli created, not created by hacli")
            }
            _ => format!("{what}, not created by hacli"),
        });
    }
    if !named {
        return Err(format!("{what}, not {name}"));
    }
    if let Some(node) = found.field(NODE)
        && node != name
    {
        return Err(format!("{what}, created by hacli for {node}, not {name}"));
    }
    if found.field(NODE).is_none() {
        return Err(format!("{what}, its hacli mark names no node"));
    }
    if !owner.cluster.is_empty()
        && let Some(cluster) = found.field(CLUSTER)
        && cluster != owner.cluster
    {
        return Err(format!(
            "{what}, created by hacli for cluster {cluster}, not {}",
            owner.cluster
        ));
    }
    Ok(())
}

/// The VM ids of `plan`'s clone steps whose last journal record is
/// `started`: the run stopped during the clone.
pub fn interrupted_clones(plan: &Plan, records: &[Record]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for (_, step) in plan.steps() {
        let Op::Hypervisor(HvOp::CloneVm { vmid, .. }) = &step.op else {
            continue;
        };
        let last = records.iter().rev().find(|r| match r {
            Record::Started { step: s, .. }
            | Record::Done { step: s, .. }
            | Record::Failed { step: s, .. }
            | Record::Blocked { step: s, .. }
            | Record::RolledBack { step: s, .. }
            | Record::Confirmed { step: s, .. } => *s == step.id,
            _ => false,
        });
        if matches!(last, Some(Record::Started { .. })) {
            out.insert(*vmid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, tags: &[&str], description: Option<&str>) -> Found {
        Found {
            vmid: 205,
            name: Some(name.into()),
            status: "running".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: description.map(str::to_string),
        }
    }

    fn owner() -> Owner {
        Owner {
            cluster: "home".into(),
            journal: "/var/lib/hacli/run.jsonl".into(),
            interrupted_clones: BTreeSet::new(),
        }
    }

    #[test]
    fn a_vm_without_the_mark_is_not_ours() {
        let f = found("k8s-node5", &["prod"], Some("the build runner"));
        assert_eq!(
            judge(&owner(), &f, "k8s-master-2", true).unwrap_err(),
            "VM 205 is k8s-node5 (running), not created by hacli"
        );
        // The tag alone is not the mark.
        let f = found("k8s-master-2", &["hacli"], None);
        assert!(judge(&owner(), &f, "k8s-master-2", true).is_err());
    }

    #[test]
    fn a_marked_vm_is_ours_only_under_its_own_id_name_and_cluster() {
        let o = owner();
        let desc = o.description("k8s-master-2", 205);
        assert!(
            desc.contains("hacli-journal: /var/lib/hacli/run.jsonl"),
            "{desc}"
        );
        let f = found("k8s-master-2", &["debian", "hacli"], Some(&desc));
        assert_eq!(judge(&o, &f, "k8s-master-2", false), Ok(()));
        // Proxmox gives the description back with a newline after each line.
        let f2 = found("k8s-master-2", &["hacli"], Some(&format!("{desc}\n")));
        assert_eq!(judge(&o, &f2, "k8s-master-2", false), Ok(()));
        // Another node's name.
        assert_eq!(
            judge(&o, &f, "k8s-master-3", false).unwrap_err(),
            "VM 205 is k8s-master-2 (running), not k8s-master-3"
        );
        // Renamed by hand: the name and the mark disagree.
        let renamed = found("k8s-master-3", &["hacli"], Some(&desc));
        assert!(
            judge(&o, &renamed, "k8s-master-3", false)
                .unwrap_err()
                .contains("created by hacli for k8s-master-2, not k8s-master-3")
        );
        // Copied by hand to another id: the lines come along, the id does not.
        let mut copy = f.clone();
        copy.vmid = 300;
        assert_eq!(
            judge(&o, &copy, "k8s-master-2", false).unwrap_err(),
            "VM 300 is k8s-master-2 (running), a copy of VM 205 that hacli created, not created by hacli"
        );
        // Another cluster's.
        let other = Owner {
            cluster: "lab".into(),
            ..owner()
        };
        assert!(
            judge(&other, &f, "k8s-master-2", false)
                .unwrap_err()
                .contains("created by hacli for cluster home, not lab")
        );
        // A plan that names no VM.
        assert!(
            judge(&o, &f, "", false)
                .unwrap_err()
                .contains("by id alone")
        );
    }

    #[test]
    fn an_interrupted_clone_is_ours_before_its_mark_only_when_allowed() {
        let mut o = owner();
        o.interrupted_clones.insert(205);
        let f = found("k8s-master-2", &[], None);
        assert_eq!(judge(&o, &f, "k8s-master-2", true), Ok(()));
        assert!(judge(&o, &f, "k8s-master-2", false).is_err());
        // Not with another name.
        assert!(judge(&o, &f, "k8s-master-3", true).is_err());
    }

    #[test]
    fn tags_keep_the_templates_and_add_the_mark() {
        assert_eq!(tags_with_mark(&[]), "hacli");
        assert_eq!(
            tags_with_mark(&["Debian".into(), "hacli".into(), "base".into()]),
            "base;debian;hacli"
        );
    }
}
