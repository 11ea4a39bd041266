//! Calico objects through the [`Engine`]: upsert and delete, the ordered pipeline, the state
//! round trip, and the host table appearing and disappearing with host endpoints.
#![allow(clippy::unwrap_used)]

use cnet_policy::Endpoint;
use cnet_policy::compile::Mode;
use cnet_policy::engine::{CalicoKey, Engine, EngineState};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn gnp(name: &str, order: f64, action: &str) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": name},
           "spec": {"order": order, "selector": "app == 'db'",
                    "ingress": [{"action": action, "protocol": "TCP"}]}})
}

fn hep(name: &str, ifname: &str) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
           "metadata": {"name": name, "labels": {"role": "uplink"}},
           "spec": {"node": "n1", "interfaceName": ifname, "expectedIPs": ["192.0.2.1"]}})
}

fn engine() -> Engine {
    let mut e = Engine::new(Mode::Transparent);
    let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
    e.upsert_endpoint(
        Endpoint::new("prod", "db", labels, vec!["10.0.0.2".parse().unwrap()]),
        Some("cnet0000aaaa".into()),
    );
    e
}

#[test]
fn calico_objects_upsert_delete_and_order_before_kubernetes() {
    let mut e = engine();
    let np = cnet_policy::parse_yaml(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: prod}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    e.apply_policy(&np[0]).unwrap();
    let k = e.apply_calico(&gnp("deny", 10.0, "Deny")).unwrap();
    assert_eq!(k.to_string(), "GlobalNetworkPolicy deny");
    // Replaced, not added: one Calico policy.
    e.apply_calico(&gnp("deny", 5.0, "Allow")).unwrap();
    let set = e.policy_set().unwrap().clone();
    let names: Vec<&str> = set.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "default");
    assert_eq!(set.tiers[0].policies.len(), 1);
    assert!(names.len() == 2, "{names:?}");
    // A namespaced kind without a namespace lands in `default`.
    let ns = json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
                    "metadata": {"name": "s"}, "spec": {"nets": ["10.1.0.0/16"]}});
    let k = e.apply_calico(&ns).unwrap();
    assert_eq!(k.namespace.as_deref(), Some("default"));
    assert!(e.delete_calico(&k));
    assert!(!e.delete_calico(&k));
    assert!(e.delete_calico(&CalicoKey::of(&gnp("deny", 0.0, "Deny"))));
    assert_eq!(e.policy_set().unwrap().tiers.len(), 1);
}

#[test]
fn invalid_calico_objects_change_nothing() {
    let mut e = engine();
    e.apply_calico(&gnp("ok", 1.0, "Deny")).unwrap();
    let before = e.state();
    let mut bad = gnp("ok", 1.0, "Deny");
    bad["spec"]["selector"] = json!("app = 'db'");
    let err = e.apply_calico(&bad).unwrap_err().to_string();
    assert!(err.contains("spec.selector"), "{err}");
    let mut wrong = gnp("x", 1.0, "Deny");
    wrong["apiVersion"] = json!("networking.k8s.io/v1");
    assert!(e.apply_calico(&wrong).is_err());
    assert_eq!(e.state(), before);
}

#[test]
fn calico_objects_survive_the_engine_state() {
    let mut e = engine();
    e.apply_calico(&gnp("deny", 10.0, "Deny")).unwrap();
    e.apply_calico(&hep("eth0", "eth0")).unwrap();
    let st = e.state();
    assert_eq!(st.calico_objects.len(), 2);
    let text = serde_json::to_string(&st).unwrap();
    let back: EngineState = serde_json::from_str(&text).unwrap();
    let mut r = Engine::from_state(&back).unwrap();
    assert_eq!(r.render().unwrap(), e.render().unwrap());
    // A state without Calico objects does not mention them (older readers).
    assert!(
        !serde_json::to_string(&engine().state())
            .unwrap()
            .contains("calico")
    );
}

#[test]
fn host_table_follows_host_endpoints() {
    let mut e = engine();
    e.apply_calico(&gnp("deny", 10.0, "Deny")).unwrap();
    assert!(!e.render().unwrap().contains("cnet_host"));
    let k = e.apply_calico(&hep("up", "eth0")).unwrap();
    let text = e.render().unwrap();
    assert!(text.contains("table inet cnet_host"), "{text}");
    assert!(text.contains("table inet cnet "), "{text}");
    assert_eq!(e.desired().unwrap().tables.len(), 2);
    assert!(e.delete_calico(&k));
    assert_eq!(e.desired().unwrap().tables.len(), 1);
    // A host endpoint of another node is not programmed on a node that knows its name.
    let mut opts = cnet_policy::compile::CompileOptions::new(Mode::Transparent);
    opts.node = Some("n2".into());
    let mut other = Engine::with_options(opts);
    other.apply_calico(&hep("up", "eth0")).unwrap();
    assert_eq!(other.desired().unwrap().tables.len(), 1);
}
