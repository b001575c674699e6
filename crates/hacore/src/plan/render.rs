//! How a plan reads for people: markdown to review and check off, and plain
//! text with one line per step.

use std::fmt::Write as _;

use super::Plan;

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
            for st in &p.steps {
                let _ = writeln!(
                    s,
                    "- [ ] **{}**: {} ({})",
                    st.id, st.title, st.expected_duration
                );
                let _ = writeln!(s, "  - do: `{}`", st.op);
                for g in &st.preconditions {
                    let _ = writeln!(
                        s,
                        "  - only if policy `{}` allows {} of {}",
                        g.policy, g.action, g.target
                    );
                }
                if let Some(r) = &st.rollback {
                    let _ = writeln!(s, "  - rollback: `{r}`");
                }
                if let Some(o) = &st.outage {
                    let _ = writeln!(s, "  - outage: up to {}: {}", o.up_to, o.what);
                }
                for n in &st.notes {
                    let _ = writeln!(s, "  - note: {n}");
                }
            }
            let _ = writeln!(s);
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
                let outage = st
                    .outage
                    .as_ref()
                    .map(|o| format!("  [outage up to {}: {}]", o.up_to, o.what))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {i:>3}. {:<40} {}{outage}", st.id, st.title);
            }
        }
        s
    }
}
