//! Calico-style policies (projectcalico.org/v3) through normalisation and the evaluator:
//! tiers and their order/defaults, interleaving with AdminNetworkPolicy, policy order, every
//! rule field, network sets, Log, staged policies and validation. Expectations follow
//! Calico's policy reference (docs.tigera.io: GlobalNetworkPolicy, NetworkPolicy, Tier,
//! Rule, NetworkSet, GlobalNetworkSet, Selectors).

use cnet_policy::admin::AdminPolicyObject;
use cnet_policy::calico::CalicoObjects;
use cnet_policy::evaluator::SideReason;
use cnet_policy::parse::ApiObject;
use cnet_policy::{
    Action, Decision, Endpoint, Evaluator, Flow, Inventory, NamedPort, Protocol, Verdict,
    parse_yaml_objects,
};
use std::collections::BTreeMap;

fn objects(yaml: &str) -> (CalicoObjects, Vec<AdminPolicyObject>) {
    let mut c = CalicoObjects::default();
    let mut admin = Vec::new();
    for o in parse_yaml_objects(yaml).expect("yaml") {
        let ApiObject::Other {
            api_version,
            kind,
            value,
        } = o
        else {
            panic!("not a Calico/admin object")
        };
        if CalicoObjects::accepts(&api_version, &kind) {
            c.add_value(value).expect("valid Calico object");
        } else {
            admin.push(AdminPolicyObject::from_value(value).expect("admin"));
        }
    }
    (c, admin)
}

fn error_of(yaml: &str) -> String {
    let mut c = CalicoObjects::default();
    for o in parse_yaml_objects(yaml).expect("yaml") {
        if let ApiObject::Other { value, .. } = o {
            if let Err(e) = c.add_value(value) {
                return e.to_string();
            }
        }
    }
    match c.policy_set(&[], &[]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted: {yaml}"),
    }
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// prod/web 10.0.0.1 (named port http=8080/TCP), prod/db 10.0.0.2, dev/tool 10.0.1.1.
fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.upsert_namespace("prod", labels(&[("env", "prod")]));
    inv.upsert_namespace("dev", labels(&[("env", "dev")]));
    let mut web = Endpoint::new(
        "prod",
        "web",
        labels(&[("app", "web"), ("tier", "frontend")]),
        vec!["10.0.0.1".parse().expect("ip")],
    );
    web.named_ports.insert(
        "http".into(),
        NamedPort {
            port: 8080,
            protocol: Protocol::Tcp,
        },
    );
    inv.upsert_endpoint(web);
    inv.upsert_endpoint(Endpoint::new(
        "prod",
        "db",
        labels(&[("app", "db"), ("tier", "backend")]),
        vec!["10.0.0.2".parse().expect("ip")],
    ));
    inv.upsert_endpoint(Endpoint::new(
        "dev",
        "tool",
        labels(&[("app", "tool")]),
        vec!["10.0.1.1".parse().expect("ip")],
    ));
    inv
}

fn eval(yaml: &str) -> Evaluator {
    let (c, admin) = objects(yaml);
    Evaluator::new(c.policy_set(&[], &admin).expect("pipeline"), inventory())
}

fn flow(src: &str, dst: &str, protocol: Protocol, port: u16) -> Flow {
    Flow {
        src: src.parse().expect("ip"),
        dst: dst.parse().expect("ip"),
        protocol,
        dst_port: port,
    }
}

fn tcp(e: &Evaluator, src: &str, dst: &str, port: u16) -> Decision {
    e.decide(&flow(src, dst, Protocol::Tcp, port))
}

const WEB: &str = "10.0.0.1";
const DB: &str = "10.0.0.2";
const TOOL: &str = "10.0.1.1";
const EXT: &str = "192.0.2.7";

#[test]
fn gnp_deny_is_explained_across_tiers() {
    let e = eval(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: protect-db}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {selector: app == 'web'}\n\
         \x20 - action: Deny\n    source: {namespaceSelector: env == 'dev'}\n",
    );
    assert_eq!(tcp(&e, WEB, DB, 5432).verdict, Verdict::Allow);
    let d = tcp(&e, TOOL, DB, 5432);
    assert_eq!(d.verdict, Verdict::Deny);
    let text = d.to_string();
    assert!(
        text.contains("denied by GlobalNetworkPolicy protect-db rule ingress[1] (tier default)"),
        "{text}"
    );
    // Selected in tier default, nothing matched: end-of-tier deny.
    let d = tcp(&e, EXT, DB, 5432);
    assert_eq!(d.ingress.reason, SideReason::TierDefault("default".into()));
    // Not selected: open.
    assert_eq!(tcp(&e, TOOL, WEB, 80).verdict, Verdict::Allow);
}

