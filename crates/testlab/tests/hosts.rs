//! Lab hosts behave like separate machines: their own address, files,
//! processes, sshd host key and power; and nothing of a lab survives it,
//! whether it is dropped or its process is SIGKILLed.
//!
//! `sigkill_helper` and `fallback_helper` are `#[ignore]`d: the tests
//! below run them in a child process of this test binary.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testlab::host::{HOST_MARKER, Host, HostLab, MARKER, marked_processes};

fn show(o: &Output) -> String {
    format!(
        "{}; stdout {:?}; stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A TCP listener inside the host on `port` (all addresses) that answers
/// every connection with the host's name: Perl, which Debian always has.
fn listener_argv(port: u16) -> Vec<String> {
    vec![
        "perl".into(),
        "-MIO::Socket::INET".into(),
        "-e".into(),
        format!(
            "my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => {port}, Listen => 16, ReuseAddr => 1) or die $!; chomp(my $n = `hostname`); while (my $c = $s->accept) {{ print $c \"$n\\n\"; close $c }}"
        ),
    ]
}

fn start_listener(h: &mut Host, port: u16) {
    let argv = listener_argv(port);
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    h.add_process_service("listener", &a, &[]).unwrap();
    h.wait_port(port, Duration::from_secs(10)).unwrap();
}

/// What a connection to `addr:port` reads, or None when it does not
/// connect within 1 s.
fn greet(addr: std::net::Ipv4Addr, port: u16) -> Option<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(addr.into(), port),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.trim().to_string())
}

