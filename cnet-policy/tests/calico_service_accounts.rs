//! Calico service-account matching (docs.tigera.io, "Use service accounts rules in policy" and
//! the NetworkPolicy/GlobalNetworkPolicy and Rule references): a policy's
//! `serviceAccountSelector` narrows the endpoints it applies to by their service account's
//! labels (the account's name is the label `projectcalico.org/name`); a rule's
//! `serviceAccounts` (`names`, `selector`, both AND-ed, further limited by the entity's
//! `namespaceSelector` and `selector`) matches the peer by its account. Endpoints carry their
//! account as labels (`Endpoint::with_service_account`), so evaluator and compiler both see
//! it through ordinary selectors.

use cnet_policy::calico::CalicoObjects;
use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
use cnet_policy::parse::ApiObject;
use cnet_policy::{Endpoint, Evaluator, Flow, Inventory, Protocol, Verdict, parse_yaml_objects};
use std::collections::BTreeMap;

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn policy_set(yaml: &str) -> cnet_policy::PolicySet {
    let mut c = CalicoObjects::default();
    for o in parse_yaml_objects(yaml).expect("yaml") {
        let ApiObject::Other { value, .. } = o else {
            panic!("not a Calico object")
        };
        c.add_value(value).expect("valid Calico object");
    }
    c.policy_set(&[], &[]).expect("pipeline")
}

const DB: &str = "10.0.0.1";
const API: &str = "10.0.0.2";
const BATCH: &str = "10.0.0.3";
const DEV_API: &str = "10.0.1.2";
const NOSA: &str = "10.0.0.4";

/// prod: db (SA db, team=data), api (SA api, team=pay), batch (SA batch, team=pay),
/// nosa (no account, but a label that tries to claim one); dev: api (SA api, team=pay).
fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.upsert_namespace("prod", labels(&[("env", "prod")]));
    inv.upsert_namespace("dev", labels(&[("env", "dev")]));
    let ep = |ns: &str, name: &str, ip: &str| {
        Endpoint::new(
            ns,
            name,
            labels(&[("app", name)]),
            vec![ip.parse().expect("ip")],
        )
    };
    inv.upsert_endpoint(
        ep("prod", "db", DB).with_service_account("db", &labels(&[("team", "data")])),
    );
    inv.upsert_endpoint(
        ep("prod", "api", API).with_service_account("api", &labels(&[("team", "pay")])),
    );
    inv.upsert_endpoint(
        ep("prod", "batch", BATCH).with_service_account("batch", &labels(&[("team", "pay")])),
    );
    inv.upsert_endpoint(
        ep("dev", "api", DEV_API).with_service_account("api", &labels(&[("team", "pay")])),
    );
    let mut nosa = ep("prod", "nosa", NOSA);
    nosa.labels
        .insert("pcsa.team".to_string(), "data".to_string());
    nosa.clear_service_account();
    inv.upsert_endpoint(nosa);
    inv
}

fn tcp(e: &Evaluator, src: &str, dst: &str) -> Verdict {
    e.decide(&Flow {
        src: src.parse().expect("ip"),
        dst: dst.parse().expect("ip"),
        protocol: Protocol::Tcp,
        dst_port: 5432,
    })
    .verdict
}

#[test]
fn endpoint_carries_its_service_account_as_labels() {
    let ep = Endpoint::new("prod", "x", labels(&[("pcsa.team", "spoof")]), vec![])
        .with_service_account("api", &labels(&[("team", "pay")]));
    assert_eq!(ep.service_account(), Some("api"));
    assert_eq!(ep.labels["pcsa.team"], "pay");
    assert_eq!(ep.labels["pcsa.projectcalico.org/name"], "api");
    assert_eq!(ep.labels["projectcalico.org/serviceaccount"], "api");
    let mut ep = ep;
    ep.clear_service_account();
    assert_eq!(ep.service_account(), None);
    assert!(!ep.labels.keys().any(|k| k.starts_with("pcsa.")));
}

