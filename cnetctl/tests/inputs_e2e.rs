//! The node's inputs beyond a pod's labels, end to end in a virtual node through the real
//! `cnet` and `cnetctl` binaries: namespace labels (`cnetctl label namespace`, `apply -f` of
//! `kind: Namespace`, `get namespaces`) and container ports (`args.cni.ports`,
//! `runtimeConfig.containerPorts`, `cnetctl ports`), checked with TCP probes; bad container
//! ports rejected with the spec's error JSON and nothing left behind.
#![allow(clippy::unwrap_used)]

use cnet_testsupport::require_priv;
use common::{Lab, write};
use serde_json::{Value, json};

mod common;

/// web in `prod` admits, on its named port `http`, pods of namespaces labelled `team: blue`.
const WEB_FROM_BLUE: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-blue, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
    ports:
    - port: http
";

fn with_ports(lab: &Lab, labels: Value, ports: Value, runtime: bool) -> Value {
    let mut conf = lab.conf.clone();
    conf["args"] = json!({"cni": {"labels": labels}});
    if runtime {
        conf["runtimeConfig"] = json!({"containerPorts": ports});
    } else {
        conf["args"]["cni"]["ports"] = ports;
    }
    conf
}

fn inputs(mode: &str) {
    let lab = Lab::new(mode, "cni");
    let (web, client, tool) = (lab.node.pod(), lab.node.pod(), lab.node.pod());
    // The server listens before ADD, so its port can be declared at ADD.
    let echo = web.tcp_echo();
    let port = echo.port();
    let conf = with_ports(
        &lab,
        json!([{"key": "app", "value": "web"}]),
        json!([{"name": "http", "containerPort": port, "protocol": "TCP"},
               {"name": "metrics", "containerPort": 9090}]),
        false,
    );
    let web_ip = lab.add_conf_ok(&web, "prod", "web", &conf);
    lab.add(&client, "team", "client", &[("app", "client")]);
    lab.add(&tool, "dev", "tool", &[("app", "tool")]);
    let eps = lab.ctl_ok(&["get", "endpoints"]);
    assert!(
        eps.contains("http=") && eps.contains("metrics=9090/TCP"),
        "{eps}"
    );
    let f = write(lab.dir.path(), "web.yaml", WEB_FROM_BLUE);
    lab.ctl_ok(&["apply", "-f", &f]);
    // No namespace is labelled blue yet.
    assert!(
        !client.tcp_ok(web_ip, port),
        "{mode}: before namespace labels"
    );
    assert!(!tool.tcp_ok(web_ip, port));

    // `cnetctl label namespace`: the named port resolves to the declared port.
    let out = lab.ctl_ok(&["label", "namespace", "team", "team=blue"]);
    assert!(out.contains("namespace team labeled"), "{out}");
    assert!(
        client.tcp_ok(web_ip, port),
        "{mode}: blue namespace, named port"
    );
    assert!(!tool.tcp_ok(web_ip, port), "{mode}: other namespace");
    let o = lab.ctl(&["explain", "team/client", "prod/web", &format!("{port}/tcp")]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // kubectl's rule: a new value needs --overwrite; the implicit name label is fixed.
    let o = lab.ctl(&["label", "ns", "team", "team=red"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    let o = lab.ctl(&["label", "ns", "team", "kubernetes.io/metadata.name=x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        client.tcp_ok(web_ip, port),
        "refused changes change nothing"
    );
    lab.ctl_ok(&["label", "namespace", "team", "team=red", "--overwrite"]);
    assert!(!client.tcp_ok(web_ip, port), "{mode}: relabelled red");

    // `apply -f` of the Namespace object users already have; `get namespaces`.
    let nsf = write(
        lab.dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels: {team: blue}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: dev\n  labels: {kubernetes.io/metadata.name: dev, env: test}\n",
    );
    let out = lab.ctl_ok(&["apply", "-f", &nsf]);
    assert!(
        out.contains("Namespace team configured") && out.contains("Namespace dev created"),
        "{out}"
    );
    assert!(client.tcp_ok(web_ip, port), "{mode}: applied Namespace");
    let nss = lab.ctl_ok(&["get", "namespaces"]);
    let team = nss.lines().find(|l| l.starts_with("team")).unwrap();
    assert!(
        team.contains("team=blue") && team.contains("kubernetes.io/metadata.name=team"),
        "{nss}"
    );
    assert!(nss.lines().any(|l| l.starts_with("prod")), "{nss}");
    let js: Value = serde_json::from_str(&lab.ctl_ok(&["get", "ns", "-o", "json"])).unwrap();
    assert!(
        js.as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "dev" && n["labels"]["env"] == "test")
    );

    // `cnetctl ports`: the named port moves, so the rule follows it.
    assert!(
        lab.ctl_ok(&["ports", "prod/web"])
            .contains(&format!("http={port}/TCP"))
    );
    lab.ctl_ok(&["ports", "prod/web", "http=1", "metrics=9090/tcp"]);
    assert!(!client.tcp_ok(web_ip, port), "{mode}: http moved away");
    let o = lab.ctl(&["ports", "prod/web", "HTTP=80"]);
    assert_eq!(o.status.code(), Some(2));
    lab.ctl_ok(&["ports", "prod/web", &format!("http={port}")]);
    assert!(client.tcp_ok(web_ip, port), "{mode}: http back");

    // A restart (DEL then ADD without ports) keeps the operator's ports.
    lab.del(&web, "prod", "web");
    let web_ip = lab.add(&web, "prod", "web", &[("app", "web")]);
    assert!(client.tcp_ok(web_ip, port), "{mode}: after restart");
    assert!(!tool.tcp_ok(web_ip, port));

    // Deleting the Namespace objects forgets their labels.
    assert!(
        lab.ctl_ok(&["delete", "-f", &nsf])
            .contains("Namespace team deleted")
    );
    assert!(!client.tcp_ok(web_ip, port), "{mode}: labels deleted");
}

#[test]
fn namespace_labels_and_named_ports_transparent() {
    require_priv!();
    inputs("transparent");
}

#[test]
fn namespace_labels_and_named_ports_bridge() {
    require_priv!();
    inputs("bridge");
}

/// `runtimeConfig.containerPorts` (the capability form) works like `args.cni.ports`.
#[test]
fn container_ports_capability() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let (web, client) = (lab.node.pod(), lab.node.pod());
    let echo = web.tcp_echo();
    let conf = with_ports(
        &lab,
        json!([{"key": "app", "value": "web"}]),
        json!([{"name": "http", "containerPort": echo.port()}]),
        true,
    );
    let ip = lab.add_conf_ok(&web, "prod", "web", &conf);
    lab.add(&client, "prod", "client", &[]);
    let f = write(
        lab.dir.path(),
        "p.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-http, namespace: prod}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: http}]\n",
    );
    lab.ctl_ok(&["apply", "-f", &f]);
    assert!(
        client.tcp_ok(ip, echo.port()),
        "named port from runtimeConfig"
    );
    let other = web.tcp_echo();
    assert!(!client.tcp_ok(ip, other.port()), "unnamed port denied");
}

/// Bad container ports: the spec's error JSON with code 6 (wrong type) or 7 (bad value),
/// naming the field, and nothing left behind (no record, no interface, no lease).
#[test]
fn bad_container_ports_leave_nothing_behind() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let pod = lab.node.pod();
    let cases = [
        (json!("http"), false, 6, "args.cni.ports"),
        (json!([{"containerPort": "80"}]), false, 6, "containerPort"),
        (json!([{"containerPort": 0}]), false, 7, "containerPort"),
        (
            json!([{"name": "Web", "containerPort": 80}]),
            true,
            7,
            "runtimeConfig.containerPorts[0].name",
        ),
        (
            json!([{"containerPort": 80, "protocol": "ICMP"}]),
            false,
            7,
            "protocol",
        ),
        (
            json!([{"name": "a", "containerPort": 80}, {"name": "a", "containerPort": 81}]),
            false,
            7,
            "used twice",
        ),
    ];
    for (ports, runtime, code, needle) in cases {
        let conf = with_ports(&lab, json!([]), ports.clone(), runtime);
        let (ok, v) = lab.add_conf(&pod, "prod", "bad", &conf);
        assert!(!ok, "{ports}: {v}");
        assert_eq!(v["code"], code, "{ports}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{ports}: {v}");
    }
    let eps: Value =
        serde_json::from_str(&lab.ctl_ok(&["get", "endpoints", "-o", "json"])).unwrap_or(json!([]));
    assert_eq!(eps, json!([]), "no record");
    let links = pod.exec(&["ip", "-o", "link"]);
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("eth0"), "no interface: {links}");
    // No lease: the pool's first address is still free for the next pod.
    let good = lab.node.pod();
    let first = lab.add(&good, "prod", "good", &[]);
    assert_eq!(first.to_string(), "10.61.0.2", "no address was leaked");
}