fn net_ns(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// Every process whose network namespace is `ns`.
fn processes_in(ns: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| net_ns(*p).as_deref() == Some(ns))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) {
    let until = Instant::now() + timeout;
    loop {
        let Some(left) = f() else { return };
        assert!(
            Instant::now() < until,
            "{what} within {timeout:?}; still: {left}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leftovers(marker: &str, iface: &str) -> Option<String> {
    let procs: Vec<String> = marked_processes(MARKER)
        .into_iter()
        .filter(|(_, v)| v == marker)
        .map(|(p, v)| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            format!("{p} {} ({MARKER}={v})", comm.trim())
        })
        .collect();
    let link = Path::new("/sys/class/net").join(iface).exists();
    (!procs.is_empty() || link)
        .then(|| format!("processes {procs:?}, interface {iface} present: {link}"))
}

#[test]
fn two_hosts_have_their_own_address_files_and_processes() {
    let lab = HostLab::start_for("two_hosts");
    if !lab.isolated_or_skip("two_hosts_have_their_own_address_files_and_processes") {
        return;
    }
    let t = Instant::now();
    let mut h1 = lab.add_host("h1").unwrap();
    println!("a host booted in {} ms", t.elapsed().as_millis());
    let h2 = lab.add_host("h2").unwrap();
    assert_ne!(h1.addr(), h2.addr());
    assert!(lab.subnet().starts_with("198.1"), "{}", lab.subnet());

    // Hostname and address, as the host itself sees them.
    for h in [&h1, &h2] {
        let o = h
            .exec(&["sh", "-c", "hostname; ip -4 -o address show dev eth0"])
            .unwrap();
        assert!(o.status.success(), "{}", show(&o));
        let text = stdout(&o);
        assert!(text.starts_with(h.name()), "{text}");
        assert!(text.contains(&format!("inet {}/24", h.addr())), "{text}");
        assert!(
            !text.contains(&other(h, &h1, &h2).addr().to_string()),
            "{text}"
        );
    }

    // Files: a private path written inside h1 is visible to the test
    // through h1.path(), absent on h2 and on the machine itself.
    let absent_before = !Path::new("/etc/kubernetes/lab-x").exists();
    let o = h1
        .exec(&["sh", "-c", "echo from-h1 > /etc/kubernetes/lab-x"])
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(h1.path("/etc/kubernetes/lab-x")).unwrap(),
        "from-h1\n"
    );
    let o = h2.exec(&["test", "-e", "/etc/kubernetes/lab-x"]).unwrap();
    assert!(!o.status.success(), "h2 sees h1's file: {}", show(&o));
    assert!(!h2.path("/etc/kubernetes/lab-x").exists());
    if absent_before {
        assert!(
            !Path::new("/etc/kubernetes/lab-x").exists(),
            "the file leaked to the machine"
        );
    }
    // The other way: the test puts a file in h2's private path.
    std::fs::write(h2.path("/cf/conf/config.xml"), "<pfsense/>\n").unwrap();
    assert_eq!(
        h2.exec_ok(&["cat", "/cf/conf/config.xml"]).unwrap(),
        "<pfsense/>\n"
    );
    let o = h1.exec(&["test", "-e", "/cf/conf/config.xml"]).unwrap();
    assert!(!o.status.success(), "h1 sees h2's config.xml");
    // Outside the private paths, each host's root is its own overlay.
    h1.exec_ok(&["sh", "-c", "echo h1 > /etc/lab-overlay-probe"])
        .unwrap();
    assert!(
        !Path::new("/etc/lab-overlay-probe").exists(),
        "an overlay write leaked"
    );
    assert!(
        !h2.exec(&["test", "-e", "/etc/lab-overlay-probe"])
            .unwrap()
            .status
            .success()
    );

    // Processes: each host sees only its own; PID 1 is its init.
    let ps = |h: &Host| {
        h.exec_ok(&[
            "sh",
            "-c",
            "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done",
        ])
        .unwrap()
    };
    start_listener(&mut h1, 8080);
    let p1 = ps(&h1);
    let p2 = ps(&h2);
    assert!(p1.lines().any(|l| l == "1 hacli-host-init"), "{p1}");
    assert!(
        p1.contains("perl"),
        "h1's listener is not among its processes: {p1}"
    );
    assert!(
        !p2.contains("perl\n") || p2.lines().all(|l| !l.ends_with(" perl")),
        "{p2}"
    );
    assert!(p2.lines().count() < 10, "h2 sees foreign processes: {p2}");

    // A Unix socket bound inside the host (as HAProxy's runtime socket at
    // /tmp/haproxy.socket) is reached from the test through path().
    let _unix = testlab::host::KillOnDrop(
        h1.spawn(
            &[
                "perl",
                "-MIO::Socket::UNIX",
                "-e",
                "my $s = IO::Socket::UNIX->new(Local => '/tmp/lab.sock', Listen => 4) or die $!; while (my $c = $s->accept) { print $c \"unix-h1\\n\"; close $c }",
            ],
            &[],
        )
        .unwrap(),
    );
    let sock = h1.path("/tmp/lab.sock");
    wait_until("the host's Unix socket", Duration::from_secs(5), || {
        (!sock.exists()).then(|| sock.display().to_string())
    });
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::os::unix::net::UnixStream::connect(&sock).unwrap(),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, "unix-h1\n");

    // Killing what spawn() returned kills the process inside the host.
    let mut sleeper = h2.spawn(&["sleep", "777"], &[]).unwrap();
    let count = |h: &Host| {
        h.exec_ok(&["sh", "-c", "grep -l '^sleep' /proc/[0-9]*/comm | wc -l"])
            .unwrap()
            .trim()
            .to_string()
    };
    wait_until(
        "the spawned sleep runs in h2",
        Duration::from_secs(5),
        || (count(&h2) != "1").then(|| count(&h2)),
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    wait_until(
        "the spawned sleep gone from h2",
        Duration::from_secs(5),
        || (count(&h2) != "0").then(|| count(&h2)),
    );

    // Network: the test reaches h1's listener at h1's address, not h2's;
    // h2 reaches h1 across the lab's switch.
    assert_eq!(greet(h1.addr(), 8080).as_deref(), Some("h1"));
    assert_eq!(greet(h2.addr(), 8080), None);
    let probe = format!(
        "use IO::Socket::INET; my $c = IO::Socket::INET->new(PeerAddr => '{}', PeerPort => 8080, Timeout => 3) or die \"connect: $!\"; print scalar <$c>;",
        h1.addr()
    );
    assert_eq!(h2.exec_ok(&["perl", "-e", &probe]).unwrap().trim(), "h1");
    // ... and the test process at the gateway.
    let o = h2
        .exec(&["ip", "route", "get", &lab.gateway().to_string()])
        .unwrap();
    assert!(stdout(&o).contains("dev eth0"), "{}", show(&o));

    // An extra address (the pfSense VIP alias) answers from the test.
    let vip = std::net::Ipv4Addr::from(u32::from(h1.addr()) + 100);
    h1.add_address(&format!("{vip}/32")).unwrap();
    assert_eq!(greet(vip, 8080).as_deref(), Some("h1"));
}

