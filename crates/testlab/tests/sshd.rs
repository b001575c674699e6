//! The sshd fixture against OpenSSH's own client: it starts, accepts the
//! authorized key, presents the host key it reports, and stops with its
//! sessions.

use std::process::Command;
use std::time::Duration;

use testlab::sshd::{Sshd, SshdSpec, client_key, loopback_addr, sshd_binary};

#[test]
fn openssh_client_logs_in_with_the_authorized_key_and_checks_the_host_key() {
    if sshd_binary().is_none() {
        testlab::skip::skip(
            "sshd fixture",
            "/usr/sbin/sshd missing (install openssh-server)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = client_key(dir.path(), "ed25519", None).unwrap();
    let mut spec = SshdSpec::new(
        loopback_addr().unwrap(),
        dir.path().join("sshd"),
        vec![public],
    );
    spec.set_env = vec![("LAB_HOST".into(), "h1 with space".into())];
    let mut sshd = Sshd::start(&spec, Duration::from_secs(10)).unwrap();
    assert!(sshd.banner().unwrap().starts_with("SSH-2.0-OpenSSH"));
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let ssh = |cmd: &str| {
        Command::new("ssh")
            .arg("-i")
            .arg(&key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .arg("-p")
            .arg(sshd.addr().port().to_string())
            .arg(format!("root@{}", sshd.addr().ip()))
            .arg(cmd)
            .output()
            .unwrap()
    };
    let out = ssh("echo hello; echo \"$LAB_HOST\"");
    assert!(
        out.status.success(),
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log_tail(20)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nh1 with space\n"
    );

    // Another host key under the same name is refused by OpenSSH.
    let other = dir.path().join("other");
    let (_k, other_public) = client_key(&other, "ed25519", None).unwrap();
    let fields: Vec<&str> = other_public.split_whitespace().collect();
    let host = sshd
        .known_hosts_line()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&kh, format!("{host} {} {}\n", fields[0], fields[1])).unwrap();
    let out = ssh("true");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"));

    let pid = sshd.pid().unwrap();
    sshd.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // A zombie would have been reaped by wait(); the pid must be gone.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_err()
        }
    );
    assert!(sshd.banner().is_none(), "sshd still answers after stop");
}

#[test]
fn reusing_a_host_key_presents_the_same_key() {
    if sshd_binary().is_none() {
        testlab::skip::skip(
            "sshd fixture",
            "/usr/sbin/sshd missing (install openssh-server)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Sshd::start(
        &SshdSpec::new(loopback_addr().unwrap(), dir.path().join("a"), vec![]),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut spec = SshdSpec::new(loopback_addr().unwrap(), dir.path().join("b"), vec![]);
    spec.host_key = Some(a.host_key_path().to_path_buf());
    let b = Sshd::start(&spec, Duration::from_secs(10)).unwrap();
    assert_eq!(a.host_public_key(), b.host_public_key());
    assert!(a.host_public_key().starts_with("ssh-ed25519 AAAA"));
    assert_ne!(a.addr(), b.addr());
    let c = Sshd::start(
        &SshdSpec::new(loopback_addr().unwrap(), dir.path().join("c"), vec![]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_ne!(a.host_public_key(), c.host_public_key());
}
