//! `hacli apply --measure`: steady reads to the API for the whole run
//! (`haops::apply::MeasureSpec`), to the source master directly until the cut-over
//! begins and through the VIP from then on; every failure and gap on the
//! step that was running, against the outage the plan declares for it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use kubeadm::measure::MeasureReport;

use crate::args::parse_duration;

/// The flags of `--measure`.
#[derive(Debug, Clone, clap::Args)]
pub struct MeasureArgs {
    /// Send steady reads to the API during the run and report failed
    /// requests and gaps per step against the plan's declared outages.
    #[arg(long)]
    pub measure: bool,
    /// kubeconfig whose credentials and CA the reads use (KUBECONFIG,
    /// ~/.kube/config by default); the URLs come from the plan's topologies.
    #[arg(long = "measure-kubeconfig", env = "KUBECONFIG")]
    pub measure_kubeconfig: Option<PathBuf>,
    /// Reads per second.
    #[arg(long, default_value_t = 10.0)]
    pub measure_rate: f64,
    /// Each read's deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub measure_timeout: Duration,
    /// The path read.
    #[arg(long, default_value = "/api/v1/namespaces/kube-system")]
    pub measure_path: String,
    /// Write the availability report here (JSON, schema `hacli.measure/v1`).
    #[arg(long, value_name = "FILE")]
    pub measure_json: Option<PathBuf>,
}

impl MeasureArgs {
    /// What to measure, when asked.
    pub fn spec(&self) -> Option<haops::apply::MeasureSpec> {
        self.measure.then(|| haops::apply::MeasureSpec {
            kubeconfig: self.measure_kubeconfig.clone(),
            rate: self.measure_rate,
            timeout: self.measure_timeout,
            path: self.measure_path.clone(),
        })
    }
}

/// Write the JSON if asked, and return the text table.
pub fn finish(a: &MeasureArgs, r: &MeasureReport) -> anyhow::Result<String> {
    if let Some(p) = &a.measure_json {
        std::fs::write(
            p,
            crate::render::document_json("AvailabilityReport", r)? + "\n",
        )
        .with_context(|| format!("writing --measure-json {}", p.display()))?;
    }
    Ok(table(r))
}

/// Per step: requests, failures, longest gap, declared outage.
pub fn table(r: &MeasureReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "availability: {} reads, {} failed, longest gap {:.0} ms ({} req/s){}",
        r.total.sent,
        r.total.failed,
        r.longest_gap_ms,
        r.rate,
        if r.within_declared() {
            ""
        } else {
            "; MORE than the plan declared"
        }
    );
    let _ = writeln!(
        s,
        "  {:<36} {:<6} {:>6} {:>6} {:>9} {:>10}",
        "step", "via", "sent", "failed", "gap", "declared"
    );
    for st in &r.steps {
        let _ = writeln!(
            s,
            "  {:<36} {:<6} {:>6} {:>6} {:>6.0} ms {:>10}{}",
            st.id,
            st.via,
            st.stats.sent,
            st.stats.failed,
            st.longest_gap_ms,
            st.declared_ms
                .map(|d| format!("{:.0} ms", d))
                .unwrap_or_else(|| "none".into()),
            if st.within_declared { "" } else { "  <- over" }
        );
    }
    s
}
