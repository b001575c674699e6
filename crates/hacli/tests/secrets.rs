//! No secret anywhere: the commands that handle secrets (`gate`, `sentinel`,
//! `observe`) run against the lab with known secret values, and none of the
//! values may appear in stdout, stderr, a written state file, or the `Debug`
//! output of the structs that hold them.
//!
//! The secrets are a list of (name, value) pairs checked by one helper.
//! The Proxmox API token is checked here too, by a test that needs neither
//! root nor the lab (the Proxmox stand-in on loopback), on the paths that
//! succeed and on those that fail (refused token, unreachable endpoint,
//! wrong certificate, malformed token). The join tokens and certificate
//! keys are checked by value in tests/common (the migration) and
//! three_masters/replace.rs; the pfrest key in tests/lb.rs.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use testlab::Lab;
use testlab::proxmox::{Inventory, ProxmoxLab};

#[path = "common/secrets.rs"]
mod by_value;

/// Known secret values and where they came from.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn add(&mut self, name: &'static str, value: impl Into<String>) {
        let value = value.into();
        assert!(value.len() >= 8, "secret {name} is too short to search for");
        self.0.push((name, value));
    }

    /// Panic, naming the secret and the place, if any value appears in `text`.
    fn assert_absent(&self, place: &str, text: &str) {
        for (name, value) in &self.0 {
            assert!(
                !text.contains(value.as_str()),
                "the {name} appears in {place}:\n{text}"
            );
        }
    }
}

