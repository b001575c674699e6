//! The pfSense stand-in against the entry points hacli's load-balancer
//! backend uses: PHP (`config.inc`, `write_config`, the HAProxy package's
//! `haproxy_check_and_run`) driving a real HAProxy, and the pfrest API.
//! Each test gets its own `127.X.Y.1` (a range the loopback lab does not
//! use) and its own root directory.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testlab::pfsense::{Pfsense, PfsenseOptions};

static N: AtomicU8 = AtomicU8::new(0);

/// `127.(250..254).(1..).1`: the loopback lab takes 127.20-219, lab hosts
/// without namespaces 127.240-241.
fn test_ip() -> IpAddr {
    let x = 250 + (std::process::id() % 5) as u8;
    let y = 1 + N.fetch_add(1, Ordering::SeqCst);
    IpAddr::V4(Ipv4Addr::new(127, x, y, 1))
}

fn start(test: &str, opts: PfsenseOptions) -> Option<(Pfsense, tempfile::TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix("pfsense-standin-")
        .tempdir()
        .expect("tempdir");
    let ip = test_ip();
    let p = Pfsense::start_or_skip(test, dir.path(), ip, opts)?;
    Some((p, dir))
}

/// A TCP echo server (the seed's `imap1`); it echoes the PROXY v2 header too.
fn echo_server(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind echo");
    let addr = l.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn echo_roundtrip(s: &mut TcpStream, payload: &str) {
    s.write_all(payload.as_bytes())
        .expect("write through HAProxy");
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1024];
    while Instant::now() < until {
        let n = s.read(&mut buf).expect("read through HAProxy");
        assert!(n > 0, "the connection through HAProxy closed");
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains(payload) {
            return;
        }
    }
    panic!("no echo of {payload:?} through HAProxy");
}

fn stat_status(p: &Pfsense, proxy: &str, server: &str) -> Option<String> {
    p.haproxy_stat()
        .ok()?
        .into_iter()
        .find(|r| r["pxname"] == proxy && r["svname"] == server)
        .map(|r| r["status"].clone())
}

fn wait_status(p: &Pfsense, proxy: &str, server: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let got = stat_status(p, proxy, server);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{proxy}/{server} is {got:?}, not {want}; haproxy.cfg:\n{}",
            p.haproxy_cfg()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A DNS query for `name`'s A records (a test client, UDP): (rcode, addresses).
fn dns_a(server: SocketAddr, name: &str) -> (u8, Vec<Ipv4Addr>) {
    let mut q = vec![0x4a, 0x7e, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    let s = std::net::UdpSocket::bind(SocketAddr::new(server.ip(), 0)).expect("udp");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(&q, server).expect("send the query");
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).expect("a DNS answer");
    let r = &buf[..n];
    assert_eq!(&r[..2], &q[..2], "the answer's id");
    let rcode = r[3] & 0x0f;
    let answers = u16::from_be_bytes([r[6], r[7]]);
    let mut i = 12;
    while r[i] != 0 {
        i += 1 + r[i] as usize;
    }
    i += 5;
    let mut out = Vec::new();
    for _ in 0..answers {
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while r[i] != 0 {
                i += 1 + r[i] as usize;
            }
            i += 1;
        }
        let kind = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if kind == 1 && len == 4 {
            out.push(Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        }
        i += len;
    }
    (rcode, out)
}

/// The config without its <revision> block.
fn without_revision(xml: &str) -> String {
    let start = xml.find("\t<revision>").expect("a revision");
    let end = xml.find("\t</revision>\n").expect("a revision end") + "\t</revision>\n".len();
    format!("{}{}", &xml[..start], &xml[end..])
}

#[test]
fn seed_round_trips_and_its_haproxy_runs() {
    let Some((p, _dir)) = start(
        "seed_round_trips_and_its_haproxy_runs",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let before = p.config_xml();
    assert!(before.contains("<ha_pools>") && before.contains("send-proxy-v2"));

    // A write without changes is byte-stable apart from the revision.
    let out = p
        .php_json(
            "round trip",
            "<?php require_once('config.inc');\n$n = count(config_get_path('installedpackages/haproxy/ha_pools/item'));\n$one = config_get_path('unbound/hosts/0/aliases');\nwrite_config('hacli: round trip');\necho json_encode(array('pools' => $n, 'desc' => config_get_path('revision/description'), 'aliases' => $one));\n",
        )
        .expect("php");
    assert_eq!(out["pools"], json!(5), "{out}");
    assert_eq!(out["desc"], json!("(system): hacli: round trip"));
    assert_eq!(out["aliases"], json!(""), "an empty element parses as \"\"");
    let after = p.config_xml();
    assert_ne!(before, after, "the revision changes");
    assert_eq!(without_revision(&before), without_revision(&after));
    assert!(after.contains("<description><![CDATA[(system): hacli: round trip]]></description>"));
    // The previous file is kept as a backup revision, byte for byte.
    let backups = p.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), before);

    // A single <item> or <hosts> still parses as a list.
    let out = p
        .php_json(
            "list tags",
            "<?php require_once('config.inc');\n$imap = config_get_path('installedpackages/haproxy/ha_pools/item/1/ha_servers/item');\necho json_encode(array('imap' => array_keys($imap), 'name' => $imap[0]['name'], 'hosts' => count(config_get_path('unbound/hosts')), 'alias' => config_get_path('unbound/hosts/1/aliases/item/0/host')));\n",
        )
        .expect("php");
    assert_eq!(
        out,
        json!({"imap": [0], "name": "imap1", "hosts": 3, "alias": "smtp"})
    );

    // The rendered configuration passes the real `haproxy -c`.
    let cfg = p.path("/var/etc/haproxy/haproxy.cfg");
    let check = std::process::Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(&cfg)
        .output()
        .expect("haproxy -c");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = p.haproxy_cfg();
    assert!(text.contains(&format!(
        "stats socket {} level admin  expose-fd listeners",
        p.runtime_socket().display()
    )));
    for section in [
        "frontend mail-smtp\n",
        "frontend web-sni\n",
        "backend mail-smtp_ipvANY\n",
        "backend mail-imaps_ipvANY\n",
        "backend wiki_ipvANY\n",
        "backend git_ipvANY\n",
    ] {
        assert!(text.contains(section), "{section:?} missing:\n{text}");
    }
    // Only pools an active frontend uses; an inactive server is not written.
    assert!(!text.contains("portal"), "{text}");
    assert!(!text.contains("git2"), "{text}");
    assert!(text.contains("\tacl\t\t\tsni_wiki\treq.ssl_sni -i wiki.lab.example\n"));
    assert!(text.contains("\tuse_backend git_ipvANY  if  sni_git \n"));
    assert!(
        text.contains(" backup weight 10 fall 3 rise 2 send-proxy-v2\n"),
        "{text}"
    );
    assert!(text.contains("\toption\t\t\tsmtpchk EHLO lab.example\n"));

    // What config.xml says (read by pfSense's own PHP), the running HAProxy
    // does, as its runtime API tells (not the text the stand-in wrote).
    judged_by_the_running_haproxy(&p);

    // HAProxy runs with its runtime socket and the seed's frontends listen.
    assert!(!p.haproxy_pids().is_empty());
    let stat = p.haproxy_stat().expect("show stat");
    assert!(
        stat.iter()
            .any(|r| r["pxname"] == "web-sni" && r["svname"] == "FRONTEND")
    );
    let fe = p.seed_frontends();
    for a in [fe.smtp, fe.imaps, fe.sni] {
        TcpStream::connect_timeout(&a, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("the seed frontend {a} does not listen: {e}"));
    }
    // The seed's DNS host overrides answer.
    assert_eq!(
        p.resolve("nas.lab.example"),
        vec![
            "198.18.0.20".parse::<IpAddr>().unwrap(),
            "198.18.0.21".parse().unwrap()
        ]
    );
    assert_eq!(p.resolve("smtp.lab.example"), vec![p.addr()]);
    // And a real unbound answers them on the stand-in's address.
    match p.dns_addr() {
        Some(dns) => {
            let (rcode, mut ips) = dns_a(dns, "nas.lab.example");
            ips.sort();
            assert_eq!(
                (rcode, ips),
                (
                    0,
                    vec![Ipv4Addr::new(198, 18, 0, 20), Ipv4Addr::new(198, 18, 0, 21)]
                )
            );
            assert_eq!(
                dns_a(dns, "no-such-host.example.org").0,
                3,
                "NXDOMAIN: no recursion"
            );
        }
        None => testlab::skip::skip(
            "the pfSense stand-in's DNS answered by unbound",
            "unbound is not installed: resolve() only",
        ),
    }
}

