//! Policy end to end in a virtual node: pods attached through the real `cnet` binary (called
//! as a runtime calls it), policies applied with `cnetctl` (run inside the node netns), TCP
//! probes for the verdicts, `explain`, labels from an outside source, bad files.
#![allow(clippy::unwrap_used)]

use cnet_testsupport::require_priv;
use common::{Lab, write};
use std::net::IpAddr;
use std::process::Stdio;

mod common;

fn db_policy(port: u16) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: db-from-web\n  namespace: prod\nspec:\n  podSelector:\n    matchLabels: {{app: db}}\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {{app: web}}\n    ports:\n    - port: {port}\n"
    )
}

fn enforce(mode: &str) {
    let lab = Lab::new(mode, "cni");
    let (web, db, tool) = (lab.node.pod(), lab.node.pod(), lab.node.pod());
    let _web_ip = lab.add(&web, "prod", "web", &[("app", "web")]);
    let db_ip = lab.add(&db, "prod", "db", &[("app", "db")]);
    let tool_ip = lab.add(&tool, "dev", "tool", &[("app", "tool")]);
    let db_echo = db.tcp_echo();
    let tool_echo = tool.tcp_echo();
    // No policy: everything open.
    assert!(web.tcp_ok(db_ip, db_echo.port()));
    assert!(tool.tcp_ok(db_ip, db_echo.port()));
    let f = write(lab.dir.path(), "db.yaml", &db_policy(db_echo.port()));
    let out = lab.ctl_ok(&["apply", "-f", &f]);
    assert!(
        out.contains("NetworkPolicy prod/db-from-web created"),
        "{out}"
    );
    assert!(lab.ctl_ok(&["apply", "-f", &f]).contains("unchanged"));
    // Enforced in the kernel: web -> db allowed, tool -> db denied, web -> tool still open.
    assert!(web.tcp_ok(db_ip, db_echo.port()), "{mode}: allowed flow");
    assert!(!tool.tcp_ok(db_ip, db_echo.port()), "{mode}: denied flow");
    assert!(
        web.tcp_ok(tool_ip, tool_echo.port()),
        "{mode}: unselected pod"
    );
    // explain agrees, with exit codes 1 (denied) and 0 (allowed).
    let port = format!("{}/tcp", db_echo.port());
    let o = lab.ctl(&["explain", "dev/tool", "prod/db", &port]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("DENY dev/tool"), "{text}");
    assert!(text.contains("db-from-web"), "{text}");
    let o = lab.ctl(&["explain", "prod/web", &db_ip.to_string(), &port]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // get and render.
    let eps = lab.ctl_ok(&["get", "endpoints"]);
    assert!(eps.contains("prod/db") && eps.contains("app=db"), "{eps}");
    assert!(lab.ctl_ok(&["get", "policies"]).contains("db-from-web"));
    assert!(lab.ctl_ok(&["render"]).contains("table inet cnet"));
    // A pod added after the policy is covered at once.
    let web2 = lab.node.pod();
    lab.add(&web2, "prod", "web2", &[("app", "web")]);
    assert!(web2.tcp_ok(db_ip, db_echo.port()));
    // Lifting the policy restores traffic.
    assert!(lab.ctl_ok(&["delete", "-f", &f]).contains("deleted"));
    assert!(tool.tcp_ok(db_ip, db_echo.port()), "{mode}: after delete");
}

#[test]
fn network_policy_enforced_transparent() {
    require_priv!();
    enforce("transparent");
}

#[test]
fn network_policy_enforced_bridge() {
    require_priv!();
    enforce("bridge");
}

/// Labels from an outside source: a pod added without labels is isolated until `cnetctl
/// label` supplies them; then its policy (here: none selecting it) applies.
#[test]
fn external_labels_isolate_until_supplied() {
    require_priv!();
    let lab = Lab::new("transparent", "external");
    let (a, b) = (lab.node.pod(), lab.node.pod());
    let a_ip = lab.add(&a, "prod", "a", &[("app", "a")]);
    let b_ip = lab.add(&b, "prod", "b", &[]);
    let (ea, eb) = (a.tcp_echo(), b.tcp_echo());
    assert!(!a.tcp_ok(b_ip, eb.port()), "isolated pod reachable");
    assert!(!b.tcp_ok(a_ip, ea.port()), "isolated pod sends");
    let o = lab.ctl(&["explain", "prod/a", "prod/b", &format!("{}/tcp", eb.port())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(lab.ctl_ok(&["get", "endpoints"]).contains("isolated"));
    lab.ctl_ok(&["label", "prod/b", "app=b"]);
    assert!(a.tcp_ok(b_ip, eb.port()));
    assert!(b.tcp_ok(a_ip, ea.port()));
}

/// `cnetctl label` survives a container restart (the runtime's DEL then ADD under the same
/// pod name): a pod selected by a policy only through such a label stays protected.
#[test]
fn operator_labels_survive_restart() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let (web, db, tool) = (lab.node.pod(), lab.node.pod(), lab.node.pod());
    lab.add(&web, "prod", "web", &[("app", "web")]);
    let db_ip = lab.add(&db, "prod", "db", &[]);
    lab.add(&tool, "dev", "tool", &[("app", "tool")]);
    let echo = db.tcp_echo();
    let f = write(lab.dir.path(), "db.yaml", &db_policy(echo.port()));
    lab.ctl_ok(&["apply", "-f", &f]);
    // Not selected yet: open.
    assert!(tool.tcp_ok(db_ip, echo.port()));
    lab.ctl_ok(&["label", "prod/db", "app=db", "tier=data"]);
    lab.ctl_ok(&["label", "prod/db", "tier-"]);
    assert!(!tool.tcp_ok(db_ip, echo.port()), "labeled pod reachable");
    // Restart: DEL then ADD with the runtime's (empty) labels.
    lab.del(&db, "prod", "db");
    let eps = lab.ctl_ok(&["get", "endpoints"]);
    assert!(!eps.contains("prod/db"), "{eps}");
    let db_ip = lab.add(&db, "prod", "db", &[("tier", "x")]);
    let eps = lab.ctl_ok(&["get", "endpoints"]);
    let line = eps.lines().find(|l| l.contains("prod/db")).unwrap();
    assert!(line.contains("app=db") && !line.contains("tier="), "{eps}");
    assert!(web.tcp_ok(db_ip, echo.port()), "allowed flow after restart");
    assert!(
        !tool.tcp_ok(db_ip, echo.port()),
        "restarted pod reachable against policy"
    );
}

#[test]
fn bad_files_and_arguments_have_documented_exit_codes() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let d = lab.dir.path();
    let bad = write(
        d,
        "bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{protocol: ICMP}]\n",
    );
    let o = lab.ctl(&["apply", "-f", &bad]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml") && err.contains("line 1"), "{err}");
    assert!(err.contains("protocol"), "{err}");
    let o = lab.ctl(&["apply", "-f", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        lab.ctl(&["label", "nobody/here", "a=b"]).status.code(),
        Some(6)
    );
    assert_eq!(lab.ctl(&["explain", "a", "b"]).status.code(), Some(2));
    assert_eq!(
        lab.ctl(&["explain", "10.0.0.1", "10.0.0.2", "80/icmp"])
            .status
            .code(),
        Some(2)
    );
    assert!(lab.ctl_ok(&["--help"]).contains("Exit codes"));
    assert!(lab.ctl_ok(&["apply", "--help"]).contains("--filename"));
    // Nothing was stored by the failures.
    assert!(
        !lab.ctl_ok(&["get", "policies", "-o", "json"])
            .contains("\"name\"")
    );
}

/// `kill -9` of ADD at random instants while a default-deny policy selects the pod: whenever
/// the pod's interface exists, the pod is not reachable (its rules exist before it does), and
/// DEL leaves nothing.
#[test]
fn killed_adds_never_open_a_pod_against_policy() {
    require_priv!();
    let lab = Lab::new("transparent", "cni");
    let client = lab.node.pod();
    let t = std::time::Instant::now();
    lab.add(&client, "dev", "client", &[("app", "client")]);
    // Kill delays span 0 to 1.5 times a whole ADD, so kills land in every step.
    let span_us = (t.elapsed().as_micros() as u64 * 3 / 2).max(1000);
    let f = write(
        lab.dir.path(),
        "deny.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: prod}\nspec: {podSelector: {}}\n",
    );
    lab.ctl_ok(&["apply", "-f", &f]);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut exposed_checks = 0;
    for round in 0..12 {
        let victim = lab.node.pod();
        let echo = victim.tcp_echo();
        let mut child = lab.spawn_plugin(
            "ADD",
            &format!("victim{round}"),
            Some(&victim),
            Some(&format!("K8S_POD_NAMESPACE=prod;K8S_POD_NAME=v{round}")),
            &lab.conf,
            Stdio::null(),
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % span_us));
        let _ = child.kill();
        let _ = child.wait();
        let addr = String::from_utf8_lossy(
            &victim
                .exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
                .stdout,
        )
        .into_owned();
        if let Some(ip) = addr
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse::<IpAddr>().ok())
        {
            exposed_checks += 1;
            assert!(
                !client.tcp_ok(ip, echo.port()),
                "round {round}: pod {ip} reachable against the deny policy"
            );
        }
        let out = lab
            .spawn_plugin(
                "DEL",
                &format!("victim{round}"),
                None,
                None,
                &lab.conf,
                Stdio::piped(),
            )
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    eprintln!("{exposed_checks} of 12 killed ADDs had configured the pod's address");
    let eps = lab.ctl_ok(&["get", "endpoints"]);
    assert_eq!(eps.lines().count(), 2, "only the client is left:\n{eps}");
}

/// ADD of `pod` as `ns/name` under container id `cid` (labels through `args.cni.labels`);
/// returns its IPv4 address.
fn add_as(lab: &Lab, cid: &str, pod: &cnet_testsupport::NetNs, ns: &str, name: &str) -> IpAddr {
    let mut conf = lab.conf.clone();
    conf["args"] = serde_json::json!({"cni": {"labels": [{"key": "app", "value": "db"}]}});
    let out = lab
        .spawn_plugin(
            "ADD",
            cid,
            Some(pod),
            Some(&format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}")),
            &conf,
            Stdio::piped(),
        )
        .wait_with_output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    let a = v["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().parse().unwrap()
}

/// A pod recorded twice: a new sandbox of `prod/db` is added while the old sandbox's
/// attachment is still recorded (its DEL never came), or the pod has two attachments. Both
/// are the pod's, and the pod's policy holds on both: neither is left open, whichever was
/// added first, and removing one leaves the other enforced.
fn pod_attached_twice(mode: &str) {
    let lab = Lab::new(mode, "cni");
    let (web, tool, old, new) = (
        lab.node.pod(),
        lab.node.pod(),
        lab.node.pod(),
        lab.node.pod(),
    );
    lab.add(&web, "prod", "web", &[("app", "web")]);
    lab.add(&tool, "dev", "tool", &[("app", "tool")]);
    let (old_echo, new_echo) = (old.tcp_echo(), new.tcp_echo());
    let f = write(
        lab.dir.path(),
        "db.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: prod}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: web}}\n",
    );
    lab.ctl_ok(&["apply", "-f", &f]);
    let old_ip = add_as(&lab, "db-old", &old, "prod", "db");
    let new_ip = add_as(&lab, "db-new", &new, "prod", "db");
    for (what, ip, port) in [
        ("old", old_ip, old_echo.port()),
        ("new", new_ip, new_echo.port()),
    ] {
        assert!(web.tcp_ok(ip, port), "{mode}: web -> {what} sandbox");
        assert!(
            !tool.tcp_ok(ip, port),
            "{mode}: tool reaches the {what} sandbox"
        );
    }
    let port = new_echo.port();
    // The old sandbox goes (its late DEL): the new one stays enforced.
    let out = lab
        .spawn_plugin("DEL", "db-old", Some(&old), None, &lab.conf, Stdio::piped())
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        web.tcp_ok(new_ip, port),
        "{mode}: web -> db after the old DEL"
    );
    assert!(
        !tool.tcp_ok(new_ip, port),
        "{mode}: tool reaches db after the old DEL"
    );
}

#[test]
fn a_pod_attached_twice_is_enforced_on_both_transparent() {
    require_priv!();
    pod_attached_twice("transparent");
}

#[test]
fn a_pod_attached_twice_is_enforced_on_both_bridge() {
    require_priv!();
    pod_attached_twice("bridge");
}
