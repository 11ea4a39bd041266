//! Calico objects (`projectcalico.org/v3`) end to end in a virtual node: pods attached through
//! the real `cnet` binary, objects applied with the real `cnetctl`, TCP probes for verdicts.
#![allow(clippy::unwrap_used)]

use cnet_testsupport::require_priv;
use common::{Lab, write};
use std::net::IpAddr;

mod common;

fn k8s_allow_all_to_db() -> String {
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: prod}\n\
     spec:\n  podSelector:\n    matchLabels: {app: db}\n  ingress:\n  - {}\n"
        .to_string()
}

/// A GlobalNetworkPolicy (order 10) denies sources of a NetworkSet and passes the rest to the
/// Kubernetes tier, which allows everything to db.
fn calico_objects(tool_ip: IpAddr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: tools\n  namespace: dev\n  labels: {{role: tools}}\nspec:\n  nets: [\"{tool_ip}/32\"]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: no-tools}}\nspec:\n  order: 10\n  selector: app == 'db'\n  types: [Ingress]\n  ingress:\n  - action: Deny\n    source:\n      selector: role == 'tools'\n  - action: Pass\n---\n\
         apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: db, namespace: prod}}\nspec:\n  order: 20\n  selector: app == 'db'\n  types: [Ingress]\n  ingress:\n  - action: Pass\n"
    )
}

#[test]
fn global_network_policy_deny_beats_kubernetes_allow() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let (web, db, tool) = (lab.node.pod(), lab.node.pod(), lab.node.pod());
    lab.add(&web, "prod", "web", &[("app", "web")]);
    let db_ip = lab.add(&db, "prod", "db", &[("app", "db")]);
    let tool_ip = lab.add(&tool, "dev", "tool", &[("app", "tool")]);
    let echo = db.tcp_echo();
    let k8s = write(lab.dir.path(), "k8s.yaml", &k8s_allow_all_to_db());
    lab.ctl_ok(&["apply", "-f", &k8s]);
    assert!(tool.tcp_ok(db_ip, echo.port()), "k8s allow");
    assert!(web.tcp_ok(db_ip, echo.port()), "k8s allow");
    let cal = write(lab.dir.path(), "calico.yaml", &calico_objects(tool_ip));
    let out = lab.ctl_ok(&["apply", "-f", &cal]);
    assert!(
        out.contains("GlobalNetworkPolicy.projectcalico.org no-tools created"),
        "{out}"
    );
    // The Calico NetworkPolicy prod/db and the Kubernetes one of the same name coexist.
    assert!(
        out.contains("NetworkPolicy.projectcalico.org prod/db created"),
        "{out}"
    );
    assert!(lab.ctl_ok(&["apply", "-f", &cal]).contains("unchanged"));
    // The Calico tier runs first: tool (in the NetworkSet) is denied despite the k8s allow;
    // web passes on to the Kubernetes tier and is allowed.
    assert!(!tool.tcp_ok(db_ip, echo.port()), "GNP deny beats k8s allow");
    assert!(web.tcp_ok(db_ip, echo.port()), "Pass then k8s allow");
    // explain agrees and names the Calico policy.
    let port = format!("{}/tcp", echo.port());
    let o = lab.ctl(&["explain", "dev/tool", "prod/db", &port]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("no-tools"), "{text}");
    let o = lab.ctl(&["explain", "prod/web", "prod/db", &port]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let pols = lab.ctl_ok(&["get", "policies"]);
    assert!(
        pols.contains("no-tools") && pols.contains("NetworkSet.projectcalico.org"),
        "{pols}"
    );
    assert!(lab.ctl_ok(&["render"]).contains("table inet cnet"));
    // Deleting the Calico objects restores the Kubernetes verdict; the k8s policy stays.
    let out = lab.ctl_ok(&["delete", "-f", &cal]);
    assert_eq!(out.matches("deleted").count(), 3, "{out}");
    assert!(tool.tcp_ok(db_ip, echo.port()), "after delete");
    let pols = lab.ctl_ok(&["get", "policies"]);
    assert!(
        !pols.contains("projectcalico") && pols.contains("db"),
        "{pols}"
    );
}

