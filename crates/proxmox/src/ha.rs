//! Proxmox VE 9 HA resources and rules (`/cluster/ha/resources`,
//! `/cluster/ha/rules`): reading them, and keeping the masters apart with
//! one negative resource-affinity rule.
//!
//! hacli writes [`MARK`] at the start of the comment of every rule and HA
//! resource it creates. A rule of the wanted name without the mark is
//! someone else's: it is refused, naming what was found, and left alone.
//! An HA resource that already exists (ours or not) is used as it is:
//! adding a VM to a rule changes nothing about its resource.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use reqwest::Method;
use serde_json::Value;

use crate::client::{Client, Params};
use crate::error::Error;
use crate::inventory::InventoryView;

/// The first word of the comment of every HA rule or resource hacli writes.
pub const MARK: &str = "hacli:";

fn p(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// An HA resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaResource {
    /// `vm:ID`.
    pub sid: String,
    /// `started`, `stopped`, `ignored`...
    pub state: String,
    /// Its comment.
    pub comment: Option<String>,
}

impl HaResource {
    /// The VM id of a `vm:ID` resource.
    pub fn vmid(&self) -> Option<u32> {
        self.sid.strip_prefix("vm:")?.parse().ok()
    }
}

/// An HA rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaRule {
    /// Its id.
    pub rule: String,
    /// `resource-affinity` or `node-affinity`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The resources it lists (`vm:ID`), sorted.
    pub resources: Vec<String>,
    /// `positive` or `negative` (resource affinity).
    pub affinity: Option<String>,
    /// The nodes (node affinity).
    pub nodes: Option<String>,
    /// Its comment.
    pub comment: Option<String>,
    /// Whether it is disabled.
    pub disabled: bool,
}

impl HaRule {
    /// For a negative resource-affinity rule: the hosts on which two or
    /// more of its VMs run (as the inventory reports them), with those
    /// VMs' names; empty when it is met or is no such rule.
    pub fn not_met(&self, inv: &InventoryView) -> Vec<(String, Vec<String>)> {
        if self.ty != "resource-affinity" || self.affinity.as_deref() != Some("negative") {
            return Vec::new();
        }
        let mut by_host: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for sid in &self.resources {
            if let Some((h, v)) = sid
                .strip_prefix("vm:")
                .and_then(|v| v.parse().ok())
                .and_then(|v| inv.vm(v))
            {
                by_host
                    .entry(h.node.clone())
                    .or_default()
                    .push(v.name.clone());
            }
        }
        by_host.into_iter().filter(|(_, v)| v.len() > 1).collect()
    }

    fn from_value(v: &Value) -> HaRule {
        let mut resources: Vec<String> = text(v, "resources")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        resources.sort();
        HaRule {
            rule: text(v, "rule").unwrap_or_default(),
            ty: text(v, "type").unwrap_or_default(),
            resources,
            affinity: text(v, "affinity"),
            nodes: text(v, "nodes"),
            comment: text(v, "comment"),
            disabled: v.get("disable").and_then(Value::as_u64).unwrap_or(0) != 0
                || v.get("disable").and_then(Value::as_bool) == Some(true),
        }
    }

    /// Whether hacli wrote it (its comment starts with [`MARK`]).
    pub fn ours(&self) -> bool {
        self.comment.as_deref().is_some_and(|c| c.starts_with(MARK))
    }

    /// Whether it keeps exactly `vmids` apart, enabled.
    pub fn keeps_apart(&self, vmids: &[u32]) -> bool {
        self.ty == "resource-affinity"
            && self.affinity.as_deref() == Some("negative")
            && !self.disabled
            && self.resources == sids(vmids)
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let what = match (self.ty.as_str(), &self.affinity, &self.nodes) {
            ("resource-affinity", Some(a), _) => format!("{a} resource affinity"),
            ("node-affinity", _, Some(n)) => format!("node affinity to {n}"),
            (t, _, _) => t.to_string(),
        };
        format!(
            "{}: {what} of {}{}{}",
            self.rule,
            if self.resources.is_empty() {
                "(no resource)".to_string()
            } else {
                self.resources.join(", ")
            },
            if self.disabled { " (disabled)" } else { "" },
            self.comment
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        )
    }
}