#[test]
fn hosts_and_labs_can_move_between_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Host>();
    send::<HostLab>();
    sync::<HostLab>();
}

fn other<'a>(h: &Host, a: &'a Host, b: &'a Host) -> &'a Host {
    if h.name() == a.name() { b } else { a }
}

#[test]
fn power_off_silences_the_host_and_power_on_brings_it_back_with_its_files() {
    let lab = HostLab::start_for("power");
    if !lab
        .isolated_or_skip("power_off_silences_the_host_and_power_on_brings_it_back_with_its_files")
    {
        return;
    }
    let mut h = lab.add_host("p1").unwrap();
    let peer = lab.add_host("p2").unwrap();
    start_listener(&mut h, 8080);
    std::fs::write(h.path("/var/lib/etcd/member"), "data").unwrap();
    h.exec_ok(&["sh", "-c", "echo kept > /etc/lab-overlay-kept"])
        .unwrap();
    // A stray process (not a service) must die with the host too.
    let mut stray = h.spawn(&["sleep", "1000"], &[]).unwrap();
    let ns = net_ns(h.pid().unwrap() as i32).unwrap();
    assert_eq!(greet(h.addr(), 8080).as_deref(), Some("p1"));

    let t = Instant::now();
    h.power_off().unwrap();
    let off_ms = t.elapsed().as_millis();
    assert!(!h.is_on());
    assert_eq!(
        greet(h.addr(), 8080),
        None,
        "the host still answers after power off"
    );
    assert!(!h.answers(22, Duration::from_millis(500)));
    assert!(
        h.exec(&["true"]).is_err(),
        "exec on a powered-off host must fail"
    );
    wait_until("the host's processes gone", Duration::from_secs(5), || {
        let left = processes_in(&ns);
        (!left.is_empty()).then(|| format!("{left:?}"))
    });
    let st = stray.wait().unwrap();
    assert!(!st.success(), "the stray process ended {st}");
    // Its peer is untouched.
    assert!(peer.exec_ok(&["true"]).is_ok());

    let t = Instant::now();
    h.power_on().unwrap();
    h.wait_port(8080, Duration::from_secs(10)).unwrap();
    let on_ms = t.elapsed().as_millis();
    println!("power off took {off_ms} ms, power on until the service answered {on_ms} ms");
    assert_eq!(h.boots(), 2);
    assert_eq!(greet(h.addr(), 8080).as_deref(), Some("p1"));
    assert_eq!(h.exec_ok(&["cat", "/var/lib/etcd/member"]).unwrap(), "data");
    assert_eq!(
        h.exec_ok(&["cat", "/etc/lab-overlay-kept"]).unwrap(),
        "kept\n"
    );
    // The peer reaches it again at once (the same MAC: no stale neighbour).
    let probe = format!(
        "use IO::Socket::INET; my $c = IO::Socket::INET->new(PeerAddr => '{}', PeerPort => 8080, Timeout => 3) or die \"connect: $!\"; print scalar <$c>;",
        h.addr()
    );
    assert_eq!(peer.exec_ok(&["perl", "-e", &probe]).unwrap().trim(), "p1");

    h.reboot().unwrap();
    assert_eq!(h.boots(), 3);
    h.wait_port(8080, Duration::from_secs(10)).unwrap();
    assert_eq!(greet(h.addr(), 8080).as_deref(), Some("p1"));
}

fn ssh_client() -> bool {
    Command::new("ssh").arg("-V").output().is_ok() && testlab::sshd::sshd_binary().is_some()
}

