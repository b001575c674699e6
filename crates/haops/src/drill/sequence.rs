//! The drill's sequence, whatever the disruption:
//! 1. start the traffic through the control-plane endpoint and poll the
//!    node's server in the load balancer (`kubeadm::drill::LbWatcher`);
//! 2. after the baseline, check that the node's server is UP (otherwise
//!    nothing is disrupted: `kubeadm::Error::NotHealthy`);
//! 3. disrupt the node ([`Disruption::disrupt`]) and, after `down_for`
//!    when it holds the node down, restore it ([`Disruption::restore`];
//!    also after a failed disruption: a half-done power-off must not leave
//!    the node down);
//! 4. wait until the load balancer shows the server UP again (bounded by
//!    `recovery_timeout`), then keep the traffic going until `duration`
//!    and for at least `after` more;
//! 5. stop, and report (`kubeadm::drill::report`).

use std::time::Duration;

use kubeadm::drill::{DisruptionReport, DrillConfig, DrillReport, LbWatcher, is_up};
use kubeadm::traffic::{Connections, ms};
use tokio::time::Instant;

/// One way to disrupt a node, and to undo it. Implement it to drill a
/// disruption of your own.
#[allow(async_fn_in_trait)]
pub trait Disruption {
    /// What it does, for the report (`power off VM 101 on pve1`).
    fn describe(&self) -> String;
    /// The disruption itself. An error stops the drill (after restoring).
    async fn disrupt(&mut self) -> Result<(), String>;
    /// Undo it (power on); Ok when there is nothing to undo.
    async fn restore(&mut self) -> Result<(), String>;
    /// Whether the drill waits `down_for` before [`Disruption::restore`]
    /// (a power-off does; a completed planned reboot does not).
    fn holds(&self) -> bool {
        true
    }
}

/// The disruption's moments, ms since the traffic started.
struct Timeline {
    start_ms: f64,
    done_ms: Option<f64>,
    restore_ms: Option<f64>,
    restored_ms: Option<f64>,
    error: Option<String>,
}

impl Timeline {
    fn fail(&mut self, e: String) {
        self.error = Some(match self.error.take() {
            Some(first) => format!("{first}; {e}"),
            None => e,
        });
    }
}

/// Wait until the node's server is UP: a check that failed once (`UP
/// 1/2`) may pass again, so a few intervals are given before refusing.
async fn healthy(cfg: &DrillConfig, watcher: Option<&LbWatcher>) -> Result<(), String> {
    let (Some(lb), Some(w)) = (&cfg.lb, watcher) else {
        return Ok(());
    };
    let until = Instant::now() + (lb.interval * 8).max(Duration::from_secs(2));
    while !w.last_status().as_deref().is_some_and(is_up) && Instant::now() < until {
        tokio::time::sleep(w.poll()).await;
    }
    match w.last_status() {
        Some(s) if is_up(&s) => Ok(()),
        status => Err(format!(
            "its server {} in pool {} is {} in the load balancer, not UP: a drill starts from a healthy pool",
            lb.server,
            lb.pool,
            status.unwrap_or_else(|| "not seen yet".into())
        )),
    }
}

/// Disrupt, hold, restore.
async fn disrupt_and_restore<D: Disruption>(
    d: &mut D,
    cfg: &DrillConfig,
    started: Instant,
    progress: &impl Fn(&str),
) -> Timeline {
    let mut t = Timeline {
        start_ms: ms(started.elapsed()),
        done_ms: None,
        restore_ms: None,
        restored_ms: None,
        error: None,
    };
    match d.disrupt().await {
        Ok(()) => t.done_ms = Some(ms(started.elapsed())),
        Err(e) => t.fail(format!("disruption: {e}")),
    }
    if t.error.is_none() && d.holds() {
        progress(&format!("{} stays down for {:?}", cfg.node, cfg.down_for));
        tokio::time::sleep(cfg.down_for).await;
    }
    t.restore_ms = Some(ms(started.elapsed()));
    progress(&format!("restoring {}", cfg.node));
    match d.restore().await {
        Ok(()) => t.restored_ms = Some(ms(started.elapsed())),
        Err(e) => t.fail(format!("restore: {e}")),
    }
    t
}

