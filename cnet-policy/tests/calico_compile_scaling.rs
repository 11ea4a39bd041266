//! The compiler's scaling rule holds for Calico extended matches too: rules depend on the
//! policies only; more pods only add set elements (and dispatch entries).

use cnet_policy::calico::CalicoObjects;
use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
use cnet_policy::parse::ApiObject;
use cnet_policy::{Endpoint, Inventory, parse_yaml_objects};

const POLICIES: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: ext, labels: {kind: ext}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec:
  selector: app == 'a'
  types: [Ingress, Egress]
  ingress:
  - action: Deny
    source: {notSelector: app == 'b', notNets: [10.1.0.0/16]}
  - action: Allow
    protocol: TCP
    source: {selector: app == 'b' || kind == 'ext', nets: [10.0.0.0/8]}
    destination: {notPorts: [http, 22], selector: has(app)}
  - action: Allow
    protocol: ICMP
    notICMP: {type: 5}
  egress:
  - action: Pass
    protocol: TCP
    notProtocol: UDP
    destination: {selector: app == 'c', ports: ['1000:2000']}
"#;

fn rules_and_elements(pods: usize) -> (usize, usize) {
    let mut c = CalicoObjects::default();
    for doc in POLICIES.split("---\n") {
        for o in parse_yaml_objects(doc).expect("yaml") {
            let ApiObject::Other { value, .. } = o else {
                panic!("not a Calico object")
            };
            c.add_value(value).expect("valid");
        }
    }
    let set = c.policy_set(&[], &[]).expect("pipeline");
    let mut inv = Inventory::default();
    for i in 0..pods {
        let app = ["a", "b", "c"][i % 3];
        inv.upsert_endpoint(Endpoint::new(
            "ns",
            &format!("p{i}"),
            [("app".to_string(), app.to_string())].into(),
            vec![
                format!("10.0.{}.{}", i / 200, 1 + i % 200)
                    .parse()
                    .expect("ip"),
            ],
        ));
    }
    let rs = compile(
        &set,
        &inv,
        &Attachments::default(),
        &CompileOptions::new(Mode::Bridge),
    )
    .expect("compiles");
    let t = rs.tables.values().next().expect("table");
    (t.rule_count(), t.element_count())
}

#[test]
fn extended_rules_do_not_grow_with_pods() {
    let (r3, e3) = rules_and_elements(3);
    let (r300, e300) = rules_and_elements(300);
    println!("3 pods: {r3} rules, {e3} elements; 300 pods: {r300} rules, {e300} elements");
    assert_eq!(r3, r300, "rule count changed with the number of pods");
    assert!(e300 > e3 + 250, "{e3} -> {e300}");
}