fn ssh(key: &Path, known_hosts: &Path, addr: std::net::Ipv4Addr, cmd: &str) -> Output {
    ssh_within(key, known_hosts, addr, cmd, 5)
}

fn ssh_within(
    key: &Path,
    known_hosts: &Path,
    addr: std::net::Ipv4Addr,
    cmd: &str,
    connect_timeout_s: u32,
) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!("ConnectTimeout={connect_timeout_s}"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg(format!("root@{addr}"))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn each_host_runs_sshd_with_its_own_host_key_across_reboots() {
    if !ssh_client() {
        testlab::skip::skip(
            "each_host_runs_sshd",
            "ssh or sshd missing (install openssh-client, openssh-server)",
        );
        return;
    }
    let lab = HostLab::start_for("sshd");
    if !lab.isolated_or_skip("each_host_runs_sshd_with_its_own_host_key_across_reboots") {
        return;
    }
    let (key, public) =
        testlab::sshd::client_key(&lab.dir().join("client"), "ed25519", None).unwrap();
    let mut h1 = lab.add_host("s1").unwrap();
    let mut h2 = lab.add_host("s2").unwrap();
    let t = Instant::now();
    h1.start_sshd(vec![public.clone()]).unwrap();
    println!(
        "sshd answered {} ms after start_sshd",
        t.elapsed().as_millis()
    );
    h2.start_sshd(vec![public.clone()]).unwrap();
    let k1 = h1.ssh_host_public_key().unwrap().to_string();
    let k2 = h2.ssh_host_public_key().unwrap().to_string();
    assert_ne!(k1, k2, "two hosts share a host key");

    let kh = lab.dir().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "{}\n{}\n",
            h1.known_hosts_line().unwrap(),
            h2.known_hosts_line().unwrap()
        ),
    )
    .unwrap();
    for h in [&h1, &h2] {
        let o = ssh(
            &key,
            &kh,
            h.addr(),
            "hostname; ls /etc/kubernetes; cat /proc/1/comm",
        );
        assert!(o.status.success(), "{}: {}", h.name(), show(&o));
        let text = stdout(&o);
        assert!(text.starts_with(h.name()), "{text}");
        assert!(text.ends_with("hacli-host-init"), "{text}");
    }
    // The real client refuses h2 when known_hosts holds h1's key for it.
    let wrong = lab.dir().join("known_hosts.wrong");
    std::fs::write(&wrong, format!("{} {k1}\n", h2.addr())).unwrap();
    let o = ssh(&key, &wrong, h2.addr(), "true");
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        show(&o)
    );
    // ssh-keyscan sees the key we were told.
    let o = Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519"])
        .arg(h1.addr().to_string())
        .output()
        .unwrap();
    assert!(stdout(&o).contains(&k1), "{}", show(&o));

    // Power off: sshd stops answering; power on: it is back, same key.
    h1.power_off().unwrap();
    assert!(!h1.answers(22, Duration::from_secs(1)));
    let o = ssh_within(&key, &kh, h1.addr(), "true", 2);
    assert!(
        !o.status.success(),
        "ssh to a powered-off host: {}",
        show(&o)
    );
    let t = Instant::now();
    h1.power_on().unwrap();
    println!(
        "power on until sshd answered: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(h1.ssh_host_public_key(), Some(k1.as_str()));
    let o = ssh(&key, &kh, h1.addr(), "hostname");
    assert!(o.status.success(), "after power on: {}", show(&o));
    assert_eq!(stdout(&o), "s1");
    h2.reboot().unwrap();
    let o = ssh(&key, &kh, h2.addr(), "hostname");
    assert!(o.status.success(), "after reboot: {}", show(&o));
    assert_eq!(stdout(&o), "s2");
}