const TIERS: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n\
---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: platform}\nspec: {order: 2000, defaultAction: Pass}\n";

#[test]
fn tier_order_pass_and_default_action() {
    // security (100): pass everything from prod, deny from dev. platform (2000, default Pass):
    // nothing matches. default tier: allow from web only.
    let e = eval(&format!(
        "{TIERS}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.gate}}\n\
         spec:\n  tier: security\n  selector: app == 'db'\n  ingress:\n  - action: Pass\n    source: {{namespaceSelector: env == 'prod'}}\n\
         \x20 - action: Deny\n    source: {{namespaceSelector: env == 'dev'}}\n\
         ---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: platform.noop}}\n\
         spec:\n  tier: platform\n  selector: all()\n  ingress:\n  - action: Allow\n    protocol: UDP\n\
         ---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: db, namespace: prod}}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {{selector: app == 'web'}}\n"
    ));
    let tiers: Vec<&str> = e.policies().tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tiers, ["security", "platform", "default"]);
    assert_eq!(
        tcp(&e, WEB, DB, 1).verdict,
        Verdict::Allow,
        "passed, platform passes by default, allowed in default"
    );
    let d = tcp(&e, TOOL, DB, 1);
    assert!(
        matches!(d.ingress.reason, SideReason::Rule(Action::Deny, ref r) if r.tier == "security"),
        "{d}"
    );
    // External: security selects but no rule matches -> security's default (Deny).
    assert_eq!(
        tcp(&e, EXT, DB, 1).ingress.reason,
        SideReason::TierDefault("security".into())
    );
    // web: only platform selects it (default Pass) -> end of pipeline allows.
    assert_eq!(
        tcp(&e, EXT, WEB, 1).ingress.reason,
        SideReason::AllTiersPassed
    );
    // UDP into db from dev: platform's Allow is never reached (security denies first).
    assert_eq!(
        e.decide(&flow(TOOL, DB, Protocol::Udp, 53)).verdict,
        Verdict::Deny
    );
}

#[test]
fn calico_tiers_interleave_with_anp_by_order() {
    // ANP denies dev -> db. A Calico tier at order 100 (before the ANP tier at 1000) allows
    // it first; a tier at 2000 comes after the ANP.
    let anp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: deny-dev}\n\
               spec:\n  priority: 10\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {matchLabels: {env: dev}}}]\n";
    let allow = |tier: &str| {
        format!(
            "{TIERS}---\n{anp}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: allow-dev}}\n\
             spec:\n  tier: {tier}\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {{namespaceSelector: env == 'dev'}}\n"
        )
    };
    let early = eval(&allow("security"));
    let names: Vec<&str> = early
        .policies()
        .tiers
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names.first(), Some(&"security"));
    assert_eq!(tcp(&early, TOOL, DB, 80).verdict, Verdict::Allow);
    let late = eval(&allow("platform"));
    let d = tcp(&late, TOOL, DB, 80);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.to_string().contains("AdminNetworkPolicy deny-dev"), "{d}");
}

#[test]
fn policy_order_lower_first_unset_last() {
    let p = |name: &str, order: &str, action: &str| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  {order}selector: app == 'db'\n  ingress:\n  - action: {action}\n"
        )
    };
    let e = eval(
        &(p("a-unset", "", "Deny")
            + &p("b-200", "order: 200\n  ", "Allow")
            + &p("c-100", "order: 100\n  ", "Log")),
    );
    let d = tcp(&e, WEB, DB, 1);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(
        d.ingress.logged.len(),
        1,
        "Log recorded, evaluation continued: {d}"
    );
    assert!(d.to_string().contains("b-200"));
    let e = eval(&(p("a-unset", "", "Deny") + &p("b-200", "order: 200\n  ", "Pass")));
    assert_eq!(
        tcp(&e, WEB, DB, 1).verdict,
        Verdict::Allow,
        "Pass with no later tier: allowed"
    );
}

#[test]
fn types_default_from_rules() {
    let e = eval(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: eg, namespace: prod}\n\
         spec:\n  selector: app == 'web'\n  egress:\n  - action: Allow\n    destination: {selector: app == 'db'}\n",
    );
    let p = &e.policies().tiers[0].policies[0];
    assert!(
        p.ingress.is_some() && p.egress.is_some(),
        "egress rules add Egress; Ingress always"
    );
    assert_eq!(tcp(&e, WEB, DB, 1).verdict, Verdict::Allow);
    assert_eq!(tcp(&e, WEB, TOOL, 1).verdict, Verdict::Deny);
    assert_eq!(
        tcp(&e, DB, WEB, 1).verdict,
        Verdict::Deny,
        "ingress isolated with no rules"
    );
    let e = eval(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: eg, namespace: prod}\n\
         spec:\n  selector: app == 'web'\n  types: [Egress]\n",
    );
    assert_eq!(tcp(&e, DB, WEB, 1).verdict, Verdict::Allow);
    assert_eq!(tcp(&e, WEB, DB, 1).verdict, Verdict::Deny);
}