/// `vm:ID` for each id, sorted.
pub fn sids(vmids: &[u32]) -> Vec<String> {
    let set: BTreeSet<u32> = vmids.iter().copied().collect();
    set.into_iter().map(|v| format!("vm:{v}")).collect()
}

/// `GET /cluster/ha/resources`.
pub async fn resources(client: &Client) -> Result<Vec<HaResource>, Error> {
    let v = client
        .request(Method::GET, "/cluster/ha/resources", &Params::new())
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|r| HaResource {
            sid: text(r, "sid").unwrap_or_default(),
            state: text(r, "state").unwrap_or_default(),
            comment: text(r, "comment"),
        })
        .collect())
}

/// `GET /cluster/ha/rules`.
pub async fn rules(client: &Client) -> Result<Vec<HaRule>, Error> {
    let v = client
        .request(Method::GET, "/cluster/ha/rules", &Params::new())
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(HaRule::from_value)
        .collect())
}

/// Whether every VM of `vmids` is an HA resource and the rule `rule` keeps
/// exactly them apart.
pub async fn anti_affinity_done(client: &Client, rule: &str, vmids: &[u32]) -> Result<bool, Error> {
    let have: BTreeSet<String> = resources(client)
        .await?
        .into_iter()
        .map(|r| r.sid)
        .collect();
    if !sids(vmids).iter().all(|s| have.contains(s)) {
        return Ok(false);
    }
    Ok(rules(client)
        .await?
        .iter()
        .any(|r| r.rule == rule && r.keeps_apart(vmids)))
}

/// Make each VM of `vmids` an HA resource (state `started`) and the rule
/// `rule` a negative resource-affinity rule of exactly them. A rule of that
/// name that is not ours is refused ([`Error::NotOurs`]), before anything
/// is created.
pub async fn keep_apart(
    client: &Client,
    rule: &str,
    vmids: &[u32],
    cluster: &str,
) -> Result<(), Error> {
    let existing = rules(client).await?.into_iter().find(|r| r.rule == rule);
    if let Some(r) = &existing
        && !r.ours()
    {
        return Err(Error::NotOurs(format!(
            "HA rule `{rule}` exists and is not hacli's ({}): not changing it; choose another rule id",
            r.describe()
        )));
    }
    let comment = format!("{MARK} the masters of cluster {cluster}, kept on different hosts");
    let have: BTreeSet<String> = resources(client)
        .await?
        .into_iter()
        .map(|r| r.sid)
        .collect();
    for sid in sids(vmids) {
        if have.contains(&sid) {
            continue;
        }
        client
            .request(
                Method::POST,
                "/cluster/ha/resources",
                &vec![
                    p("sid", &sid),
                    p("state", "started"),
                    p("comment", format!("{MARK} a master of cluster {cluster}")),
                ],
            )
            .await?;
    }
    let list = sids(vmids).join(",");
    match existing {
        Some(r) if r.keeps_apart(vmids) => Ok(()),
        Some(_) => client
            .request(
                Method::PUT,
                &format!("/cluster/ha/rules/{rule}"),
                &vec![
                    p("type", "resource-affinity"),
                    p("affinity", "negative"),
                    p("resources", list),
                    p("comment", comment),
                    p("disable", 0),
                ],
            )
            .await
            .map(|_| ()),
        None => client
            .request(
                Method::POST,
                "/cluster/ha/rules",
                &vec![
                    p("rule", rule),
                    p("type", "resource-affinity"),
                    p("affinity", "negative"),
                    p("resources", list),
                    p("comment", comment),
                ],
            )
            .await
            .map(|_| ()),
    }
}

/// The HA configuration as `hacli hypervisor show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaView {
    /// HA resources.
    pub resources: Vec<HaResource>,
    /// HA rules.
    pub rules: Vec<HaRule>,
}

impl HaView {
    /// Read both lists.
    pub async fn read(client: &Client) -> Result<HaView, Error> {
        Ok(HaView {
            resources: resources(client).await?,
            rules: rules(client).await?,
        })
    }