#[test]
fn nothing_is_left_after_the_lab_is_dropped() {
    let lab = HostLab::start_for("drop");
    if !lab.isolated_or_skip("nothing_is_left_after_the_lab_is_dropped") {
        return;
    }
    let marker = lab.marker().to_string();
    let iface = lab.interface().unwrap();
    let dir = lab.dir().to_path_buf();
    let mut h1 = lab.add_host("d1").unwrap();
    let h2 = lab.add_host("d2").unwrap();
    start_listener(&mut h1, 8080);
    let mut stray = h2.spawn(&["sleep", "1000"], &[]).unwrap();
    let namespaces = [
        net_ns(h1.pid().unwrap() as i32).unwrap(),
        net_ns(h2.pid().unwrap() as i32).unwrap(),
    ];
    assert!(
        leftovers(&marker, &iface).is_some(),
        "the lab shows no marked process"
    );
    drop(h1);
    drop(h2);
    drop(lab);
    let st = stray.wait().unwrap();
    assert!(!st.success(), "the stray process ended {st}");
    wait_until(
        "no process, interface or namespace of the dropped lab",
        Duration::from_secs(5),
        || {
            let mut left = leftovers(&marker, &iface).unwrap_or_default();
            for ns in &namespaces {
                let p = processes_in(ns);
                if !p.is_empty() {
                    left.push_str(&format!(" namespace {} held by {p:?}", ns.display()));
                }
            }
            (!left.is_empty()).then_some(left)
        },
    );
    assert!(
        !dir.exists(),
        "the lab's directory {} is left",
        dir.display()
    );
}