fn one_rule(rule: &str) -> Evaluator {
    eval(&format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: r}}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n{rule}"
    ))
}

fn allows(e: &Evaluator, src: &str, protocol: Protocol, port: u16) -> bool {
    e.decide(&flow(src, DB, protocol, port)).verdict == Verdict::Allow
}

#[test]
fn protocol_and_not_protocol() {
    let e = one_rule("    protocol: TCP\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1) && !allows(&e, WEB, Protocol::Udp, 1));
    let e = one_rule("    protocol: 17\n");
    assert!(allows(&e, WEB, Protocol::Udp, 1) && !allows(&e, WEB, Protocol::Tcp, 1));
    let e = one_rule("    notProtocol: UDP\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1) && allows(&e, WEB, Protocol::Sctp, 1));
    assert!(!allows(&e, WEB, Protocol::Udp, 1));
    let e = one_rule("    protocol: sctp\n");
    assert!(allows(&e, WEB, Protocol::Sctp, 9));
}

#[test]
fn ports_ranges_named_and_not_ports() {
    let e = one_rule("    protocol: TCP\n    destination: {ports: [80, '8000:8080']}\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 80) && allows(&e, WEB, Protocol::Tcp, 8000));
    assert!(allows(&e, WEB, Protocol::Tcp, 8080) && !allows(&e, WEB, Protocol::Tcp, 8081));
    assert!(!allows(&e, WEB, Protocol::Udp, 80));
    let e = one_rule("    protocol: TCP\n    destination: {notPorts: ['1:1023']}\n");
    assert!(!allows(&e, WEB, Protocol::Tcp, 443) && allows(&e, WEB, Protocol::Tcp, 1024));
    // Named ports resolve on the destination endpoint (web has http = 8080/TCP).
    let e = eval(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: r}\n\
         spec:\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [http]}\n",
    );
    assert_eq!(tcp(&e, DB, WEB, 8080).verdict, Verdict::Allow);
    assert_eq!(tcp(&e, DB, WEB, 80).verdict, Verdict::Deny);
}

#[test]
fn nets_not_nets_selector_not_selector() {
    let e = one_rule("    source: {nets: [10.0.0.0/24]}\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1) && !allows(&e, TOOL, Protocol::Tcp, 1));
    let e = one_rule("    source: {notNets: [10.0.1.0/24]}\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1) && allows(&e, EXT, Protocol::Tcp, 1));
    assert!(!allows(&e, TOOL, Protocol::Tcp, 1));
    let e = one_rule("    source: {notSelector: app == 'tool'}\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1) && allows(&e, EXT, Protocol::Tcp, 1));
    assert!(!allows(&e, TOOL, Protocol::Tcp, 1));
    // selector AND nets.
    let e = one_rule("    source: {selector: has(app), nets: [10.0.1.0/24]}\n");
    assert!(allows(&e, TOOL, Protocol::Tcp, 1) && !allows(&e, WEB, Protocol::Tcp, 1));
    // Destination-side conditions on an ingress rule apply to the selected endpoint.
    let e = one_rule("    destination: {nets: [10.9.0.0/16]}\n");
    assert!(!allows(&e, WEB, Protocol::Tcp, 1));
    // namespaceSelector alone selects every endpoint in those namespaces, not outside.
    let e = one_rule("    source: {namespaceSelector: env == 'dev'}\n");
    assert!(allows(&e, TOOL, Protocol::Tcp, 1) && !allows(&e, WEB, Protocol::Tcp, 1));
    assert!(!allows(&e, EXT, Protocol::Tcp, 1));
}

#[test]
fn icmp_and_not_icmp() {
    // Our flows are TCP/UDP/SCTP: an ICMP rule never matches them, notICMP never excludes.
    let e = one_rule("    protocol: ICMP\n    icmp: {type: 8, code: 0}\n");
    assert!(!allows(&e, WEB, Protocol::Tcp, 1));
    let e = one_rule("    protocol: ICMP\n    notICMP: {type: 8}\n");
    assert!(
        !allows(&e, WEB, Protocol::Tcp, 1),
        "protocol ICMP still required"
    );
    let e = one_rule("    notProtocol: ICMP\n");
    assert!(allows(&e, WEB, Protocol::Tcp, 1));
}

#[test]
fn network_sets_are_matched_like_endpoints() {
    let sets = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: partners, labels: {role: partner}}\n\
                spec: {nets: [192.0.2.0/24]}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkSet\n\
                metadata: {name: vpn, namespace: prod, labels: {role: vpn}}\nspec: {nets: [198.51.100.0/24]}\n---\n";
    let e = eval(&format!(
        "{sets}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: r}}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {{selector: role == 'partner'}}\n\
         \x20 - action: Allow\n    source: {{selector: role == 'vpn', namespaceSelector: env == 'prod'}}\n"
    ));
    assert!(
        allows(&e, EXT, Protocol::Tcp, 1),
        "global network set matched"
    );
    assert!(
        allows(&e, "198.51.100.9", Protocol::Tcp, 1),
        "namespaced set in a selected namespace"
    );
    assert!(!allows(&e, "203.0.113.1", Protocol::Tcp, 1));
    // A namespaced NetworkPolicy sees its own namespace's sets, and global sets only via global().
    let e = eval(&format!(
        "{sets}apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: r, namespace: prod}}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {{selector: role == 'vpn'}}\n\
         \x20 - action: Allow\n    source: {{selector: role == 'partner'}}\n"
    ));
    assert!(allows(&e, "198.51.100.9", Protocol::Tcp, 1));
    assert!(
        !allows(&e, EXT, Protocol::Tcp, 1),
        "global set needs namespaceSelector global()"
    );
    let e = eval(&format!(
        "{sets}apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: r, namespace: prod}}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {{selector: role == 'partner', namespaceSelector: global()}}\n"
    ));
    assert!(allows(&e, EXT, Protocol::Tcp, 1));
    assert!(
        !allows(&e, WEB, Protocol::Tcp, 1),
        "global() selects no pods"
    );
}

#[test]
fn staged_policies_report_but_never_enforce() {
    let (c, _) = objects(
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: lock-db}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Deny\n",
    );
    let enforced = Evaluator::new(c.policy_set(&[], &[]).expect("set"), inventory());
    let staged = Evaluator::new(c.staged_policy_set(&[], &[]).expect("set"), inventory());
    assert_eq!(tcp(&enforced, WEB, DB, 1).verdict, Verdict::Allow);
    let d = tcp(&staged, WEB, DB, 1);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.to_string().contains("lock-db"));
}

#[test]
fn validation_names_field_and_column() {
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n  - action: Allow\n    source: {selector: \"app = 'x'\"}\n",
    );
    assert!(
        e.contains("spec.ingress[0].source.selector") && e.contains("column 5"),
        "{e}"
    );
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  selector: \"has(\"\n",
    );
    assert!(e.contains("spec.selector") && e.contains("column 5"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  ingress:\n  - action: Allow\n    destination: {ports: [80]}\n",
    );
    assert!(e.contains("ports need protocol"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {tier: nope}\n",
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec: {namespaceSelector: all()}\n",
    );
    assert!(e.contains("namespaceSelector"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  ingress:\n  - action: Reject\n",
    );
    assert!(e.contains("spec.ingress[0].action"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: ['90:80']}\n",
    );
    assert!(e.contains("start > end"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  types: [Ingress]\n  egress:\n  - action: Allow\n",
    );
    assert!(e.contains("spec.egress"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    icmp: {type: 8}\n",
    );
    assert!(e.contains("ICMP"), "{e}");
    let e = error_of(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n1}\n",
    );
    assert!(e.contains("interfaceName or expectedIPs"), "{e}");
}

#[test]
fn compiler_takes_plain_and_extended_calico_rules() {
    use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
    let (c, _) = objects(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: log-web}\n\
         spec:\n  selector: app == 'web'\n  ingress:\n  - action: Log\n    protocol: TCP\n\
         \x20 - action: Deny\n    source: {notNets: [10.0.1.0/24]}\n  - action: Allow\n    source: {selector: app == 'tool', namespaceSelector: env == 'dev'}\n",
    );
    let set = c.policy_set(&[], &[]).expect("set");
    let rs = compile(
        &set,
        &inventory(),
        &Attachments::default(),
        &CompileOptions::new(Mode::Bridge),
    )
    .expect("plain Calico rules compile");
    let text = cnet_policy::nft::render_ruleset(&rs);
    assert!(
        text.contains("log prefix \"cnet log-web ing[0] \""),
        "{text}"
    );
    // An extended match (notPorts) compiles to a negated port comparison.
    let (c, _) = objects(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n\
         spec:\n  selector: app == 'web'\n  ingress:\n  - action: Deny\n    protocol: TCP\n    destination: {notPorts: [80]}\n",
    );
    let set = c.policy_set(&[], &[]).expect("set");
    let rs = compile(
        &set,
        &inventory(),
        &Attachments::default(),
        &CompileOptions::new(Mode::Bridge),
    )
    .expect("extended Calico rules compile");
    let text = cnet_policy::nft::render_ruleset(&rs);
    assert!(text.contains("th dport != 80 drop"), "{text}");
}