/// config.xml's pools and servers, as pfSense's PHP reads them, against
/// the running HAProxy's `show backend`, `show servers state` and `show
/// stat`: the pools the active frontends use are backends and no other
/// pool is; each server not `inactive` is there with its address, port,
/// weight and role (backup or not), with the pool's fall and rise.
fn judged_by_the_running_haproxy(p: &Pfsense) {
    let servers = p
        .php_json(
            "the pools in config.xml",
            r#"<?php require_once('config.inc');
$used = array();
foreach (config_get_path('installedpackages/haproxy/ha_backends/item', array()) as $fe) {
    if ($fe['status'] == 'active') { $used[$fe['backend_serverpool']] = true; }
    foreach (($fe['a_actionitems']['item'] ?? array()) as $a) {
        if (!empty($a['use_backendbackend'])) { $used[$a['use_backendbackend']] = true; }
    }
}
$out = array('used' => array_keys($used), 'servers' => array(), 'pools' => array());
foreach (config_get_path('installedpackages/haproxy/ha_pools/item', array()) as $pool) {
    $out['pools'][] = $pool['name'];
    $adv = base64_decode($pool['advanced'] ?? '');
    foreach (($pool['ha_servers']['item'] ?? array()) as $s) {
        $out['servers'][] = array('pool' => $pool['name'], 'name' => $s['name'],
            'address' => $s['address'], 'port' => $s['port'], 'status' => $s['status'],
            'weight' => $s['weight'] ?? '', 'pool_advanced' => $adv);
    }
}
echo json_encode($out);
"#,
        )
        .expect("php");
    let used: std::collections::BTreeSet<String> = servers["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}_ipvANY", v.as_str().unwrap()))
        .collect();
    assert!(used.len() >= 4, "{servers}");
    // `show backend`: every used pool, and no pool no active frontend uses.
    let backends = p.haproxy_command("show backend").expect("show backend");
    let running: std::collections::BTreeSet<String> = backends
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .filter(|b| b.ends_with("_ipvANY"))
        .collect();
    assert_eq!(running, used, "show backend:\n{backends}");
    for pool in servers["pools"].as_array().unwrap() {
        let b = format!("{}_ipvANY", pool.as_str().unwrap());
        assert_eq!(used.contains(&b), running.contains(&b), "{b}");
    }
    let stat = p.haproxy_stat().expect("show stat");
    let mut checked = 0;
    for s in servers["servers"].as_array().unwrap() {
        let (pool, name) = (s["pool"].as_str().unwrap(), s["name"].as_str().unwrap());
        let backend = format!("{pool}_ipvANY");
        if !used.contains(&backend) {
            continue;
        }
        let row = stat
            .iter()
            .find(|r| r["pxname"] == backend && r["svname"] == name);
        if s["status"] == "inactive" {
            assert!(
                row.is_none(),
                "{backend}/{name} is inactive in config.xml, yet runs"
            );
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("{backend}/{name} is not in show stat"));
        // `show servers state BACKEND`: address and port as configured.
        let state = p
            .haproxy_command(&format!("show servers state {backend}"))
            .expect("show servers state");
        let fields: Vec<&str> = state
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some(name))
            .unwrap_or_else(|| panic!("{backend}/{name} in show servers state:\n{state}"))
            .split_whitespace()
            .collect();
        // be_id be_name srv_id srv_name srv_addr ... srv_uweight(7) ... srv_port(18)
        assert_eq!(
            fields[4],
            s["address"].as_str().unwrap(),
            "{backend}/{name}: {state}"
        );
        assert_eq!(
            fields[18],
            s["port"].as_str().unwrap(),
            "{backend}/{name}: {state}"
        );
        let weight = s["weight"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("1");
        assert_eq!(fields[7], weight, "{backend}/{name} weight: {state}");
        assert_eq!(row["weight"], weight, "{backend}/{name}: {row:?}");
        let backup = if s["status"] == "backup" { "1" } else { "0" };
        assert_eq!(row["bck"], backup, "{backend}/{name} backup: {row:?}");
        // The pool's advanced text (`fall 3 rise 2`), as the checks run.
        let adv: Vec<&str> = s["pool_advanced"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        for (k, col) in [("fall", "check_fall"), ("rise", "check_rise")] {
            if let Some(i) = adv.iter().position(|w| *w == k) {
                assert_eq!(row[col], adv[i + 1], "{backend}/{name} {k}: {row:?}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "{checked} servers checked: {servers}");
}

const ADD_APISERVER: &str = r#"<?php
require_once("config.inc");
require_once("haproxy/haproxy.inc");
$pool = array(
	'name' => 'k8s-apiserver', 'balance' => 'roundrobin', 'check_type' => 'HTTP',
	'httpcheck_method' => 'GET', 'monitor_uri' => '/readyz', 'monitor_httpversion' => 'HTTP/1.0',
	'checkinter' => '300', 'retries' => '3', 'connection_timeout' => '1000',
	'advanced_backend' => base64_encode("option redispatch 1\r\ntimeout check 300\n"),
	'ha_servers' => array('item' => array(array(
		'name' => 'm1', 'address' => '%API_IP%', 'port' => '%API_PORT%', 'status' => 'active',
		'checkssl' => 'yes', 'advanced' => 'fall 3 rise 2', 'id' => '201',
	))),
);
$fe = array(
	'name' => 'k8s-api', 'descr' => 'hacli: apiserver VIP', 'status' => 'active', 'type' => 'tcp',
	'a_extaddr' => array('item' => array(array('extaddr' => 'custom', 'extaddr_custom' => '%VIP%', 'extaddr_port' => '%VIP_PORT%'))),
	'backend_serverpool' => 'k8s-apiserver',
);
$pools = config_get_path('installedpackages/haproxy/ha_pools/item');
$pools[] = $pool;
config_set_path('installedpackages/haproxy/ha_pools/item', $pools);
$fes = config_get_path('installedpackages/haproxy/ha_backends/item');
$fes[] = $fe;
config_set_path('installedpackages/haproxy/ha_backends/item', $fes);
write_config("hacli: add the apiserver pool and frontend");
$ok = haproxy_check_and_run($messages, true);
echo json_encode(array('ok' => $ok, 'messages' => $messages));
"#;

#[test]
fn php_adds_a_pool_live_with_a_seamless_reload() {
    let ip = test_ip();
    let echo = echo_server(ip);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = PfsenseOptions {
        imap_server: Some(echo),
        ..PfsenseOptions::default()
    };
    let Some(p) = Pfsense::start_or_skip("php_adds_a_pool_live", dir.path(), ip, opts) else {
        return;
    };
    // An apiserver stand-in with HTTPS /readyz on the same address.
    let pki = testlab::pki::Pki::generate(dir.path(), &[ip], &[ip]).expect("pki");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = testlab::ApiServer::start(&rt, &[ip], &pki.apiserver, "t0ken", Default::default())
        .expect("apiserver");

    wait_status(&p, "mail-imaps_ipvANY", "imap1", "UP");
    let mut held = TcpStream::connect(p.seed_frontends().imaps).expect("connect imaps frontend");
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo_roundtrip(&mut held, "before-reload");
    let old_pids = p.haproxy_pids();
    let seed_cfg = p.haproxy_cfg();

    let vip_port = TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = ADD_APISERVER
        .replace("%API_IP%", &ip.to_string())
        .replace("%API_PORT%", &api.port.to_string())
        .replace("%VIP%", &ip.to_string())
        .replace("%VIP_PORT%", &vip_port.to_string());
    let out = p.php_json("add the apiserver pool", &script).expect("php");
    assert_eq!(out["ok"], json!(true), "{out}");

    let cfg = p.haproxy_cfg();
    assert!(cfg.contains("backend k8s-apiserver_ipvANY\n"), "{cfg}");
    assert!(
        cfg.contains("\toption\t\t\thttpchk GET /readyz HTTP/1.0\n"),
        "{cfg}"
    );
    // The pool's connect timeout, retries and advanced_backend lines
    // (decoded, one per line, without the CR a browser sends).
    for line in [
        "\ttimeout connect\t\t1000\n",
        "\tretries\t\t\t3\n",
        "\toption redispatch 1\n",
        "\ttimeout check 300\n",
    ] {
        assert!(cfg.contains(line), "{line:?} missing: {cfg}");
    }
    assert!(
        cfg.contains(&format!(
            "\tserver\t\t\tm1 {ip}:{} id 201 check-ssl check inter 300  verify none fall 3 rise 2\n",
            api.port
        )),
        "{cfg}"
    );
    // The sections that are not ours are byte-identical.
    let section = |c: &str, name: &str| -> String {
        let s = c.find(name).unwrap_or_else(|| panic!("{name} missing"));
        let e = c[s..].find("\n\n").map(|e| s + e).unwrap_or(c.len());
        c[s..e].to_string()
    };
    for name in [
        "frontend mail-imaps\n",
        "backend mail-smtp_ipvANY\n",
        "frontend web-sni\n",
    ] {
        assert_eq!(section(&seed_cfg, name), section(&cfg, name));
    }

    // Live without a restart: the new server is UP, a new process replaced
    // the old one (-sf), and the held connection still works.
    wait_status(&p, "k8s-apiserver_ipvANY", "m1", "UP");
    let new_pids = p.haproxy_pids();
    assert!(
        !new_pids.is_empty() && new_pids.iter().all(|n| !old_pids.contains(n)),
        "{old_pids:?} -> {new_pids:?}"
    );
    let reload = p
        .actions()
        .into_iter()
        .rev()
        .find(|a| a["action"] == "haproxy_reload")
        .expect("a reload was recorded");
    assert_eq!(
        reload["detail"]["old_pids"],
        json!(old_pids.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    );
    echo_roundtrip(&mut held, "after-reload");

    // Traffic through the new frontend reaches the apiserver.
    let body = rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.kube_ca.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        client
            .get(format!("https://{ip}:{vip_port}/readyz"))
            .send()
            .await
            .expect("GET /readyz through the new frontend")
            .text()
            .await
            .unwrap()
    });
    assert_eq!(body, "ok");
}

#[test]
fn an_invalid_config_is_refused_and_nothing_is_written() {
    let Some((p, _dir)) = start("an_invalid_config_is_refused", PfsenseOptions::default()) else {
        return;
    };
    let pids = p.haproxy_pids();
    let cfg = p.haproxy_cfg();
    let xml = p.config_xml();
    // Checked before write_config, as the backend does: refused, nothing changes.
    let out = p
        .php_json(
            "invalid server",
            "<?php require_once('config.inc'); require_once('haproxy/haproxy.inc');\n$s = config_get_path('installedpackages/haproxy/ha_pools/item/1/ha_servers/item');\n$s[] = array('name' => 'bad', 'address' => '127.0.0.9', 'port' => '1', 'status' => 'active', 'advanced' => 'no-such-keyword');\nconfig_set_path('installedpackages/haproxy/ha_pools/item/1/ha_servers/item', $s);\n$ok = haproxy_check_and_run($messages, true);\necho json_encode(array('ok' => $ok, 'messages' => $messages));\n",
        )
        .expect("php");
    assert_eq!(out["ok"], json!(false), "{out}");
    let messages = out["messages"].as_str().unwrap_or_default();
    assert!(
        messages.contains("no-such-keyword"),
        "HAProxy's own words: {messages}"
    );
    assert_eq!(p.haproxy_cfg(), cfg, "haproxy.cfg is untouched");
    assert_eq!(p.config_xml(), xml, "config.xml is untouched");
    assert_eq!(p.haproxy_pids(), pids, "the old process stays");
    p.haproxy_command("show info")
        .expect("the old HAProxy still answers");
}

#[test]
fn write_config_waits_for_the_config_lock() {
    let Some((p, _dir)) = start(
        "write_config_waits_for_the_config_lock",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let lock = p.hold_config_lock().expect("lock");
    let p = std::sync::Arc::new(p);
    let p2 = p.clone();
    let writer = std::thread::spawn(move || {
        p2.php_json(
            "write under lock",
            "<?php require_once('config.inc'); config_set_path('system/hostname', 'fw2'); write_config('hacli: rename'); echo json_encode(config_get_path('system/hostname'));",
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !writer.is_finished(),
        "write_config must wait while the lock is held"
    );
    assert!(p.config_xml().contains("<hostname>fw1</hostname>"));
    drop(lock);
    let out = writer.join().unwrap().expect("php");
    assert_eq!(out, json!("fw2"));
    assert!(p.config_xml().contains("<hostname>fw2</hostname>"));
}

struct Rest {
    client: reqwest::Client,
    url: String,
    key: String,
    rt: tokio::runtime::Runtime,
}

impl Rest {
    fn new(p: &Pfsense) -> Rest {
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem().as_bytes()).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Rest {
            client,
            url: format!("{}/api/v2/", p.rest_url()),
            key: p.api_key().to_string(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        self.rt.block_on(async {
            let r = req.send().await.expect("request");
            let code = r.status().as_u16();
            let v: Value = r.json().await.expect("JSON envelope");
            assert_eq!(v["code"], json!(code), "HTTP status = code: {v}");
            (code, v)
        })
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None)
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body))
    }
    fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None)
    }
}

#[test]
fn pfrest_envelope_auth_filters_ids_and_errors() {
    let Some((p, _dir)) = start(
        "pfrest_envelope_auth_filters_ids_and_errors",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let rest = Rest::new(&p);

    // Auth: the API key, Basic, and 401 for either one wrong.
    let (code, v) = rest.get("services/haproxy/backends");
    assert_eq!(code, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["response_id"], "SUCCESS");
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    let (user, pass) = p.credentials();
    let basic = rest
        .client
        .get(format!("{}services/haproxy/backends", rest.url))
        .basic_auth(&user, Some(&pass));
    assert_eq!(rest.send(basic).0, 200);
    let wrong = rest
        .client
        .get(format!("{}services/haproxy/backends", rest.url))
        .basic_auth(&user, Some("wrong"));
    let (code, v) = rest.send(wrong);
    assert_eq!(
        (code, v["response_id"].as_str()),
        (401, Some("AUTH_AUTHENTICATION_FAILED"))
    );
    let badkey = rest
        .client
        .get(format!("{}services/haproxy/backends", rest.url))
        .header("X-API-Key", "not-the-key");
    assert_eq!(rest.send(badkey).0, 401);

    // Filters: ?name= and ?parent_id=.
    let (_, v) = rest.get("services/haproxy/backends?name=wiki");
    let wiki = &v["data"].as_array().unwrap()[0];
    assert_eq!(
        (wiki["id"].clone(), wiki["name"].clone()),
        (json!(2), json!("wiki"))
    );
    let (_, v) = rest.get("services/haproxy/backend/servers?parent_id=0");
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mx1", "mx2"]);
    assert_eq!(v["data"][0]["advanced"], "send-proxy-v2");
    assert!(
        v["data"][0].get("checkssl").is_none(),
        "pfrest's server model has no checkssl"
    );

    // Create two pools, delete the first: the second one's id shifts down.
    let (code, a) = rest.post("services/haproxy/backend", json!({"name": "pool-a", "check_type": "HTTP", "httpcheck_method": "GET", "monitor_uri": "/readyz"}));
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["data"]["id"], 5);
    assert_eq!(a["data"]["monitor_httpversion"], "HTTP/1.0");
    let (_, b) = rest.post("services/haproxy/backend", json!({"name": "pool-b", "servers": [{"name": "s1", "address": "127.0.0.1", "port": 6443, "advanced": "check-ssl verify none fall 3 rise 2"}]}));
    assert_eq!(b["data"]["id"], 6);
    assert_eq!(b["data"]["servers"][0]["parent_id"], 6);
    let (code, _) = rest.delete("services/haproxy/backend?id=5");
    assert_eq!(code, 200);
    let (_, v) = rest.get("services/haproxy/backends?name=pool-b");
    assert_eq!(
        v["data"][0]["id"], 5,
        "ids are array indices: they shift after a delete"
    );
    let (code, v) = rest.get("services/haproxy/backend?id=6");
    assert_eq!(
        (code, v["response_id"].as_str()),
        (404, Some("MODEL_OBJECT_NOT_FOUND"))
    );

    // A server under pool-b (now id 5) via parent_id.
    let (code, s) = rest.post(
        "services/haproxy/backend/server",
        json!({"parent_id": 5, "name": "s2", "address": "127.0.0.2", "port": 6443}),
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        (s["data"]["parent_id"].clone(), s["data"]["id"].clone()),
        (json!(5), json!(1))
    );
    let (code, v) = rest.post(
        "services/haproxy/backend/server",
        json!({"parent_id": 42, "name": "s3", "address": "127.0.0.2", "port": 1}),
    );
    assert_eq!(
        (code, v["response_id"].as_str()),
        (404, Some("MODEL_PARENT_NOT_FOUND"))
    );

    // 400 FIELD_*, 409 while referenced.
    let (code, v) = rest.post("services/haproxy/backend", json!({"name": "bad name!"}));
    assert_eq!(code, 400);
    assert!(
        v["response_id"].as_str().unwrap().contains("VALIDATOR")
            || v["response_id"].as_str().unwrap().starts_with("FIELD_"),
        "{v}"
    );
    let (code, v) = rest.post("services/haproxy/backend", json!({"balance": "roundrobin"}));
    assert_eq!(
        (code, v["response_id"].as_str()),
        (400, Some("FIELD_IS_REQUIRED"))
    );
    let (code, v) = rest.post("services/haproxy/backend", json!({"name": "wiki"}));
    assert_eq!(
        (code, v["response_id"].as_str()),
        (400, Some("FIELD_MUST_BE_UNIQUE"))
    );
    let (code, v) = rest.delete("services/haproxy/backend?id=0");
    assert_eq!(
        (code, v["response_id"].as_str()),
        (409, Some("MODEL_CANNOT_BE_DELETED_WHILE_REFERENCED"))
    );
    let (code, _) = rest.get("services/haproxy/nonsense");
    assert_eq!(code, 404);

    // 503 while the config lock is held; fine again once it is released.
    let lock = p.hold_config_lock().expect("lock");
    let (code, v) = rest.post("services/haproxy/backend", json!({"name": "pool-c"}));
    assert_eq!(
        (code, v["response_id"].as_str()),
        (503, Some("MODEL_WRITE_CONFIG_LOCKED"))
    );
    let (code, _) = rest.get("services/haproxy/backends");
    assert_eq!(code, 200, "reads do not need the lock");
    drop(lock);
    let (code, _) = rest.post("services/haproxy/backend", json!({"name": "pool-c"}));
    assert_eq!(code, 200);

    // The revision names the API user.
    assert!(
        p.config_xml()
            .contains("(API): Added HAProxyBackend via API")
    );
}

#[test]
fn pfrest_apply_semantics_and_php_share_the_config() {
    let Some((p, _dir)) = start(
        "pfrest_apply_semantics_and_php_share_the_config",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let rest = Rest::new(&p);
    let ip = p.addr();
    let port = TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // Written but not applied: config.xml has it, HAProxy does not.
    let cfg_before = p.haproxy_cfg();
    let (code, v) = rest.post("services/haproxy/backend", json!({"name": "k8s-apiserver", "check_type": "HTTP", "httpcheck_method": "GET", "monitor_uri": "/readyz", "checkinter": 2000,
        "servers": [{"name": "m1", "address": ip.to_string(), "port": 1, "advanced": "check-ssl verify none fall 3 rise 2"}]}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = rest.post("services/haproxy/frontend", json!({"name": "k8s-api", "type": "tcp", "backend_serverpool": "k8s-apiserver",
        "a_extaddr": [{"extaddr": "custom", "extaddr_custom": ip.to_string(), "extaddr_port": port}]}));
    assert_eq!(code, 200, "{v}");
    assert!(p.config_xml().contains("<name>k8s-api</name>"));
    assert_eq!(p.haproxy_cfg(), cfg_before, "not applied yet");
    assert!(
        p.path("/var/run/haproxy.conf.dirty").exists(),
        "pending changes are marked"
    );
    let (_, v) = rest.get("services/haproxy/apply");
    assert_eq!(v["data"]["applied"], false);

    // A frontend naming a pool that does not exist is refused.
    let (code, _) = rest.post(
        "services/haproxy/frontend",
        json!({"name": "xx", "type": "tcp", "backend_serverpool": "nope"}),
    );
    assert_eq!(code, 404);

    // Apply: HAProxy serves it, the marker is gone.
    let (code, v) = rest.post("services/haproxy/apply", json!({}));
    assert_eq!(code, 200, "{v}");
    let cfg = p.haproxy_cfg();
    assert!(
        cfg.contains("frontend k8s-api\n") && cfg.contains("backend k8s-apiserver_ipvANY\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("\toption\t\t\thttpchk GET /readyz HTTP/1.0\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains(" check inter 2000  weight 1 check-ssl verify none fall 3 rise 2\n"),
        "{cfg}"
    );
    assert!(!p.path("/var/run/haproxy.conf.dirty").exists());
    assert!(stat_status(&p, "k8s-apiserver_ipvANY", "m1").is_some());

    // PHP sees what REST wrote, and REST sees what PHP wrote.
    let out = p
        .php_json(
            "read and add",
            "<?php require_once('config.inc');\n$fe = null;\nforeach (config_get_path('installedpackages/haproxy/ha_backends/item') as $f) { if ($f['name'] == 'k8s-api') $fe = $f; }\n$pools = config_get_path('installedpackages/haproxy/ha_pools/item');\n$i = count($pools) - 1;\n$s = config_get_path(\"installedpackages/haproxy/ha_pools/item/$i/ha_servers/item\");\n$s[] = array('name' => 'm2', 'address' => '127.0.0.2', 'port' => '6443', 'status' => 'active');\nconfig_set_path(\"installedpackages/haproxy/ha_pools/item/$i/ha_servers/item\", $s);\nwrite_config('hacli: add m2');\necho json_encode(array('pool' => $fe['backend_serverpool'], 'i' => $i));\n",
        )
        .expect("php");
    assert_eq!(out["pool"], "k8s-apiserver");
    let (_, v) = rest.get(&format!(
        "services/haproxy/backend/servers?parent_id={}",
        out["i"]
    ));
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m1", "m2"]);

    // "apply": true applies in the same call.
    let (code, v) = rest.call(
        reqwest::Method::PATCH,
        "services/haproxy/backend",
        Some(json!({"id": out["i"], "checkinter": 1500, "apply": true})),
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        p.haproxy_cfg().contains(" check inter 1500 "),
        "{}",
        p.haproxy_cfg()
    );

    // An apply HAProxy refuses: 500 with HAProxy's words, nothing reloaded.
    let good = p.haproxy_cfg();
    let pids = p.haproxy_pids();
    let i = out["i"].as_u64().unwrap();
    let (code, v) = rest.call(
        reqwest::Method::PATCH,
        "services/haproxy/backend/server",
        Some(json!({"parent_id": i, "id": 1, "advanced": "no-such-keyword", "apply": true})),
    );
    assert_eq!(
        (code, v["response_id"].as_str()),
        (500, Some("HAPROXY_APPLY_FAILED")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("no-such-keyword"),
        "{v}"
    );
    assert_eq!(p.haproxy_cfg(), good);
    assert_eq!(p.haproxy_pids(), pids);
    let (_, v) = rest.get("services/haproxy/apply");
    assert_eq!(v["data"]["applied"], false, "still pending");
    // Deleting the server shifts the ids after it; apply is clean again.
    let (code, v) = rest.delete(&format!(
        "services/haproxy/backend/server?parent_id={i}&id=0"
    ));
    assert_eq!((code, v["data"]["name"].as_str()), (200, Some("m1")));
    let (_, v) = rest.get(&format!("services/haproxy/backend/servers?parent_id={i}"));
    assert_eq!(
        (v["data"][0]["id"].clone(), v["data"][0]["name"].clone()),
        (json!(0), json!("m2"))
    );
    let (code, v) = rest.call(
        reqwest::Method::PATCH,
        "services/haproxy/backend/server",
        Some(json!({"parent_id": i, "id": 0, "advanced": "fall 3 rise 2", "apply": true})),
    );
    assert_eq!(code, 200, "{v}");
    let cfg = p.haproxy_cfg();
    assert!(
        !cfg.contains(" m1 ") && cfg.contains("\tserver\t\t\tm2 127.0.0.2:6443"),
        "{cfg}"
    );

    // The VIP as an IP alias: pending until applied, then `ip addr add`.
    let vip = "127.0.0.77";
    let (code, v) = rest.post("firewall/virtual_ip", json!({"mode": "ipalias", "interface": "lan", "subnet": vip, "subnet_bits": 32, "descr": "hacli: apiserver VIP"}));
    assert_eq!(code, 200, "{v}");
    assert!(v["data"]["uniqid"].as_str().is_some_and(|u| !u.is_empty()));
    let added = |p: &Pfsense| {
        p.actions()
            .iter()
            .any(|a| a["action"] == "interface_ipalias_configure" && a["detail"]["subnet"] == vip)
    };
    assert!(!added(&p), "not applied yet");
    let (code, _) = rest.post("firewall/virtual_ip/apply", json!({}));
    assert_eq!(code, 200);
    let rec = p
        .actions()
        .into_iter()
        .find(|a| a["action"] == "interface_ipalias_configure")
        .expect("recorded");
    assert_eq!(
        rec["detail"]["command"],
        format!("ip addr add '{vip}/32' dev 'lo'")
    );
    assert!(
        p.actions()
            .iter()
            .any(|a| a["action"] == "filter_configure")
    );
    let (code, v) = rest.post(
        "firewall/virtual_ip",
        json!({"mode": "ipalias", "interface": "nope", "subnet": "127.0.0.78", "subnet_bits": 32}),
    );
    assert_eq!(code, 400, "{v}");
    // A frontend can bind the IP alias as `<ip>_ipv4`, as in the package's GUI.
    let out_vip = p
        .php_json("bindable", &format!("<?php require_once('config.inc'); require_once('haproxy/haproxy.inc'); echo json_encode(haproxy_interface_ip('{vip}_ipv4'));"))
        .expect("php");
    assert_eq!(out_vip, json!(vip));

    // The DNS record: host overrides are sorted by host, answer after apply.
    let (code, v) = rest.post(
        "services/dns_resolver/host_override",
        json!({"host": "api", "domain": "lab.example", "ip": [vip], "descr": "hacli"}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["id"], 0, "sorted by host: api < git");
    assert!(
        p.resolve("api.lab.example").is_empty(),
        "pending until applied"
    );
    let (code, _) = rest.post("services/dns_resolver/apply", json!({}));
    assert_eq!(code, 200);
    assert_eq!(
        p.resolve("api.lab.example"),
        vec![vip.parse::<IpAddr>().unwrap()]
    );
    if let Some(dns) = p.dns_addr() {
        assert_eq!(
            dns_a(dns, "api.lab.example"),
            (0, vec![vip.parse().unwrap()]),
            "unbound reloaded"
        );
    }
    let (code, v) = rest.post(
        "services/dns_resolver/host_override",
        json!({"host": "api", "domain": "lab.example", "ip": ["127.0.0.1"]}),
    );
    assert_eq!(code, 400, "host+domain are unique together: {v}");
    let out = p
        .php_json("read hosts", "<?php require_once('config.inc'); echo json_encode(config_get_path('unbound/hosts/0'));")
        .expect("php");
    assert_eq!(out["host"], "api");
    assert_eq!(out["ip"], vip);
}

#[test]
fn a_frontend_on_an_address_the_box_lacks_fails_to_start_and_the_old_process_stays() {
    let Some((p, _dir)) = start("a_frontend_on_a_missing_address", PfsenseOptions::default())
    else {
        return;
    };
    let pids = p.haproxy_pids();
    // `haproxy -c` passes (it binds nothing); starting the new process cannot
    // bind: as on pfSense, the VIP has to exist first. No packet is sent.
    let out = p
        .php_json(
            "frontend on a missing address",
            "<?php require_once('config.inc'); require_once('haproxy/haproxy.inc');\n$fes = config_get_path('installedpackages/haproxy/ha_backends/item');\n$fes[] = array('name' => 'k8s-api', 'status' => 'active', 'type' => 'tcp', 'backend_serverpool' => 'git',\n  'a_extaddr' => array('item' => array(array('extaddr' => 'custom', 'extaddr_custom' => '198.19.254.77', 'extaddr_port' => '6443'))));\nconfig_set_path('installedpackages/haproxy/ha_backends/item', $fes);\n$ok = haproxy_check_and_run($messages, true);\necho json_encode(array('ok' => $ok, 'messages' => $messages));\n",
        )
        .expect("php");
    assert_eq!(out["ok"], json!(false), "{out}");
    let messages = out["messages"].as_str().unwrap_or_default();
    assert!(messages.contains("198.19.254.77:6443"), "{messages}");
    // The package wrote the live file before starting; the old process
    // still serves the old configuration.
    assert!(p.haproxy_cfg().contains("frontend k8s-api\n"));
    assert_eq!(p.haproxy_pids(), pids);
    let stat = p.haproxy_stat().expect("the old HAProxy answers");
    assert!(!stat.iter().any(|r| r["pxname"] == "k8s-api"));
}

#[test]
fn write_config_keeps_backupcount_revisions_with_their_descriptions() {
    let Some((p, _dir)) = start(
        "write_config_keeps_backupcount_revisions",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    // pfSense keeps system/backupcount revisions (30 unless set); 2 here,
    // and one second apart, as revision times are in seconds.
    let out = p
        .php_json(
            "writes",
            "<?php require_once('config.inc');\nconfig_set_path('system/backupcount', '2');\nfor ($i = 1; $i <= 4; $i++) { write_config(\"hacli: step $i\"); if ($i < 4) sleep(1); }\n$b = get_backups();\n$d = array();\nforeach ($b as $k => $v) { if ($k !== 'versions') $d[] = $v['description']; }\necho json_encode($d);\n",
        )
        .expect("php");
    assert_eq!(
        out,
        json!(["(system): hacli: step 3", "(system): hacli: step 2"]),
        "newest first, each with the description of the config it holds"
    );
    let backups = p.backups();
    assert_eq!(backups.len(), 2, "{backups:?}");
    let newest = std::fs::read_to_string(&backups[1]).unwrap();
    assert!(newest.contains("hacli: step 3"));
    assert!(p.config_xml().contains("(system): hacli: step 4"));
}

/// Run by `a_killed_test_leaves_no_haproxy_behind` as a child process.
#[test]
#[ignore = "a child of a_killed_test_leaves_no_haproxy_behind"]
fn child_starts_a_standin_and_waits() {
    let Ok(root) = std::env::var("PFSENSE_STANDIN_CHILD_ROOT") else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let p = Pfsense::start(&root, test_ip(), PfsenseOptions::default()).expect("child start");
    std::fs::write(root.join("ready"), "ready").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop(p);
}

fn alive(pid: u32) -> bool {
    // Gone, or a zombie waiting for its new parent to reap it, is dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(") ").map(|(_, r)| r.chars().next());
            state != Some(Some('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_killed_test_leaves_no_haproxy_behind() {
    if std::process::Command::new("php")
        .arg("-v")
        .output()
        .is_err()
    {
        testlab::skip::skip(
            "a_killed_test_leaves_no_haproxy_behind",
            "php is not installed (php-cli)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_a_standin_and_waits",
            "--ignored",
            "--nocapture",
        ])
        .env("PFSENSE_STANDIN_CHILD_ROOT", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child test");
    let until = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("ready").exists() {
        assert!(Instant::now() < until, "the child's stand-in did not start");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early (SKIPPED?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pidfile = std::fs::read_to_string(dir.path().join("var/run/haproxy.pid")).unwrap();
    let orphan: u32 = pidfile.trim().parse().unwrap();
    child.kill().unwrap(); // SIGKILL: no Drop runs
    child.wait().unwrap();
    assert!(
        alive(orphan),
        "the daemonised HAProxy outlives a killed test"
    );

    // The next stand-in to start sweeps it.
    let Some((_p, _d)) = start(
        "a_killed_test_leaves_no_haproxy_behind",
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let until = Instant::now() + Duration::from_secs(5);
    while alive(orphan) {
        assert!(
            Instant::now() < until,
            "the orphaned HAProxy {orphan} is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bind_in_netns_of_our_own_process_binds_here() {
    // Our own namespace: the listener is bound and accepts on this side.
    let ip = test_ip();
    let l = testlab::pfsense::bind_in_netns(std::process::id(), SocketAddr::new(ip, 0))
        .expect("bind in our own network namespace");
    let a = l.local_addr().unwrap();
    assert_eq!(a.ip(), ip);
    TcpStream::connect_timeout(&a, Duration::from_secs(2)).expect("connect");
}

#[test]
fn a_restart_keeps_config_xml_and_serves_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = test_ip();
    let Some(p) = Pfsense::start_or_skip(
        "a_restart_keeps_config_xml",
        dir.path(),
        ip,
        PfsenseOptions::default(),
    ) else {
        return;
    };
    let out = p
        .php_json(
            "rename a frontend's description",
            "<?php require_once('config.inc'); config_set_path('installedpackages/haproxy/ha_backends/item/0/descr', 'SMTP & submission'); write_config('hacli: describe'); echo json_encode(true);",
        )
        .expect("php");
    assert_eq!(out, json!(true));
    let xml = p.config_xml();
    assert!(
        xml.contains("<descr><![CDATA[SMTP &amp; submission]]></descr>"),
        "pfSense's encoding inside CDATA"
    );
    let smtp = p.seed_frontends().smtp;
    let old = p.haproxy_pids();
    drop(p);
    let mut gone = false;
    for _ in 0..100 {
        gone = old.iter().all(|pid| !alive(*pid));
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "Drop stops HAProxy");

    let p = Pfsense::start(dir.path(), ip, PfsenseOptions::default()).expect("restart");
    assert_eq!(p.config_xml(), xml, "config.xml is kept");
    assert_eq!(
        p.seed_frontends().smtp,
        smtp,
        "the frontends are read from config.xml"
    );
    TcpStream::connect_timeout(&smtp, Duration::from_secs(2)).expect("the frontend listens again");
    let out = p
        .php_json("read", "<?php require_once('config.inc'); echo json_encode(config_get_path('installedpackages/haproxy/ha_backends/item/0/descr'));")
        .expect("php");
    assert_eq!(out, json!("SMTP & submission"));
}

#[test]
fn through_a_command_prefix_with_well_known_ports() {
    // A lab host passes its `nsenter` wrapper; `env` stands in for it here.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        testlab::skip::skip(
            "through_a_command_prefix_with_well_known_ports",
            "ports 25/53 need root",
        );
        return;
    }
    let opts = PfsenseOptions {
        exec_prefix: vec!["env".into()],
        ..PfsenseOptions::default()
    };
    let Some((p, _dir)) = start("through_a_command_prefix_with_well_known_ports", opts) else {
        return;
    };
    let fe = p.seed_frontends();
    assert_eq!(
        (fe.smtp.port(), fe.imaps.port(), fe.sni.port()),
        (25, 993, 4443)
    );
    TcpStream::connect_timeout(&fe.smtp, Duration::from_secs(2)).expect("smtp frontend on :25");
    if let Some(dns) = p.dns_addr() {
        assert_eq!(dns.port(), 53);
        assert_eq!(
            dns_a(dns, "git.lab.example"),
            (
                0,
                vec![match p.addr() {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!(),
                }]
            )
        );
    }
    let out = p
        .php_json("through the prefix", "<?php require_once('config.inc'); echo json_encode(config_get_path('system/hostname'));")
        .expect("php");
    assert_eq!(out, json!("fw1"));
}
