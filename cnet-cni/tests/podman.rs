//! The `cnet` plugin under a real runtime: Podman 4.3 (CNI backend) runs busybox containers on
//! a conflist whose first plugin is `cnet`, chained with the reference `portmap` and `tuning`,
//! inside a virtual node. Lifecycle (run, exec, restart, rm), port mappings from outside the
//! node, and NetworkPolicy between containers through `cnetctl`, in both modes.
#![allow(clippy::unwrap_used)]

mod podman_lab;

use cnet_testsupport::require_priv;
use podman_lab::*;
use serde_json::Value;
use std::net::IpAddr;

fn endpoints(lab: &PodmanLab) -> Vec<Value> {
    lab.state()["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn record<'a>(eps: &'a [Value], name: &str) -> &'a Value {
    eps.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {eps:?}"))
}

fn in_subnet(ip: IpAddr) -> bool {
    let net: ipnetwork::IpNetwork = SUBNET.parse().unwrap();
    net.contains(ip)
}

fn lifecycle(mode: &str) {
    let conf = conflist("pmnet", mode, "cni");
    let mut lab = PodmanLab::new(&conf);
    let node: IpAddr = lab.node.addr4.into();
    lab.run("a", "--ip 10.62.0.50", "sleep 3600");
    lab.server("b", "-p 8080:80");
    let (a, b) = (lab.ip("a"), lab.ip("b"));
    assert_eq!(
        a.to_string(),
        "10.62.0.50",
        "podman --ip through runtimeConfig.ips"
    );
    assert!(in_subnet(a) && in_subnet(b) && a != b, "{a} {b}");

    // Addresses come from cnet-ipam; the node state knows both containers by name.
    let mut leases = lab.leases(&conf["plugins"][0]["ipam"]);
    leases.sort();
    let (a6, b6) = (lab.ip6("a"), lab.ip6("b"));
    let mut want = vec![a.to_string(), b.to_string(), a6.to_string(), b6.to_string()];
    want.sort();
    assert_eq!(leases, want);
    let eps = endpoints(&lab);
    assert_eq!(eps.len(), 2);
    for (n, ip) in [("a", a), ("b", b)] {
        let r = record(&eps, n);
        assert_eq!(r["phase"], "ready");
        assert_eq!(r["labels"]["cnet.io/name"], n);
        assert_eq!(r["labels"]["cnet.io/network"], "pmnet");
        assert!(
            r["addresses"][0]
                .as_str()
                .unwrap()
                .starts_with(&ip.to_string())
        );
    }

    // Containers reach each other and the node; the node reaches them.
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    assert!(lab.ping_from("a", node));
    assert!(lab.ping_from("b", a));
    assert!(lab.node.ns.ping(&a.to_string()));
    assert_eq!(lab.tcp_from_node(b, 80), "hi-b");
    // IPv6 too.
    assert_eq!(lab.tcp_from("a", b6, 80), "hi-b");
    assert!(lab.ping_from("a", lab.node.addr6.into()));

    // portmap: node address : host port, from outside the node, reaches b.
    assert_eq!(nc(&lab.underlay.ns, node, 8080), "hi-b");
    // tuning ran in the container's netns.
    assert_eq!(
        lab.exec("a", "cat /proc/sys/net/ipv4/conf/eth0/arp_notify")
            .stdout
            .trim(),
        "1"
    );

    // Restart: a new netns, a new attachment, a working network again.
    lab.sh.run("podman restart -t 0 a");
    let a2 = lab.ip("a");
    assert_eq!(a2, a, "the requested address again");
    assert!(lab.ping_from("a", node));
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    assert_eq!(endpoints(&lab).len(), 2, "one record per container");
    lab.sh.run("podman stop -t 0 b && podman start b");
    let b2 = lab.ip("b");
    assert_eq!(lab.tcp_from("a", b2, 80), "hi-b");
    assert_eq!(nc(&lab.underlay.ns, node, 8080), "hi-b");
    assert_eq!(lab.leases(&conf["plugins"][0]["ipam"]).len(), 4);

    // rm -f removes every trace: links, routes, leases, records, policy endpoints, netns
    // bind mounts, port mappings.
    lab.sh.run("podman rm -f -t 0 a b");
    // (The bridge is the network's shared infrastructure and stays, as with `bridge`.)
    let left: Vec<String> = settled_snapshot(&lab.node)
        .lines()
        .filter(|l| !l.contains("cnetpm0"))
        .map(str::to_string)
        .collect();
    assert_eq!(left.join("\n"), lab.baseline, "node links/routes after rm");
    assert!(endpoints(&lab).is_empty());
    assert!(lab.leases(&conf["plugins"][0]["ipam"]).is_empty());
    assert_eq!(lab.sh.run("ls -A /run/netns").trim(), "");
    let nat = lab.sh.run("iptables-save -t nat");
    assert!(!nat.contains("8080"), "port mapping left: {nat}");
    let nft = lab.sh.run("nft list ruleset");
    for ip in [a, b, a2, b2] {
        assert!(!nft.contains(&ip.to_string()), "{ip} still in nft: {nft}");
    }
    let got = lab.cnetctl("get endpoints -o json");
    assert!(got.success(), "{got:?}");
    let v: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn podman_transparent_lifecycle_portmap_tuning() {
    require_priv!();
    lifecycle("transparent");
}

#[test]
fn podman_bridge_lifecycle_portmap_tuning() {
    require_priv!();
    lifecycle("bridge");
}

const WEB_POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-clients
  namespace: default
spec:
  podSelector:
    matchLabels:
      cnet.io/name: web
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    ports:
    - protocol: TCP
      port: 80
";

/// Labels for podman containers: the implicit `cnet.io/name` selects a container by its
/// name, `cnetctl label` adds labels to an existing endpoint, a NetworkPolicy is enforced
/// between containers and deleting it restores traffic.
fn policy(mode: &str) {
    let mut lab = PodmanLab::new(&conflist("pmpol", mode, "cni"));
    lab.server("web", "");
    lab.run("client", "", "sleep 3600");
    lab.run("other", "", "sleep 3600");
    let web = lab.ip("web");
    // No policy: a standalone container is reachable by everyone.
    assert_eq!(lab.tcp_from("other", web, 80), "hi-web");
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web");

    let out = lab.cnetctl("label client role=client");
    assert!(out.success(), "{out:?}");
    let f = lab.file("web.yaml", WEB_POLICY);
    let out = lab.cnetctl(&format!("apply -f {}", f.display()));
    assert!(out.success(), "{out:?}");
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web", "allowed");
    assert_eq!(lab.tcp_from("other", web, 80), "", "denied: times out");
    // Egress of the selected container is not restricted (Ingress-only policy).
    let client = lab.ip("client");
    assert!(lab.ping_from("web", client));

    // Labels of an existing endpoint change its verdicts at once.
    assert!(lab.cnetctl("label other role=client").success());
    assert_eq!(lab.tcp_from("other", web, 80), "hi-web");
    assert!(lab.cnetctl("label other role-").success());
    assert_eq!(lab.tcp_from("other", web, 80), "");

    // A restarted selected container is protected from its first packet (its rules exist
    // before its interface does): still denied to `other`, allowed to `client`.
    lab.sh.run("podman restart -t 0 web");
    let web = lab.ip("web");
    assert_eq!(lab.tcp_from("other", web, 80), "");
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web");
    // Labels set with cnetctl belong to the pod (namespace/name), not to one attachment: a
    // restarted client (podman: DEL then ADD) comes back with them; removing them works as
    // before.
    lab.sh.run("podman restart -t 0 client");
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web");
    assert!(lab.cnetctl("label client role-").success());
    assert_eq!(lab.tcp_from("client", web, 80), "");
    assert!(lab.cnetctl("label client role=client").success());
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web");

    // explain agrees with the kernel.
    let out = lab.cnetctl("explain default/other default/web 80/tcp");
    assert_eq!(out.status, 1, "explain: denied: {out:?}");

    let out = lab.cnetctl(&format!("delete -f {}", f.display()));
    assert!(out.success(), "{out:?}");
    assert_eq!(lab.tcp_from("other", web, 80), "hi-web", "policy lifted");
    lab.sh.run("podman rm -f -t 0 web client other");
    assert!(endpoints(&lab).is_empty());
}

#[test]
fn podman_policy_between_containers_transparent() {
    require_priv!();
    policy("transparent");
}

#[test]
fn podman_policy_between_containers_bridge() {
    require_priv!();
    policy("bridge");
}

/// `policy.labels: external`: a container whose labels come from an outside source is
/// isolated from its first packet until they arrive (`cnetctl label`), then gets its policy.
#[test]
fn podman_external_labels_isolate_until_labelled() {
    require_priv!();
    let mut lab = PodmanLab::new(&conflist("pmext", "transparent", "external"));
    lab.server("web", "");
    lab.run("other", "", "sleep 3600");
    let web = lab.ip("web");
    let eps = endpoints(&lab);
    assert_eq!(record(&eps, "web")["labelsKnown"], false);
    assert_eq!(lab.tcp_from("other", web, 80), "", "pending: isolated");
    // The resident node stays allowed in (as for kubelet probes), but the pending container
    // opens nothing, not even to the node.
    assert_eq!(lab.tcp_from_node(web, 80), "hi-web");
    let node: IpAddr = lab.node.addr4.into();
    assert!(!lab.ping_from("web", node), "pending: egress dropped");
    assert!(lab.cnetctl("label web app=web").success());
    assert!(lab.cnetctl("label other app=other").success());
    assert_eq!(
        lab.tcp_from("other", web, 80),
        "hi-web",
        "labelled, no policy"
    );
    assert!(lab.ping_from("web", node));
    lab.sh.run("podman rm -f -t 0 web other");
    assert!(endpoints(&lab).is_empty());
}

/// `podman network disconnect/connect` on a running container (DEL, then ADD into the same
/// netns) and `podman network reload` (teardown + setup again) keep state and kernel in step.
#[test]
fn podman_network_disconnect_connect_reload() {
    require_priv!();
    let conf = conflist("pmre", "transparent", "cni");
    let mut lab = PodmanLab::new(&conf);
    lab.run("a", "", "sleep 3600");
    lab.server("b", "-p 8080:80");
    let (a, b) = (lab.ip("a"), lab.ip("b"));
    lab.sh.run("podman network disconnect pmre a");
    let eps = endpoints(&lab);
    assert_eq!(eps.len(), 1, "{eps:?}");
    let b6 = lab.ip6("b");
    let mut leases = lab.leases(&conf["plugins"][0]["ipam"]);
    leases.sort();
    assert_eq!(leases, vec![b.to_string(), b6.to_string()]);
    let routes = lab.node.ns.run(&["ip", "route", "show"]);
    assert!(!routes.contains(&format!("{a} ")), "{routes}");
    assert_eq!(
        lab.tcp_from("a", b, 80),
        "",
        "no network while disconnected"
    );
    lab.sh.run("podman network connect pmre a");
    assert_eq!(endpoints(&lab).len(), 2);
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    lab.sh.run("podman network reload --all");
    assert_eq!(endpoints(&lab).len(), 2);
    assert_eq!(lab.leases(&conf["plugins"][0]["ipam"]).len(), 4);
    let b = lab.ip("b");
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    let node: IpAddr = lab.node.addr4.into();
    assert_eq!(nc(&lab.underlay.ns, node, 8080), "hi-b");
    lab.sh.run("podman rm -f -t 0 a b");
    assert_eq!(settled_snapshot(&lab.node), lab.baseline);
    assert!(lab.leases(&conf["plugins"][0]["ipam"]).is_empty());
}