/// Wait for the server to come back UP (after having been seen out of
/// rotation); the end of the disruption, ms.
async fn recover(
    cfg: &DrillConfig,
    w: &LbWatcher,
    t: &mut Timeline,
    started: Instant,
    progress: &impl Fn(&str),
) -> f64 {
    let Some(lb) = &cfg.lb else {
        return t.restored_ms.unwrap_or(ms(started.elapsed()));
    };
    let until = Instant::now() + cfg.recovery_timeout;
    // Never seen DOWN though the restore is done and HAProxy had time to
    // notice (the bound, and two polls): it stayed UP.
    let noticed = (ms(lb.bound() + lb.interval) + 2.0 * ms(w.poll())).max(1000.0);
    loop {
        let (down, up) = w.down_up(t.start_ms);
        if let (Some(_), Some(up)) = (down, up) {
            progress(&format!("{} is UP again in the load balancer", cfg.node));
            return up;
        }
        let now = ms(started.elapsed());
        if down.is_none() && t.restored_ms.is_some_and(|r| now > r + noticed) {
            return t.restored_ms.unwrap_or(now);
        }
        if Instant::now() >= until {
            let e = format!(
                "{} did not come UP again in the load balancer within {:?} of the restore",
                cfg.node, cfg.recovery_timeout
            );
            progress(&e);
            t.fail(e);
            return now;
        }
        tokio::time::sleep(w.poll()).await;
    }
}

/// Run the drill: traffic, disruption, recovery, report. `progress` gets
/// one line per phase.
pub(super) async fn run<D: Disruption>(
    (kubeconfig, context): (Option<&std::path::Path>, Option<&str>),
    cfg: DrillConfig,
    mut disruption: D,
    progress: impl Fn(&str),
) -> Result<DrillReport, kubeadm::Error> {
    let kube = kubeadm::kube_config_in(kubeconfig, context).await?;
    let traffic = kubeadm::drill::start_traffic(kube, &cfg.endpoint, cfg.traffic.clone())?;
    let started = traffic.started();
    let watcher = cfg.lb.clone().map(|l| LbWatcher::start(l, started));
    progress(&format!(
        "traffic: {} req/s to {}{} ({} connections); baseline {:?}",
        cfg.traffic.rate,
        cfg.endpoint,
        cfg.traffic.path,
        match cfg.traffic.connections {
            Connections::Fresh => "fresh",
            Connections::KeepAlive => "kept-alive",
        },
        cfg.baseline
    ));
    tokio::time::sleep(cfg.baseline).await;
    if let Err(reason) = healthy(&cfg, watcher.as_ref()).await {
        if let Some(w) = watcher {
            w.finish(0.0).await;
        }
        let _ = traffic.stop().await;
        return Err(kubeadm::Error::NotHealthy {
            node: cfg.node,
            reason,
        });
    }
    let action = disruption.describe();
    progress(&format!("disrupting {}: {action}", cfg.node));
    let mut t = disrupt_and_restore(&mut disruption, &cfg, started, &progress).await;
    let end_ms = match &watcher {
        Some(w) => recover(&cfg, w, &mut t, started, &progress).await,
        None => t.restored_ms.unwrap_or(ms(started.elapsed())),
    };
    let stop_at = (started + cfg.duration).max(Instant::now() + cfg.after);
    progress(&format!(
        "traffic continues for {:.1} s",
        stop_at
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    ));
    tokio::time::sleep_until(stop_at).await;
    let end_of_run = ms(started.elapsed());
    if let Some(w) = &watcher {
        w.stop();
    }
    let started_at = traffic.started_at();
    let requests = traffic.stop().await;
    let lb = match watcher {
        Some(w) => Some(w.finish(t.start_ms).await),
        None => None,
    };
    let disruption = DisruptionReport {
        action,
        start_ms: t.start_ms,
        done_ms: t.done_ms,
        restore_ms: t.restore_ms,
        restored_ms: t.restored_ms,
        end_ms,
        error: t.error,
    };
    Ok(kubeadm::drill::report(
        &cfg, started_at, end_of_run, disruption, lb, requests,
    ))
}
