//! No secret anywhere: the commands that handle secrets (`gate`, `sentinel`,
//! `observe`) run against the lab with known secret values, and none of the
//! values may appear in stdout, stderr, a written state file, or the `Debug`
//! output of the structs that hold them.
//!
//! The secrets are a list of (name, value) pairs checked by one helper;
//! later backends add theirs (the Proxmox API token, the pfrest key, the
//! kubeadm join token) to [`Secrets`] and to the commands run.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use testlab::Lab;

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