#[test]
fn service_account_selector_narrows_the_policy_subject() {
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: data}\n\
             spec:\n  serviceAccountSelector: team == 'data'\n  ingress:\n  - action: Deny\n",
        ),
        inventory(),
    );
    // db runs as an account labelled team=data: selected, denied.
    assert_eq!(tcp(&e, API, DB), Verdict::Deny);
    // api's account is team=pay: not selected, open.
    assert_eq!(tcp(&e, DB, API), Verdict::Allow);
    // nosa's own pcsa.* label was cleared: not selected.
    assert_eq!(tcp(&e, DB, NOSA), Verdict::Allow);
    // By name, with the projectcalico.org/name label of the account, AND-ed with the selector.
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: by-name}\n\
             spec:\n  selector: app == 'api'\n  serviceAccountSelector: projectcalico.org/name == 'api'\n\
             \x20 ingress:\n  - action: Deny\n",
        ),
        inventory(),
    );
    assert_eq!(tcp(&e, DB, API), Verdict::Deny);
    assert_eq!(tcp(&e, DB, DEV_API), Verdict::Deny);
    assert_eq!(tcp(&e, DB, BATCH), Verdict::Allow);
}

#[test]
fn rule_service_accounts_match_names_selector_and_namespace() {
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db, namespace: prod}\n\
             spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source:\n      serviceAccounts: {names: [api]}\n",
        ),
        inventory(),
    );
    // A namespaced policy's rule selects in its own namespace: prod/api only.
    assert_eq!(tcp(&e, API, DB), Verdict::Allow);
    assert_eq!(tcp(&e, DEV_API, DB), Verdict::Deny);
    assert_eq!(tcp(&e, BATCH, DB), Verdict::Deny);
    assert_eq!(tcp(&e, NOSA, DB), Verdict::Deny);

    // selector over the account's labels, any namespace; names AND selector.
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\n\
             spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source:\n      serviceAccounts: {selector: team == 'pay'}\n",
        ),
        inventory(),
    );
    assert_eq!(tcp(&e, API, DB), Verdict::Allow);
    assert_eq!(tcp(&e, BATCH, DB), Verdict::Allow);
    assert_eq!(tcp(&e, DEV_API, DB), Verdict::Allow);
    assert_eq!(tcp(&e, NOSA, DB), Verdict::Deny);
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\n\
             spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source:\n      \
             namespaceSelector: env == 'prod'\n      serviceAccounts: {names: [batch, api], selector: team == 'pay'}\n",
        ),
        inventory(),
    );
    assert_eq!(tcp(&e, API, DB), Verdict::Allow);
    assert_eq!(tcp(&e, BATCH, DB), Verdict::Allow);
    assert_eq!(tcp(&e, DEV_API, DB), Verdict::Deny);
    // With a selector too: all three conditions.
    let e = Evaluator::new(
        policy_set(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\n\
             spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source:\n      \
             selector: app == 'batch'\n      serviceAccounts: {selector: team == 'pay'}\n",
        ),
        inventory(),
    );
    assert_eq!(tcp(&e, BATCH, DB), Verdict::Allow);
    assert_eq!(tcp(&e, API, DB), Verdict::Deny);
}

#[test]
fn compiled_service_account_sets_hold_exactly_the_accounts_pods() {
    let set = policy_set(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source:\n      serviceAccounts: {names: [api]}\n",
    );
    let rs = compile(
        &set,
        &inventory(),
        &Attachments::default(),
        &CompileOptions::new(Mode::Bridge),
    )
    .expect("compiles");
    let table = rs.tables.values().next().expect("one table");
    let addr = |a: &str| {
        cnet_policy::nft::Element::value(cnet_policy::nft::Value::addr(a.parse().expect("ip")))
    };
    // The peer set of the rule: both api pods (prod and dev), nobody else.
    let peer = table
        .sets
        .values()
        .find(|s| !s.decl.verdict_map && s.elements.contains_key(&addr(API)))
        .expect("a set with the api pod");
    assert!(peer.elements.contains_key(&addr(DEV_API)), "{peer:?}");
    assert_eq!(peer.elements.len(), 2, "{peer:?}");
}