#[test]
fn bad_calico_objects_name_file_line_and_field() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let bad = write(
        lab.dir.path(),
        "bad.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ok}\nspec: {nets: [10.0.0.0/8]}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad}\nspec:\n  selector: app = 'db'\n",
    );
    let o = lab.ctl(&["apply", "-f", &bad]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("document 2 (line 6)"), "{err}");
    assert!(err.contains("spec.selector"), "{err}");
    let kinds = write(
        lab.dir.path(),
        "kind.yaml",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {}\n",
    );
    let o = lab.ctl(&["apply", "-f", &kinds]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unsupported kind projectcalico.org/v3/IPPool")
    );
    // A policy in a tier that does not exist: refused at programming, nothing stored.
    let tierless = write(
        lab.dir.path(),
        "tier.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: t}\nspec:\n  tier: security\n  selector: all()\n",
    );
    let o = lab.ctl(&["apply", "-f", &tierless]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tier"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !lab.ctl_ok(&["get", "policies", "-o", "json"])
            .contains("\"name\"")
    );
}

/// A HostEndpoint on the node's uplink: host traffic through it follows the
/// GlobalNetworkPolicies that select it (one allowed port, the rest denied), forwarded pod
/// traffic is untouched (no `applyOnForward` policy), and the host table goes away with the
/// last host endpoint.
#[test]
fn host_endpoint_policy_programmed_and_removed() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let pod = lab.node.pod();
    let pod_ip = lab.add(&pod, "prod", "web", &[("app", "web")]);
    let pod_echo = pod.tcp_echo();
    let (open, closed) = (lab.node.ns.tcp_echo(), lab.node.ns.tcp_echo());
    let node: IpAddr = lab.node.addr4.into();
    let outside = &lab.ul.ns;
    assert!(outside.tcp_ok(node, open.port()));
    assert!(outside.tcp_ok(node, closed.port()));
    let f = write(
        lab.dir.path(),
        "hep.yaml",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: node-uplink\n  labels: {{role: uplink}}\nspec:\n  node: node1\n  interfaceName: uplink0\n  expectedIPs: [\"{node}\"]\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: uplink}}\nspec:\n  selector: role == 'uplink'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [{}]\n  egress:\n  - action: Allow\n",
            open.port()
        ),
    );
    let out = lab.ctl_ok(&["apply", "-f", &f]);
    assert!(
        out.contains("HostEndpoint.projectcalico.org node-uplink created"),
        "{out}"
    );
    let tables = lab.node.ns.run(&["nft", "list", "tables"]);
    assert!(
        tables.contains("inet cnet_host") && tables.contains("inet cnet\n"),
        "{tables}"
    );
    assert!(outside.tcp_ok(node, open.port()), "allowed port");
    assert!(
        !outside.tcp_ok(node, closed.port()),
        "host endpoint default deny"
    );
    assert!(
        outside.tcp_ok(pod_ip, pod_echo.port()),
        "forwarded traffic without applyOnForward policy"
    );
    // A pod added while the host table exists: both tables are programmed together.
    let pod2 = lab.node.pod();
    let pod2_ip = lab.add(&pod2, "prod", "web2", &[("app", "web")]);
    let e2 = pod2.tcp_echo();
    assert!(outside.tcp_ok(pod2_ip, e2.port()));
    assert!(
        !outside.tcp_ok(node, closed.port()),
        "still denied after ADD"
    );
    // An untracked (doNotTrack) Deny before connection tracking beats the normal Allow.
    let raw = write(
        lab.dir.path(),
        "raw.yaml",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: raw}}\nspec:\n  selector: role == 'uplink'\n  doNotTrack: true\n  applyOnForward: true\n  ingress:\n  - action: Deny\n    protocol: TCP\n    destination:\n      ports: [{}]\n",
            open.port()
        ),
    );
    lab.ctl_ok(&["apply", "-f", &raw]);
    assert!(lab.ctl_ok(&["render"]).contains("priority -300"));
    assert!(!outside.tcp_ok(node, open.port()), "untracked deny");
    lab.ctl_ok(&["delete", "-f", &raw]);
    assert!(outside.tcp_ok(node, open.port()), "untracked deny lifted");
    // Deleting the objects removes the host table and opens the host again.
    let out = lab.ctl_ok(&["delete", "-f", &f]);
    assert_eq!(out.matches("deleted").count(), 2, "{out}");
    let tables = lab.node.ns.run(&["nft", "list", "tables"]);
    assert!(!tables.contains("cnet_host"), "{tables}");
    assert!(outside.tcp_ok(node, closed.port()), "after delete");
    // The same host endpoint for another node (the network's policy.nodeName is node1) does
    // not apply here.
    let other = std::fs::read_to_string(&f)
        .unwrap()
        .replace("node: node1", "node: node2");
    let other = write(lab.dir.path(), "hep-other.yaml", &other);
    lab.ctl_ok(&["apply", "-f", &other]);
    let tables = lab.node.ns.run(&["nft", "list", "tables"]);
    assert!(!tables.contains("cnet_host"), "{tables}");
    assert!(
        outside.tcp_ok(node, closed.port()),
        "another node's host endpoint"
    );
}
