//! `etcd-latency` against the lab's real etcd: one member's fdatasync is
//! slowed by `strace -e inject=fdatasync:delay_enter=...` while writes
//! flow; the observer reads every member's `/metrics` twice over the
//! window, and the upgrade policy denies, naming the member, its WAL
//! fsync p99 and the fix. With strace detached, the same gate passes.

use std::time::{Duration, Instant};

use hacore::gate::{Policy, Request, evaluate};
use hacore::verdict::Severity;
use hacore::{Action, Topology};
use kubeadm::{EtcdTls, Observer, ObserverConfig};
use testlab::Lab;
use testlab::etcd_load::{EtcdWriter, SlowFsync};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_members_fsync_denies_the_upgrade_and_passes_once_it_is_fast_again() {
    let Some(lab) = Lab::start_or_skip("etcd_latency") else {
        return;
    };
    if !testlab::etcd_load::strace_installed() {
        testlab::skip::skip("etcd_latency", "strace is not installed");
        return;
    }
    let t0 = Instant::now();
    let (topology, _) = Topology::load(&lab.topology).unwrap();
    // This machine's shared disk is itself slower than etcd's guidance
    // (WAL fsync p99 around 15 ms measured here, over 10 ms): the lab's
    // thresholds sit between it and the 50 ms strace adds.
    let policy = Policy::from_yaml(
        "lab-upgrade.yaml",
        "name: lab-upgrade\nextends: upgrade\ndisable: [alerts, soak, master-disk, control-plane-drift]\nrules:\n  etcd-latency: { window: 3s, walFsyncP99: 35ms, backendCommitP99: 60ms }\n",
    )
    .unwrap();
    let window = policy.rules.etcd_latency.as_ref().unwrap().window;
    let cfg = ObserverConfig {
        kubeconfig: Some(lab.kubeconfig.clone()),
        deadline: Duration::from_secs(6),
        member_timeout: Duration::from_secs(4),
        etcd_latency_window: Some(window.0.unsigned_abs()),
        ..Default::default()
    };
    let observer = Observer::new(topology.clone(), cfg).await.unwrap();
    let tls = EtcdTls::kubeadm(&lab.etcd_pki);
    let writes = EtcdWriter::start(
        lab.etcd_endpoints(),
        (&tls.ca, &tls.cert, &tls.key),
        "/latency-test/k",
    );
    let slow = "m2";
    let strace = SlowFsync::attach(
        lab.etcd_pid(slow).expect("m2's etcd runs"),
        Duration::from_millis(50),
    );
    // Every thread of m2's etcd is traced before the window starts.
    let gate = |state: &hacore::ClusterState| {
        evaluate(
            &topology,
            state,
            &policy,
            &Request {
                action: Action::Upgrade,
                target: "m1",
                requester: Some("latency-test"),
            },
            jiff::Timestamp::now(),
        )
        .unwrap()
    };

    let t = Instant::now();
    let state = observer.observe().await;
    let observed_in = t.elapsed();
    let lat = state.etcd_latency.clone().expect("observed");
    println!("{}", serde_json::to_string_pretty(&lat).unwrap());
    let m2 = lat.members.iter().find(|m| m.name == slow).unwrap();
    assert!(
        m2.wal_fsync_p99_micros.unwrap() >= 40_000,
        "m2 fsyncs slowly: {m2:?}"
    );
    let v = gate(&state);
    let f = v
        .findings
        .iter()
        .find(|f| f.rule == "etcd-latency" && f.severity == Severity::Deny)
        .unwrap_or_else(|| panic!("etcd-latency denies: {:#?}", v.findings));
    println!("denied: {}", f.message);
    assert!(
        f.message.contains("m2's WAL fsync p99 is "),
        "{}",
        f.message
    );
    assert!(f.message.contains("(at most 35ms)"), "{}", f.message);
    assert!(
        !f.message.contains("m1's") && !f.message.contains("m3's"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("fix: give etcd a faster"),
        "{}",
        f.message
    );
    assert!(observed_in >= Duration::from_secs(3), "{observed_in:?}");

    // strace detached (SIGINT: it detaches from every thread and exits):
    // m2 fsyncs at the disk's speed again.
    strace.detach();
    let t = Instant::now();
    // The figures kept from the last observation are younger than the
    // window: each observation reads afresh and waits the window. This
    // machine's disk is shared with other builds: a window in which it
    // stalls is judged slow too (rightly), so up to four are tried.
    let mut tries = Vec::new();
    for _ in 0..4 {
        let state = observer.observe().await;
        let lat = state.etcd_latency.clone().expect("observed");
        let v = gate(&state);
        let mine: Vec<_> = v
            .findings
            .into_iter()
            .filter(|f| f.rule == "etcd-latency")
            .collect();
        let passed = mine.iter().all(|f| f.severity == Severity::Pass);
        for m in &lat.members {
            assert!(m.error.is_none(), "{m:?}");
        }
        tries.push((lat, mine));
        if passed {
            break;
        }
    }
    println!(
        "after strace detached: {} window(s), {:.1} s: {:#?}",
        tries.len(),
        t.elapsed().as_secs_f64(),
        tries.last().unwrap().1
    );
    assert!(
        tries
            .last()
            .unwrap()
            .1
            .iter()
            .all(|f| f.severity == Severity::Pass),
        "etcd-latency passes once m2 is fast again: {tries:#?}"
    );
    let (ok, failed) = writes.stop();
    println!("writes: {ok} acknowledged, {failed} failed");
    println!(
        "etcd-latency lab: {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
}
