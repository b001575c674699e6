//! No etcd alarm (NOSPACE, CORRUPT) may be active.

use super::{Context, NoParams, and_list, deny, pass, unknown};
use crate::action::Action;
use crate::state::Probe;
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "etcd-alarms";

/// Check.
pub fn check(ctx: &Context<'_>, _: &NoParams, out: &mut Vec<Finding>) {
    if ctx.action == Action::Drain {
        out.push(pass(ID, "drain does not touch etcd"));
        return;
    }
    let etcd = match ctx.state.section(Probe::Etcd, ctx.state.etcd.as_ref()) {
        Ok(e) => e,
        Err(e) => return out.push(unknown(ID, e)),
    };
    if let Some(e) = ctx.state.probe_errors.get(&Probe::EtcdAlarms) {
        return out.push(unknown(
            ID,
            format!("probe `{}` failed: {e}", Probe::EtcdAlarms),
        ));
    }
    let alarms: Vec<String> = etcd
        .members
        .iter()
        .flat_map(|m| {
            m.alarms.iter().map(move |a| {
                format!(
                    "{a} on {}",
                    if m.name.is_empty() {
                        m.id.to_string()
                    } else {
                        m.name.clone()
                    }
                )
            })
        })
        .collect();
    if alarms.is_empty() {
        out.push(pass(ID, "no etcd alarm is active"));
    } else {
        out.push(
            deny(
                ID,
                format!(
                    "{} active: {}",
                    if alarms.len() == 1 {
                        "etcd alarm"
                    } else {
                        "etcd alarms"
                    },
                    and_list(&alarms)
                ),
            )
            .fix(
                "resolve the alarm (defragment / compact for NOSPACE), then `etcdctl alarm disarm`",
            ),
        );
    }
}
