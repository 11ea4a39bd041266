//! Parsing (YAML, JSON, multi-document, List) and API-server validation with field paths.

use cnet_policy::api::IntOrString;
use cnet_policy::error::{FieldErrorKind, Format};
use cnet_policy::parse::ApiObject;
use cnet_policy::{
    PolicyError, parse_json, parse_json_objects, parse_yaml, parse_yaml_objects, render_json,
    render_yaml,
};

const HEAD: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\n";

/// The field paths of a validation failure.
fn invalid_paths(spec_yaml: &str) -> Vec<String> {
    match parse_yaml(&format!("{HEAD}{spec_yaml}")) {
        Err(PolicyError::Invalid { errors, .. }) => {
            errors.0.iter().map(|e| e.path.clone()).collect()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn yaml_multi_document_and_json_list() {
    let yaml = format!(
        "{HEAD}spec: {{podSelector: {{}}}}\n---\n---\n{}",
        HEAD.replace("name: p", "name: q")
    );
    let nps = parse_yaml(&yaml).expect("two documents, one empty");
    assert_eq!(nps.len(), 2);
    assert_eq!(nps[1].metadata.name, "q");
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "a", "namespace": "n", "uid": "x", "resourceVersion": "7"},
         "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                  "ingress": [{"ports": [{"port": "http"}, {"port": 80, "endPort": 81, "protocol": "UDP"}]}]}}]}"#;
    let nps = parse_json(json).expect("List");
    assert_eq!(nps.len(), 1);
    let ports = nps[0].spec.ingress.as_ref().expect("ingress")[0]
        .ports
        .as_ref()
        .expect("ports");
    assert_eq!(ports[0].port, Some(IntOrString::String("http".into())));
    assert_eq!(ports[1].end_port, Some(81));
    let typed = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
        "items": [{"metadata": {"name": "a"}, "spec": {}}]}"#;
    let nps = parse_json(typed).expect("typed list items take the list's kind");
    assert_eq!(nps[0].namespace(), "default");
}

#[test]
fn other_kinds_are_kept_as_objects_and_rejected_by_the_netpol_entry_points() {
    let yaml = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\n";
    let objs = parse_yaml_objects(yaml).expect("parses");
    assert!(matches!(&objs[0], ApiObject::Other { kind, .. } if kind == "AdminNetworkPolicy"));
    assert!(matches!(
        parse_yaml(yaml),
        Err(PolicyError::UnsupportedKind { .. })
    ));
    assert!(matches!(
        parse_json_objects("[1]"),
        Err(PolicyError::Syntax { .. })
    ));
}

#[test]
fn syntax_errors_carry_a_location() {
    match parse_yaml("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: [unclosed\n") {
        Err(PolicyError::Syntax {
            format: Format::Yaml,
            location: Some(l),
            ..
        }) => assert!(l.line >= 3),
        other => panic!("{other:?}"),
    }
    match parse_json("{\n\"kind\": }") {
        Err(PolicyError::Syntax {
            format: Format::Json,
            location: Some(l),
            ..
        }) => assert_eq!(l.line, 2),
        other => panic!("{other:?}"),
    }
    // A wrong type deep inside a document: field path, line and column.
    let text =
        format!("{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: [80]\n");
    match parse_yaml(&text) {
        Err(PolicyError::Syntax {
            location: Some(l),
            message,
            ..
        }) => {
            assert_eq!(l.line, 8, "{message}");
            assert!(message.contains("spec.ingress[0].ports[0]"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Wrong type and unknown field inside spec.
    assert!(matches!(
        parse_yaml(&format!("{HEAD}spec: {{podSelector: 5}}\n")),
        Err(PolicyError::Syntax { .. })
    ));
    assert!(matches!(
        parse_yaml(&format!("{HEAD}spec: {{podSelecter: {{}}}}\n")),
        Err(PolicyError::Syntax { .. })
    ));
}

#[test]
fn end_port_must_not_be_below_port() {
    let err = parse_yaml(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  ingress: [{{ports: [{{port: 80}}, {{port: 90, endPort: 80}}]}}]\n"
    ))
    .expect_err("invalid");
    let PolicyError::Invalid { errors, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.0[0].path, "spec.ingress[0].ports[1].endPort");
    assert_eq!(errors.0[0].kind, FieldErrorKind::Invalid);
    assert!(
        err.to_string()
            .contains("spec.ingress[0].ports[1].endPort: must be >= port"),
        "{err}"
    );
}

#[test]
fn end_port_requires_a_numeric_port() {
    assert_eq!(
        invalid_paths(
            "spec:\n  podSelector: {}\n  egress: [{ports: [{port: http, endPort: 90}]}]\n"
        ),
        ["spec.egress[0].ports[0].endPort"]
    );
    assert_eq!(
        invalid_paths("spec:\n  podSelector: {}\n  egress: [{ports: [{endPort: 90}]}]\n"),
        ["spec.egress[0].ports[0].endPort"]
    );
}

#[test]
fn ports_out_of_range_and_bad_names_and_protocols() {
    assert_eq!(
        invalid_paths(
            "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 0}, {port: 65536}, {port: 1, endPort: 70000}, \
             {port: Bad_Name}, {port: \"1234\"}, {port: 80, protocol: ICMP}, {port: 80, protocol: tcp}]}]\n"
        ),
        [
            "spec.ingress[0].ports[0].port",
            "spec.ingress[0].ports[1].port",
            "spec.ingress[0].ports[2].endPort",
            "spec.ingress[0].ports[3].port",
            "spec.ingress[0].ports[4].port",
            "spec.ingress[0].ports[5].protocol",
            "spec.ingress[0].ports[6].protocol",
        ]
    );
}

#[test]
fn label_keys_values_and_operators() {
    assert_eq!(
        invalid_paths(
            "spec:\n  podSelector:\n    matchLabels: {\"-bad\": ok, good: \"bad value\"}\n    matchExpressions:\n    \
             - {key: k, operator: In, values: []}\n    - {key: k, operator: NotIn}\n    \
             - {key: k, operator: Exists, values: [a]}\n    - {key: k, operator: Near}\n    \
             - {key: \"a/b/c\", operator: Exists}\n    - {key: \"Example.com/x\", operator: Exists}\n"
        ),
        [
            "spec.podSelector.matchExpressions[0].values",
            "spec.podSelector.matchExpressions[1].values",
            "spec.podSelector.matchExpressions[2].values",
            "spec.podSelector.matchExpressions[3].operator",
            "spec.podSelector.matchExpressions[4].key",
            "spec.podSelector.matchExpressions[5].key",
            "spec.podSelector.matchLabels",
            "spec.podSelector.matchLabels",
        ]
    );
    // Valid: prefixed keys, empty values, 63-character values.
    let long = "a".repeat(63);
    parse_yaml(&format!(
        "{HEAD}spec:\n  podSelector:\n    matchLabels: {{example.com/app: \"\", k: {long}}}\n"
    ))
    .expect("valid selector");
    assert_eq!(
        invalid_paths(&format!(
            "spec:\n  podSelector:\n    matchLabels: {{k: {long}a}}\n"
        )),
        ["spec.podSelector.matchLabels"]
    );
}

#[test]
fn cidrs_and_excepts() {
    assert_eq!(
        invalid_paths(
            "spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0}\n    \
             - ipBlock: {cidr: 10.0.0.0/33}\n    - ipBlock: {cidr: 300.0.0.0/8}\n    \
             - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16, 10.0.0.0/8, 10.0.0.0/4, \"fd00::/64\", bogus]}\n    \
             - ipBlock: {cidr: \"\"}\n"
        ),
        [
            "spec.ingress[0].from[0].ipBlock.cidr",
            "spec.ingress[0].from[1].ipBlock.cidr",
            "spec.ingress[0].from[2].ipBlock.cidr",
            "spec.ingress[0].from[3].ipBlock.except[0]",
            "spec.ingress[0].from[3].ipBlock.except[1]",
            "spec.ingress[0].from[3].ipBlock.except[2]",
            "spec.ingress[0].from[3].ipBlock.except[3]",
            "spec.ingress[0].from[3].ipBlock.except[4]",
            "spec.ingress[0].from[4].ipBlock.cidr",
        ]
    );
    parse_yaml(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 10.1.2.3/8, except: [10.1.0.0/16]}}}}, \
         {{ipBlock: {{cidr: \"2001:db8::/32\", except: [\"2001:db8:1::/48\"]}}}}]}}]\n"
    ))
    .expect("host bits are accepted (legacy CIDR field); IPv6");
}

#[test]
fn peers_need_exactly_one_kind() {
    assert_eq!(
        invalid_paths(
            "spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - {}\n    \
             - {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}\n"
        ),
        ["spec.ingress[0].from[0]", "spec.ingress[0].from[1]"]
    );
}

#[test]
fn policy_types_and_metadata() {
    assert_eq!(
        invalid_paths("spec: {podSelector: {}, policyTypes: [Ingress, Sideways]}\n"),
        ["spec.policyTypes[1]"]
    );
    assert_eq!(
        invalid_paths("spec: {podSelector: {}, policyTypes: [Ingress, Egress, Ingress]}\n"),
        ["spec.policyTypes"]
    );
    let bad_meta = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Bad_Name, namespace: \"a.b\"}\n";
    match parse_yaml(bad_meta) {
        Err(PolicyError::Invalid { errors, .. }) => {
            let paths: Vec<_> = errors.0.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, ["metadata.name", "metadata.namespace"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_yaml("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: {}\n"),
        Err(PolicyError::Invalid { .. })
    ));
}

#[test]
fn render_round_trips_yaml_and_json() {
    let yaml = format!(
        "{HEAD}spec:\n  podSelector: {{matchExpressions: [{{key: a, operator: Exists}}]}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{x: y}}}}}}], ports: [{{port: dns, protocol: UDP}}]}}]\n  \
         egress: []\n  policyTypes: [Egress]\n"
    );
    let nps = parse_yaml(&yaml).expect("valid");
    assert_eq!(
        parse_yaml(&render_yaml(&nps).expect("yaml")).expect("reparse"),
        nps
    );
    assert_eq!(
        parse_json(&render_json(&nps).expect("json")).expect("reparse"),
        nps
    );
    let two = vec![nps[0].clone(), nps[0].clone()];
    assert_eq!(
        parse_json(&render_json(&two).expect("list")).expect("reparse"),
        two
    );
    assert_eq!(
        parse_yaml(&render_yaml(&two).expect("multi")).expect("reparse"),
        two
    );
}

#[test]
fn defaults_are_filled_as_the_api_server_does() {
    let nps = parse_yaml(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  egress: [{{ports: [{{port: 53}}]}}]\n"
    ))
    .expect("valid");
    let d = nps[0].with_defaults();
    assert_eq!(
        d.spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    assert_eq!(
        d.spec.egress.as_ref().expect("egress")[0]
            .ports
            .as_ref()
            .expect("ports")[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
    let none =
        parse_yaml(&format!("{HEAD}spec:\n  podSelector: {{}}\n  egress: []\n")).expect("valid");
    assert_eq!(
        none[0].policy_types(),
        (true, false),
        "empty egress list does not default Egress"
    );
    let explicit = parse_yaml(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  egress: [{{}}]\n  policyTypes: [Ingress]\n"
    ))
    .expect("valid");
    assert_eq!(
        explicit[0].policy_types(),
        (true, false),
        "an explicit list wins"
    );
}
