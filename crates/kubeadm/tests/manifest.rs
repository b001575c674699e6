//! The shipped sentinel DaemonSet manifest is valid Kubernetes: every
//! document deserializes into its `k8s-openapi` type, and the lock and
//! kill-switch names the RBAC grants match the observer's defaults.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

const MANIFEST: &str = include_str!("../../../examples/deploy/sentinel-daemonset.yaml");

fn docs() -> Vec<Value> {
    MANIFEST
        .split("\n---\n")
        .map(|d| hacore::source::parse::<Value>("sentinel-daemonset.yaml", d).unwrap())
        .collect()
}

fn typed<K: serde::de::DeserializeOwned>(v: &Value) -> K {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{}: {e}", v["kind"]))
}

#[test]
fn every_document_is_a_valid_object() {
    let docs = docs();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "DaemonSet"
        ]
    );
    let _: ServiceAccount = typed(&docs[0]);
    let _: ClusterRole = typed(&docs[1]);
    let _: ClusterRoleBinding = typed(&docs[2]);
    let role: Role = typed(&docs[3]);
    let _: RoleBinding = typed(&docs[4]);
    let ds: DaemonSet = typed(&docs[5]);

    let defaults = kubeadm::ObserverConfig::default();
    let names: Vec<String> = role
        .rules
        .unwrap()
        .iter()
        .flat_map(|r| r.resource_names.clone().unwrap_or_default())
        .collect();
    assert!(names.contains(&defaults.lock.name));
    assert!(names.contains(&defaults.kill_switch.name));
    assert_eq!(defaults.lock.namespace, "kube-system");

    let pod = ds.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.args.as_ref().unwrap()[0], "sentinel");
    assert_eq!(
        c.env.as_ref().unwrap()[0].name,
        "NODE_NAME",
        "the sentinel reads its node name from NODE_NAME"
    );
}