/// Run by `a_sigkilled_lab_leaves_nothing`: a lab with two hosts, a service
/// and a stray process; prints its marker and interface, then waits to be
/// killed.
#[test]
#[ignore = "a helper: a_sigkilled_lab_leaves_nothing runs it in a child process"]
fn sigkill_helper() {
    if std::env::var_os("HACLI_TESTLAB_SIGKILL_HELPER").is_none() {
        return;
    }
    let lab = HostLab::start().unwrap();
    let mut h1 = lab.add_host("k1").unwrap();
    let h2 = lab.add_host("k2").unwrap();
    start_listener(&mut h1, 8080);
    let _stray = testlab::host::KillOnDrop(h2.spawn(&["sleep", "1000"], &[]).unwrap());
    let ns = std::fs::read_link(format!("/proc/{}/ns/net", h2.pid().unwrap())).unwrap();
    println!(
        "READY {} {} {} {} {}",
        lab.marker(),
        lab.interface().unwrap_or_default(),
        lab.dir().display(),
        ns.display(),
        lab.isolated()
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_sigkilled_lab_leaves_nothing_and_its_leftovers_would_be_swept() {
    let probe = HostLab::start_for("sigkill");
    if !probe.isolated_or_skip("a_sigkilled_lab_leaves_nothing_and_its_leftovers_would_be_swept") {
        return;
    }
    drop(probe);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HACLI_TESTLAB_SIGKILL_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines
            .next()
            .expect("the helper printed READY")
            .expect("read the helper's output");
        if let Some(i) = line.find("READY ") {
            break line[i + "READY ".len()..].to_string();
        }
    };
    let f: Vec<&str> = ready.split(' ').collect();
    let (marker, iface, dir, ns) = (
        f[0].to_string(),
        f[1].to_string(),
        f[2],
        PathBuf::from(f[3]),
    );
    assert_eq!(f[4], "true");
    assert!(
        leftovers(&marker, &iface).is_some(),
        "the helper's lab is not running"
    );
    assert!(!processes_in(&ns).is_empty());

    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    wait_until(
        "no process or interface of the SIGKILLed lab",
        Duration::from_secs(5),
        || {
            let mut left = leftovers(&marker, &iface).unwrap_or_default();
            let p = processes_in(&ns);
            if !p.is_empty() {
                left.push_str(&format!(" namespace held by {p:?}"));
            }
            (!left.is_empty()).then_some(left)
        },
    );
    println!(
        "after SIGKILL, the lab's processes, namespaces and {iface} were gone in {} ms",
        t.elapsed().as_millis()
    );
    // Only files are left behind (the temp dir): no kernel state. The next
    // lab to start sweeps them.
    let _next = HostLab::start().unwrap();
    assert!(
        !Path::new(dir).exists(),
        "the dead lab's directory {dir} was not swept"
    );
}

/// Run by `the_loopback_fallback_says_so_and_still_separates_hosts` with
/// `HACLI_TESTLAB_NO_NETNS=1`.
#[test]
#[ignore = "a helper: the_loopback_fallback_says_so_and_still_separates_hosts runs it in a child process"]
fn fallback_helper() {
    if std::env::var_os("HACLI_TESTLAB_FALLBACK_HELPER").is_none() {
        return;
    }
    let lab = HostLab::start().unwrap();
    assert!(!lab.isolated());
    assert!(!lab.isolated_or_skip("fallback_helper"));
    let mut h1 = lab.add_host("f1").unwrap();
    let h2 = lab.add_host("f2").unwrap();
    assert!(h1.addr().is_loopback() && h2.addr().is_loopback());
    assert_ne!(h1.addr(), h2.addr());
    std::fs::write(h1.path("/etc/kubernetes/x"), "one").unwrap();
    assert!(!h2.path("/etc/kubernetes/x").exists());
    // No isolation, but distinct addresses: a listener on h1's address.
    let argv = [
        "perl".to_string(),
        "-MIO::Socket::INET".into(),
        "-e".into(),
        format!(
            "my $s = IO::Socket::INET->new(LocalAddr => '{}', LocalPort => 8080, Listen => 4, ReuseAddr => 1) or die $!; while (my $c = $s->accept) {{ print $c \"f1\\n\"; close $c }}",
            h1.addr()
        ),
    ];
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    h1.add_process_service("listener", &a, &[]).unwrap();
    h1.wait_port(8080, Duration::from_secs(10)).unwrap();
    assert_eq!(greet(h1.addr(), 8080).as_deref(), Some("f1"));
    assert_eq!(greet(h2.addr(), 8080), None);
    h1.power_off().unwrap();
    assert_eq!(greet(h1.addr(), 8080), None);
    let mine = format!("{}.f1", lab.marker());
    assert!(
        marked_processes(HOST_MARKER)
            .iter()
            .all(|(_, v)| *v != mine)
    );
    h1.power_on().unwrap();
    h1.wait_port(8080, Duration::from_secs(10)).unwrap();
    // sshd on the fallback host's own loopback address.
    if ssh_client() {
        let (_, public) =
            testlab::sshd::client_key(&lab.dir().join("client"), "ed25519", None).unwrap();
        let mut h2 = h2;
        h2.start_sshd(vec![public]).unwrap();
        let port = h2.ssh_port().unwrap();
        assert!(h2.answers(port, Duration::from_secs(1)));
        assert!(!h1.answers(port, Duration::from_millis(300)));
        h2.power_off().unwrap();
        assert!(!h2.answers(port, Duration::from_millis(300)));
    }
    println!("FALLBACK-OK");
}

/// `fallback_helper` in a child process without network namespaces, with
/// `HACLI_REQUIRE_LABS` as given and its skips listed in `list`.
fn run_fallback_helper(require: Option<&str>, list: &Path) -> std::process::Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "fallback_helper",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HACLI_TESTLAB_FALLBACK_HELPER", "1")
    .env(testlab::host::NO_NETNS, "1")
    .env(testlab::skip::SKIPPED_TESTS, list)
    .env_remove(testlab::skip::REQUIRE_LABS);
    if let Some(v) = require {
        c.env(testlab::skip::REQUIRE_LABS, v);
    }
    c.output().unwrap()
}

#[test]
fn the_loopback_fallback_says_so_and_still_separates_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped-tests.txt");
    let o = run_fallback_helper(None, &list);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text.contains("NO ISOLATION"),
        "the fallback is not said: {text}"
    );
    assert!(text.contains("skipped: fallback_helper"), "{text}");
    assert!(text.contains("FALLBACK-OK"), "{text}");
    // The skip is listed where the test command prints it from.
    let listed = std::fs::read_to_string(&list).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with("skipped: fallback_helper: needs isolated lab hosts"),
        "{listed}"
    );
}