/// Everything a command printed, by place.
fn outputs(what: &str, out: &Output) -> Vec<(String, String)> {
    vec![
        (
            format!("{what}: stdout"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            format!("{what}: stderr"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    ]
}

/// The lab's bearer token, from its kubeconfig.
fn kubeconfig_token(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .expect("the lab's kubeconfig has a token")
        .trim()
        .to_string()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn hacli(lab: &Lab, args: &[&str], prometheus_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .arg("--etcd-endpoints")
        .arg(lab.etcd_endpoints().join(","))
        .arg("--etcd-pki")
        .arg(&lab.etcd_pki)
        .args(["--deadline", "6s", "--member-timeout", "4s"])
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_IDENTITY")
        .env_remove("HACLI_LB_RUNTIME_API")
        .env("HACLI_PROMETHEUS_URL", prometheus_url)
        // The same Prometheus as etcd-latency's and master-disk's source.
        .env("HACLI_PROMETHEUS", prometheus_url)
        .output()
        .expect("hacli runs")
}

#[test]
fn no_secret_reaches_output_state_files_or_debug() {
    let Some(lab) = Lab::start_or_skip("no_secret_reaches_output_state_files_or_debug") else {
        return;
    };
    let mut secrets = Secrets(Vec::new());
    secrets.add("kubeconfig bearer token", kubeconfig_token(&lab.kubeconfig));
    // The etcd client key: every line of its PEM body (and so the whole).
    let key = std::fs::read_to_string(lab.etcd_pki.join("healthcheck-client.key")).unwrap();
    for line in key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
    {
        secrets.add("etcd client key", line);
    }
    // Prometheus with credentials in its URL, on a port nothing answers:
    // the probe fails, and its error must not repeat the password.
    let password = "Pr0m-s3cret-7f3a9c1e5b";
    secrets.add("Prometheus password", password);
    let prometheus = format!("http://scraper:{password}@127.0.0.1:{}/", closed_port());

    let follower = lab
        .wait_leader(std::time::Duration::from_secs(10))
        .and_then(|leader| {
            lab.masters
                .iter()
                .map(|m| m.0.clone())
                .find(|m| *m != leader)
        })
        .expect("etcd has a leader and followers");
    let mut places: Vec<(String, String)> = Vec::new();

    // gate: the upgrade policy reads alerts, so the failed probe is a finding.
    for output in ["json", "text"] {
        let out = hacli(
            &lab,
            &["gate", "upgrade", &follower, "-o", output, "--timings"],
            &prometheus,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("alerts"),
            "gate -o {output} says nothing of the alerts probe: {text}"
        );
        places.extend(outputs(&format!("gate -o {output}"), &out));
    }
    // The URL is still named, without its password, so the user knows which.
    let gate_json = &places[0].1;
    assert!(
        gate_json.contains("probe `alerts` failed: GET http://***@127.0.0.1:"),
        "{gate_json}"
    );
    assert!(
        gate_json.contains("etcd's latency is unknown")
            && gate_json.contains("Prometheus at http://***@127.0.0.1:"),
        "{gate_json}"
    );

    // observe: the state file records the probe error.
    let state = lab.dir().join("secrets-state.yaml");
    let out = hacli(
        &lab,
        &["observe", "-O", state.to_str().unwrap()],
        &prometheus,
    );
    places.extend(outputs("observe", &out));
    let written = std::fs::read_to_string(&state).expect("observe wrote the state file");
    assert!(
        written.contains("alerts:"),
        "no alerts probe error: {written}"
    );
    places.push(("the state file observe wrote".into(), written.clone()));
    let out = hacli(&lab, &["observe", "--status"], &prometheus);
    places.extend(outputs("observe --status", &out));

    // sentinel: one cycle, a reboot required.
    let rr = lab.dir().join("secrets-reboot-required");
    std::fs::write(&rr, "").unwrap();
    let out = hacli(
        &lab,
        &[
            "sentinel",
            "--node",
            "w1",
            "--cycles",
            "1",
            "--period",
            "0s",
            "--reboot-required",
            rr.to_str().unwrap(),
            "--sentinel",
            lab.dir().join("secrets-gated").to_str().unwrap(),
            "--policy",
            "upgrade",
        ],
        &prometheus,
    );
    places.extend(outputs("sentinel", &out));

    // Debug output of what holds the secrets.
    let config = kubeadm::ObserverConfig {
        kubeconfig: Some(lab.kubeconfig.clone()),
        prometheus_url: Some(prometheus.clone()),
        prometheus: Some(kubeadm::PrometheusSource {
            url: prometheus.clone(),
            ca_file: None,
        }),
        etcd_latency_window: Some(std::time::Duration::from_secs(1)),
        master_disks: true,
        ..Default::default()
    };
    places.push(("ObserverConfig's Debug".into(), format!("{config:?}")));
    let (topology, _) = hacore::Topology::load(&lab.topology).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kube = kubeadm::kube_config(Some(&lab.kubeconfig)).await.unwrap();
        places.push(("kube::Config's Debug".into(), format!("{kube:?}")));
        let mut config = config.clone();
        config.etcd_tls.pki = Some(lab.etcd_pki.clone());
        config.etcd_endpoints = lab.etcd_endpoints();
        let observer = kubeadm::Observer::new(topology, config).await.unwrap();
        places.push(("Observer's Debug".into(), format!("{observer:?}")));
        let observed = observer.observe().await;
        assert!(
            observed
                .probe_errors
                .contains_key(&hacore::state::Probe::Alerts),
            "{observed:?}"
        );
        places.push(("ClusterState's Debug".into(), format!("{observed:?}")));
    });
    let (parsed, _) =
        hacore::ClusterState::load(&state, &hacore::Topology::load(&lab.topology).unwrap().0)
            .expect("the written state file loads");
    places.push((
        "the loaded state file's Debug".into(),
        format!("{parsed:?}"),
    ));

    for (place, text) in &places {
        secrets.assert_absent(place, text);
    }
}

/// `hacli ARGS` with `token` as `PROXMOX_VE_API_TOKEN` and nothing of the
/// caller's Proxmox environment.
fn hacli_pve(args: &[&str], token: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .env("PROXMOX_VE_API_TOKEN", token)
        .env_remove("PROXMOX_VE_ENDPOINT")
        .env_remove("PM_API_URL")
        .env_remove("PM_API_TOKEN_ID")
        .env_remove("PM_API_TOKEN_SECRET")
        .output()
        .expect("hacli runs")
}

#[test]
fn the_proxmox_token_reaches_no_output_when_used_refused_or_unreachable() {
    let pve = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let mut secrets = by_value::Secrets::new();
    secrets.add("Proxmox token secret", pve.token_secret());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/topology");
    let from = examples.join("single-master.yaml");
    let to = examples.join("ha.yaml");
    let (endpoint, fp) = (pve.endpoint(), pve.fingerprint_hex());
    let closed = format!("https://127.0.0.1:{}", closed_port());
    let wrong_fp = "AA:".repeat(31) + "AA";
    let token = pve.api_token();
    let wrong = format!("{}=not-the-secret-0123", pve.token_id());
    // A token with the wrong separator: refused as malformed, and the
    // message must not quote it.
    let malformed = format!("{}:{}", pve.token_id(), pve.token_secret());
    let show = |ep: &str, fp: &str| -> Vec<String> {
        [
            "hypervisor",
            "show",
            "--proxmox",
            ep,
            "--proxmox-fingerprint",
            fp,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut plan = vec![
        "plan".to_string(),
        "--from".into(),
        from.display().to_string(),
        "--to".into(),
        to.display().to_string(),
        "--template".into(),
        "9000".into(),
    ];
    plan.extend(["--proxmox", &endpoint, "--proxmox-fingerprint", &fp].map(String::from));
    let cases: Vec<(&str, Vec<String>, &str, i32)> = vec![
        ("hypervisor show", show(&endpoint, &fp), &token, 0),
        ("plan (refused: VM 100 is taken)", plan.clone(), &token, 1),
        ("a wrong token", show(&endpoint, &fp), &wrong, 3),
        ("an unreachable endpoint", show(&closed, &fp), &token, 3),
        ("a wrong fingerprint", show(&endpoint, &wrong_fp), &token, 3),
        // Refused (exit 3 today; a configuration error would be 2).
        ("a malformed token", show(&endpoint, &fp), &malformed, -1),
    ];
    for (what, args, token, code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = hacli_pve(&args, token);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if code < 0 {
            assert!(!out.status.success(), "{what}: {text}");
        } else {
            assert_eq!(out.status.code(), Some(code), "{what}: {text}");
        }
        for (place, t) in outputs(what, &out) {
            secrets.assert_absent(&place, &t);
        }
        if token == wrong {
            assert!(!text.contains("not-the-secret-0123"), "{what}: {text}");
        }
    }
}