    /// HA resources with the host each VM runs on, and the rules; a
    /// negative resource-affinity rule whose VMs share a host says so.
    pub fn render(&self, inv: &InventoryView) -> String {
        let mut s = String::new();
        let host_of = |sid: &str| -> String {
            sid.strip_prefix("vm:")
                .and_then(|v| v.parse().ok())
                .and_then(|v| inv.vm(v))
                .map(|(h, v)| format!("{} `{}` on {}", sid, v.name, h.node))
                .unwrap_or_else(|| format!("{sid} (no such VM)"))
        };
        if self.resources.is_empty() {
            s.push_str("HA resources: none\n");
        } else {
            s.push_str("HA resources:\n");
            for r in &self.resources {
                let _ = writeln!(s, "  {} ({})", host_of(&r.sid), r.state);
            }
        }
        if self.rules.is_empty() {
            s.push_str("HA rules: none\n");
        } else {
            s.push_str("HA rules:\n");
            for r in &self.rules {
                let _ = writeln!(s, "  {}", r.describe());
                for (h, vms) in r.not_met(inv) {
                    let _ = writeln!(s, "    NOT MET: {} share host {h}", vms.join(" and "));
                }
            }
        }
        s
    }
}

/// Where one master runs, as the inventory reports it (by its VM id).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterPlacement {
    /// The master's name.
    pub name: String,
    /// Its VM id in the topology (none: not said).
    pub vmid: Option<u32>,
    /// The host the inventory reports it on (none: its VM was not found).
    pub host: Option<String>,
    /// Its VM's status there.
    pub status: Option<String>,
    /// The host the topology declares.
    pub declared_host: Option<String>,
}

/// Where each master of `topology` runs, as the inventory reports it.
pub fn placement(inv: &InventoryView, topology: &hacore::Topology) -> Vec<MasterPlacement> {
    topology
        .control_plane_nodes()
        .map(|m| {
            let seen = m.vmid.and_then(|v| inv.vm(v));
            MasterPlacement {
                name: m.name.clone(),
                vmid: m.vmid,
                host: seen.map(|(h, _)| h.node.clone()),
                status: seen.map(|(_, v)| v.status.clone()),
                declared_host: m.hypervisor.clone(),
            }
        })
        .collect()
}

/// The hosts that run two or more of `placed`'s masters, with their names.
pub fn shared_hosts(placed: &[MasterPlacement]) -> Vec<(String, Vec<String>)> {
    let mut by_host: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in placed {
        if let Some(h) = &p.host {
            by_host.entry(h.clone()).or_default().push(p.name.clone());
        }
    }
    by_host.into_iter().filter(|(_, ms)| ms.len() > 1).collect()
}

/// Where each master of `topology` runs, as the inventory reports it (by
/// VM id), with the topology's word when it differs; and whether two share
/// a host.
pub fn render_placement(inv: &InventoryView, topology: &hacore::Topology) -> String {
    let mut s = String::from("placement of the masters:\n");
    let placed = placement(inv, topology);
    for p in &placed {
        let declared = p.declared_host.as_deref().unwrap_or("(none)");
        match (&p.host, p.vmid) {
            (Some(host), Some(vmid)) => {
                let status = p.status.as_deref().unwrap_or("unknown");
                let _ = write!(s, "  {} (VM {vmid}, {status}) on {host}", p.name);
                if host != declared {
                    let _ = write!(s, " (the topology says {declared})");
                }
                s.push('\n');
            }
            (None, Some(vmid)) => {
                let _ = writeln!(
                    s,
                    "  {} (VM {vmid}) not found; the topology says {declared}",
                    p.name
                );
            }
            (_, None) => {
                let _ = writeln!(
                    s,
                    "  {}: no VM id in the topology (declared on {declared})",
                    p.name
                );
            }
        }
    }
    for (h, ms) in shared_hosts(&placed) {
        let _ = writeln!(
            s,
            "  WARNING: {} share host {h}: its failure takes {} masters down",
            ms.join(" and "),
            ms.len()
        );
    }
    s
}