#[test]
fn under_require_labs_a_skip_fails_the_test_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped-tests.txt");
    let o = run_fallback_helper(Some("1"), &list);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "a skip passed: {text}");
    assert!(
        text.contains("fallback_helper: would be skipped, but HACLI_REQUIRE_LABS=1 requires it to run: needs isolated lab hosts"),
        "{text}"
    );
    assert!(!text.contains("FALLBACK-OK"), "{text}");
    assert!(!list.exists(), "a failure is not listed as a skip");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let lab = HostLab::start_for("bad_input");
    let e = lab.add_host("../x").unwrap_err().to_string();
    assert!(e.contains("host name"), "{e}");
    let e = lab
        .add_host_with(testlab::host::HostSpec {
            name: "b1".into(),
            addr: Some("192.0.2.5".parse().unwrap()),
            private_paths: vec![],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a host address of the lab's network"), "{e}");
    let e = lab
        .add_host_with(testlab::host::HostSpec {
            name: "b2".into(),
            addr: None,
            private_paths: vec!["/etc/../root".into()],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("private path"), "{e}");
    let h = lab
        .add_host_with(testlab::host::HostSpec {
            name: "b3".into(),
            addr: Some(std::net::Ipv4Addr::from(u32::from(lab.gateway()) + 50)),
            private_paths: vec!["/opt/lab".into()],
        })
        .unwrap();
    assert_eq!(
        h.addr(),
        std::net::Ipv4Addr::from(u32::from(lab.gateway()) + 50)
    );
    std::fs::write(h.path("/opt/lab/f"), "x").unwrap();
    if lab.isolated() {
        assert_eq!(h.exec_ok(&["cat", "/opt/lab/f"]).unwrap(), "x");
    }
    let e = lab.add_host("b3").unwrap_err().to_string();
    assert!(e.contains("exists"), "{e}");
    let e = lab
        .add_host_with(testlab::host::HostSpec {
            name: "b4".into(),
            addr: Some(h.addr()),
            private_paths: vec![],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("is host b3's"), "{e}");
    let e = h.try_path("/etc/passwd").unwrap_err().to_string();
    assert!(e.contains("not under one of its private paths"), "{e}");
    let e = h.try_path("/tmp/../etc/passwd").unwrap_err().to_string();
    assert!(e.contains("not under one of its private paths"), "{e}");
    // A dropped host frees its name and address: a new machine takes them,
    // with fresh files.
    let addr = h.addr();
    drop(h);
    let h = lab
        .add_host_with(testlab::host::HostSpec {
            name: "b3".into(),
            addr: Some(addr),
            private_paths: vec!["/opt/lab".into()],
        })
        .unwrap();
    assert!(
        !h.path("/opt/lab/f").exists(),
        "a new machine kept the old one's files"
    );
}

#[test]
fn leftovers_of_a_dead_lab_are_swept_at_start() {
    let lab = HostLab::start_for("sweep");
    if !lab.isolated_or_skip("leftovers_of_a_dead_lab_are_swept_at_start") {
        return;
    }
    // A network number far from the ones this process allocates (they
    // start at pid % 512 and go up), which no lab holds: a dead lab's.
    let n = (lab.number() + 256) % 512;
    drop(lab);
    let iface = testlab::host::interface_name(n);
    let o = Command::new("ip")
        .args(["link", "add", &iface, "type", "veth", "peer", "name"])
        .arg(format!("{iface}p"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    // A marked process whose lab (pid 999999999) is dead; setpriv makes
    // sure it dies with this test, swept or not.
    let marker = format!("{n}.999999999");
    let mut stale = Command::new("/usr/bin/setpriv")
        .args(["--pdeathsig", "KILL", "sleep", "1000"])
        .env(MARKER, &marker)
        .spawn()
        .unwrap();
    wait_until("the stale process execs", Duration::from_secs(5), || {
        (!marked_processes(MARKER).iter().any(|(_, v)| *v == marker)).then(|| "not yet".into())
    });
    let _lab = HostLab::start().unwrap();
    wait_until(
        "the stale process and interface swept",
        Duration::from_secs(3),
        || {
            let alive = matches!(stale.try_wait(), Ok(None));
            let link = Path::new("/sys/class/net").join(&iface).exists();
            (alive || link).then(|| format!("process alive {alive}, {iface} present {link}"))
        },
    );
    let _ = Command::new("ip").args(["link", "del", &iface]).output();
}
