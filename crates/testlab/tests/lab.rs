//! The lab is faithful: real etcd with TLS behaves as a 3-member cluster
//! (stop, pause, restart), and the API stand-in is accepted by the real
//! `kubectl` and by a `kube` client: list, get, create, update, selectors,
//! 409 on a stale resourceVersion and on a duplicate create.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use testlab::{Lab, MemberRun};

fn kubectl(lab: &Lab, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (Debian kubernetes-client; scripts/test.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn have_kubectl() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
}

#[test]
fn etcd_members_stop_pause_resume_restart() {
    let Some(mut lab) = Lab::start_or_skip("etcd_members_stop_pause_resume_restart") else {
        return;
    };
    let leader = lab
        .etcd_leader()
        .expect("a 3-member cluster elects a leader");
    let other = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .find(|n| *n != leader)
        .unwrap();

    lab.pause_member(&other);
    assert_eq!(lab.member_state(&other), MemberRun::Paused);
    lab.resume_member(&other);
    assert_eq!(lab.member_state(&other), MemberRun::Running);

    lab.stop_member(&leader);
    assert_eq!(lab.member_state(&leader), MemberRun::Stopped);
    let new_leader = lab
        .wait_leader(Duration::from_secs(15))
        .expect("two of three members elect a new leader");
    assert_ne!(new_leader, leader);

    lab.restart_member(&leader).expect("the member rejoins");
    assert_eq!(lab.member_state(&leader), MemberRun::Running);
}

#[test]
fn kubectl_lists_gets_creates_and_updates() {
    if !have_kubectl() {
        testlab::skip::skip(
            "kubectl_lists_gets_creates_and_updates",
            "kubectl is not installed (kubernetes-client)",
        );
        return;
    }
    let Some(lab) = Lab::start_or_skip("kubectl_lists_gets_creates_and_updates") else {
        return;
    };
    let (ok, out, err) = kubectl(&lab, &["get", "nodes", "-o", "name"]);
    assert!(ok, "kubectl get nodes: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["node/m1", "node/m2", "node/m3", "node/w1"]
    );

    let (ok, out, err) = kubectl(
        &lab,
        &[
            "get",
            "node",
            "m2",
            "-o",
            "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Ready=True");

    let (ok, out, err) = kubectl(
        &lab,
        &[
            "get",
            "nodes",
            "-l",
            "node-role.kubernetes.io/control-plane",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");

    let (ok, out, err) = kubectl(
        &lab,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=w1",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pod/calico-node-w1");

    // `kubectl create -f` (JSON over the dynamic client). Typed generators
    // such as `kubectl create configmap` send protobuf, which the stand-in
    // refuses with 415 (it speaks JSON only). The stand-in serves no OpenAPI
    // documents, so kubectl's schema validation is turned off.
    let manifest = lab.dir().join("kill.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kill\n  namespace: kube-system\ndata:\n  reason: maintenance\n",
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let (ok, _, err) = kubectl(&lab, &["create", "--validate=false", "-f", manifest]);
    assert!(ok, "kubectl create -f: {err}");
    let (ok, _, err) = kubectl(&lab, &["create", "--validate=false", "-f", manifest]);
    assert!(!ok, "a second create must fail");
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );

    let (ok, out, err) = kubectl(
        &lab,
        &[
            "-n",
            "kube-system",
            "get",
            "cm",
            "kill",
            "-o",
            "jsonpath={.data.reason}",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "maintenance");

    let (ok, _, err) = kubectl(
        &lab,
        &["-n", "kube-system", "label", "cm", "kill", "owner=ops"],
    );
    assert!(ok, "kubectl label (a patch): {err}");
    let (ok, out, err) = kubectl(
        &lab,
        &[
            "-n",
            "kube-system",
            "get",
            "cm",
            "-l",
            "owner=ops",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "configmap/kill");

    // Update through `kubectl replace` with a stale resourceVersion: 409.
    let (ok, json, err) = kubectl(
        &lab,
        &["-n", "kube-system", "get", "cm", "kill", "-o", "json"],
    );
    assert!(ok, "{err}");
    let mut cm: serde_json::Value = serde_json::from_str(&json).unwrap();
    let file = lab.dir().join("cm.json");
    cm["data"]["reason"] = "replaced".into();
    std::fs::write(&file, cm.to_string()).unwrap();
    let (ok, _, err) = kubectl(
        &lab,
        &["replace", "--validate=false", "-f", file.to_str().unwrap()],
    );
    assert!(ok, "kubectl replace: {err}");
    cm["data"]["reason"] = "stale".into();
    std::fs::write(&file, cm.to_string()).unwrap();
    let (ok, _, err) = kubectl(
        &lab,
        &["replace", "--validate=false", "-f", file.to_str().unwrap()],
    );
    assert!(!ok, "a replace with a stale resourceVersion must fail");
    assert!(err.contains("the object has been modified"), "{err}");

    let (ok, _, err) = kubectl(&lab, &["-n", "kube-system", "delete", "cm", "kill"]);
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(&lab, &["-n", "kube-system", "get", "cm", "kill"]);
    assert!(!ok);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[tokio::test]
async fn kube_client_lists_gets_creates_and_updates() {
    let Some(lab) = Lab::start_or_skip("kube_client_lists_gets_creates_and_updates") else {
        return;
    };
    let kc = kube::config::Kubeconfig::read_from(&lab.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 4);
    let m1 = nodes.get("m1").await.unwrap();
    assert!(m1.spec.unwrap().taints.unwrap()[0].key == "node-role.kubernetes.io/control-plane");
    let err = nodes.get("nope").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err}"
    );

    let pods: Api<Pod> = Api::all(client.clone());
    let on_m1 = pods
        .list(&ListParams::default().fields("spec.nodeName=m1"))
        .await
        .unwrap();
    assert_eq!(on_m1.items.len(), 1);
    let by_label = pods
        .list(&ListParams::default().labels("k8s-app in (calico-node,other)"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 4);

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "lock"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let dup = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup}"
    );

    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let updated = leases
        .replace("lock", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // `next` still carries the old resourceVersion: a second writer loses.
    let stale = leases
        .replace("lock", &PostParams::default(), &next)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{stale}"
    );
    assert_eq!(
        leases
            .get("lock")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );

    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// A real HAProxy owns the endpoint: the kubeconfig's server reaches the
/// masters through it, its /readyz checks follow each apiserver, and its
/// runtime API answers on the Unix socket the topology names and on TCP.
#[test]
fn haproxy_fronts_the_masters_and_follows_their_readyz() {
    let Some(mut lab) = Lab::start_or_skip("haproxy_fronts_the_masters_and_follows_their_readyz")
    else {
        return;
    };
    let topology = std::fs::read_to_string(&lab.topology).unwrap();
    assert!(
        topology.contains(&format!("runtimeApi: {}", lab.lb_runtime_api())),
        "{topology}"
    );
    let statuses = lab.lb_statuses().unwrap();
    let names: Vec<&str> = statuses.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
    assert!(statuses.iter().all(|s| s.1 == "UP"), "{statuses:?}");

    // The VIP is HAProxy's: the stand-in listens only on the masters.
    let before = lab.store().requests();
    if have_kubectl() {
        let (ok, out, err) = kubectl(&lab, &["get", "nodes", "-o", "name"]);
        assert!(ok, "{err}");
        assert!(out.contains("node/m1"), "{out}");
        assert!(lab.store().requests() > before);
    }

    lab.set_apiserver_ready("m2", false).unwrap();
    let statuses = lab.lb_statuses().unwrap();
    assert!(
        statuses.contains(&("m2".into(), "DOWN".into())),
        "{statuses:?}"
    );
    lab.set_apiserver_ready("m2", true).unwrap();

    // The TCP runtime API, by hand.
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(lab.lb_tcp()).unwrap();
    s.write_all(b"show stat\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("# pxname,svname,"), "{text}");

    // Paused, HAProxy accepts connections on the VIP and answers nothing.
    lab.pause_lb();
    let mut vip =
        std::net::TcpStream::connect(lab.api_url().trim_start_matches("https://")).unwrap();
    vip.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    vip.write_all(b"\x16\x03\x01\x00\x00").unwrap();
    let mut buf = [0u8; 1];
    assert!(
        vip.read(&mut buf).is_err(),
        "a paused HAProxy said something"
    );
    lab.resume_lb();
    lab.wait_lb(&["m1", "m2", "m3"], "UP", Duration::from_secs(10))
        .unwrap();
}

/// `kubectl get`'s rows as columns, header first.
fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], col: usize, name: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.get(col).is_some_and(|c| c == name))
        .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
}

#[test]
fn kubectl_get_prints_the_servers_table_columns() {
    if !have_kubectl() {
        testlab::skip::skip(
            "kubectl_get_prints_the_servers_table_columns",
            "kubectl is not installed (kubernetes-client)",
        );
        return;
    }
    let Some(lab) = Lab::start_or_skip("kubectl_get_prints_the_servers_table_columns") else {
        return;
    };
    let (m2, m2_ip) = lab.masters[1].clone();
    lab.set_node(&m2, m2_ip, true, false).unwrap();
    lab.set_daemon_pod("calico-node", "w1", false).unwrap();

    // Nodes: STATUS from the Ready condition, ROLES from the role labels.
    let (ok, out, err) = kubectl(&lab, &["get", "nodes"]);
    assert!(ok, "kubectl get nodes: {err}");
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{out}"
    );
    assert_eq!(rows.len(), 5, "{out}");
    for r in &rows[1..] {
        let want = if r[0] == m2 { "NotReady" } else { "Ready" };
        assert_eq!(r[1], want, "{out}");
        let role = if r[0].starts_with('m') {
            "control-plane"
        } else {
            "<none>"
        };
        assert_eq!(r[2], role, "{out}");
        assert!(
            r[3].ends_with('s') || r[3].ends_with('m'),
            "AGE {}: {out}",
            r[3]
        );
        assert_eq!(r[4], "v1.32.0", "{out}");
    }
    // What a script greps for: ` Ready` only on the Ready nodes.
    let ready: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" Ready "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ready, ["m1", "m3", "w1"], "{out}");

    // One node, and the wide columns.
    let (ok, out, err) = kubectl(&lab, &["get", "node", &m2, "-o", "wide"]);
    assert!(ok, "{err}");
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ],
        "{out}"
    );
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1][..2], [m2.clone(), "NotReady".to_string()], "{out}");
    assert_eq!(rows[1][5], m2_ip.to_string(), "{out}");
    assert_eq!(rows[1][6], "<none>", "{out}");

    // Pods in every namespace: kubectl adds NAMESPACE from each row's object.
    let (ok, out, err) = kubectl(&lab, &["get", "pods", "-A"]);
    assert!(ok, "kubectl get pods -A: {err}");
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(rows.len(), 5, "{out}");
    for r in &rows[1..] {
        assert_eq!(r[0], "kube-system", "{out}");
        let want = if r[1] == "calico-node-w1" {
            "Pending"
        } else {
            "Running"
        };
        assert_eq!(
            (r[2].as_str(), r[3].as_str(), r[4].as_str()),
            ("0/1", want, "0"),
            "{out}"
        );
    }
    let (ok, out, err) = kubectl(&lab, &["get", "pods", "-n", "kube-system", "-o", "wide"]);
    assert!(ok, "{err}");
    let rows = table_rows(&out);
    assert_eq!(
        rows[0][..9],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE"
        ],
        "{out}"
    );
    assert_eq!(row(&rows, 0, "calico-node-m1")[6], "m1", "{out}");

    // Leases: HOLDER.
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hacli-disruption-lock", "namespace": "kube-system"},
        "spec": {"holderIdentity": "gate@m2", "leaseDurationSeconds": 300}
    });
    lab.store().create(lease).unwrap();
    let (ok, out, err) = kubectl(&lab, &["get", "leases", "-n", "kube-system"]);
    assert!(ok, "{err}");
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "HOLDER", "AGE"], "{out}");
    assert_eq!(
        row(&rows, 0, "hacli-disruption-lock")[1],
        "gate@m2",
        "{out}"
    );

    // Other resources: the generic table.
    let (ok, out, err) = kubectl(&lab, &["get", "namespaces"]);
    assert!(ok, "{err}");
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "CREATED", "AT"], "{out}");
    assert!(rows.iter().any(|r| r[0] == "kube-system"), "{out}");

    // Scripts that ask for objects still get objects.
    let (ok, out, err) = kubectl(&lab, &["get", "nodes", "-o", "name"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
}
