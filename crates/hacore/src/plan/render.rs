//! How a plan reads for people: markdown to review and check off, and plain
//! text with one line per step.

use std::fmt::Write as _;

use super::{Outage, Plan, Recovery, Step};
use crate::topology::Topology;

impl Plan {
    /// Markdown a person can review and check off.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Migration plan: {}\n", self.cluster);
        let _ = writeln!(
            s,
            "From {} master(s) at `{}` to {} masters behind `{}`. Expected duration {}; etcd joins {}.\n",
            self.from.control_plane_nodes().count(),
            self.from.control_plane_endpoint.socket(),
            self.to.control_plane_nodes().count(),
            self.to.control_plane_endpoint.socket(),
            self.expected_duration(),
            if self.learner_joins {
                "as learners first"
            } else {
                "as voters at once"
            }
        );
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "Accepted risks:\n");
            for w in &self.warnings {
                let _ = writeln!(s, "- {w}");
            }
            let _ = writeln!(s);
        }
        for p in &self.phases {
            let _ = writeln!(s, "## {}\n", p.title);
            if let Some(r) = &p.rollback {
                let _ = writeln!(s, "_Rollback:_ {r}\n");
            }
            for st in &p.steps {
                let _ = writeln!(
                    s,
                    "- [ ] **{}**: {} ({})",
                    st.id, st.title, st.expected_duration
                );
                let _ = writeln!(s, "  - do: `{}`", st.shown_command(&self.to));
                for g in &st.preconditions {
                    let _ = writeln!(
                        s,
                        "  - only if policy `{}` allows {} of {}",
                        g.policy, g.action, g.target
                    );
                }
                if let Some(r) = st.shown_rollback(&self.to) {
                    let _ = writeln!(s, "  - rollback: `{r}`");
                }
                match &st.outage {
                    Some(o @ Outage { only_if: None, .. }) => {
                        let _ = writeln!(s, "  - outage: up to {}: {}", o.up_to, o.what);
                    }
                    Some(
                        o @ Outage {
                            only_if: Some(cond),
                            ..
                        },
                    ) => {
                        let _ = writeln!(
                            s,
                            "  - outage only if {cond}: up to {}: {}",
                            o.up_to, o.what
                        );
                    }
                    None => {}
                }
                for n in &st.notes {
                    let _ = writeln!(s, "  - note: {n}");
                }
            }
            let _ = writeln!(s);
        }
        if let Some(r) = &self.recovery {
            recovery_markdown(&mut s, r);
        }
        s
    }

    /// Plain text, one line per step.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "plan for {}: {} phases, {} steps, about {}",
            self.cluster,
            self.phases.len(),
            self.steps().count(),
            self.expected_duration()
        );
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let mut i = 0;
        for p in &self.phases {
            let _ = writeln!(s, "\n{}", p.title);
            for st in &p.steps {
                i += 1;
                let outage = match &st.outage {
                    Some(o @ Outage { only_if: None, .. }) => {
                        format!("  [outage up to {}: {}]", o.up_to, o.what)
                    }
                    Some(
                        o @ Outage {
                            only_if: Some(cond),
                            ..
                        },
                    ) => format!("  [only if {cond}: outage up to {}: {}]", o.up_to, o.what),
                    None => String::new(),
                };
                let _ = writeln!(s, "  {i:>3}. {:<40} {}{outage}", st.id, st.title);
                let _ = writeln!(s, "       do: {}", st.shown_command(&self.to));
            }
        }
        if let Some(r) = &self.recovery {
            let _ = writeln!(
                s,
                "\n{}: {} manual steps outside the run (the markdown gives the commands)",
                r.title,
                r.steps.len()
            );
        }
        s
    }
}

impl Step {
    /// What the step runs, for people: its recorded command, or (a plan
    /// written before steps recorded it) one described from its operation.
    pub fn shown_command(&self, to: &Topology) -> String {
        self.command
            .clone()
            .unwrap_or_else(|| super::commands::describe(&self.op, to))
    }

    /// What its rollback runs, described the same way.
    pub fn shown_rollback(&self, to: &Topology) -> Option<String> {
        let r = self.rollback.as_ref()?;
        Some(
            self.rollback_command
                .clone()
                .unwrap_or_else(|| super::commands::describe(r, to)),
        )
    }
}

/// The recovery appendix: each step with where it runs, its commands and
/// what to check, to tick off by hand.
fn recovery_markdown(s: &mut String, r: &Recovery) {
    let _ = writeln!(s, "## {}\n", r.title);
    let _ = writeln!(s, "Use it {}\n", r.when);
    for st in &r.steps {
        let _ = writeln!(s, "- [ ] **{}**: {}", st.id, st.title);
        let _ = writeln!(s, "  - on: {}", st.on);
        let _ = writeln!(s, "  - run:\n\n    ```sh");
        for c in &st.commands {
            let _ = writeln!(s, "    {c}");
        }
        let _ = writeln!(s, "    ```\n");
        let _ = writeln!(s, "  - check: {}", st.confirm);
    }
    let _ = writeln!(s);
}
