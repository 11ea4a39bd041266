//! The conflists of `examples/conflists/` (documented in the README's "Use with your
//! runtime") cannot rot: every file decodes as a `cnet`-first conflist whose plugins exist;
//! the Podman one runs under a real Podman; the containerd/CRI-O and Kubernetes-node ones run
//! through the plugin binaries with the environment and runtimeConfig a CRI runtime sets
//! (libcni's chaining: prevResult, capabilities filtered into runtimeConfig, DEL in reverse).
#![allow(clippy::unwrap_used)]

mod cnet_lab;
// Both labs include the shared `out` module (one source file, two module paths here).
#[allow(clippy::duplicate_mod)]
mod podman_lab;

use cnet_testsupport::{NetNs, VirtualNode, require_priv};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/conflists")
}

fn example(name: &str) -> Value {
    let p = examples_dir().join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The example with its state and lease directories moved under `tmp`.
fn relocated(mut c: Value, tmp: &str) -> Value {
    c["plugins"][0]["policy"]["stateDir"] = json!(format!("{tmp}/state"));
    c["plugins"][0]["ipam"]["dataDir"] = json!(format!("{tmp}/ipam"));
    c
}

fn plugin_bin(t: &str) -> PathBuf {
    let ours = podman_lab::our_bin_dir().join(t);
    if ours.exists() {
        ours
    } else {
        Path::new("/usr/lib/cni").join(t)
    }
}

/// The network config one plugin of a list sees, as libcni builds it.
fn plugin_conf(list: &Value, i: usize, prev: Option<&Value>, runtime: &Value) -> Vec<u8> {
    let mut c = list["plugins"][i].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    c["name"] = list["name"].clone();
    if let Some(caps) = c
        .as_object_mut()
        .unwrap()
        .remove("capabilities")
        .and_then(|v| v.as_object().cloned())
    {
        let mut rc = serde_json::Map::new();
        for (k, on) in caps {
            if on == json!(true)
                && let Some(v) = runtime.get(&k)
            {
                rc.insert(k, v.clone());
            }
        }
        if !rc.is_empty() {
            c["runtimeConfig"] = Value::Object(rc);
        }
    }
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c.to_string().into_bytes()
}

#[test]
fn every_example_is_a_cnet_first_conflist_with_existing_plugins() {
    let mut seen = 0;
    for f in std::fs::read_dir(examples_dir()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("conflist") {
            continue;
        }
        seen += 1;
        let list: Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            list["name"],
            "cnet",
            "{}: cnetctl's default network",
            p.display()
        );
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins[0]["type"], "cnet", "{}", p.display());
        for (i, plugin) in plugins.iter().enumerate() {
            let t = plugin["type"].as_str().unwrap();
            assert!(plugin_bin(t).exists(), "{}: no plugin {t}", p.display());
            let bytes = plugin_conf(&list, i, None, &json!({}));
            let conf = cnet_cni::config::NetConf::parse(&bytes).unwrap();
            if t == "cnet" {
                cnet_cni::cnet::conf::CnetConf::from_request(&conf, &bytes)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            }
        }
    }
    assert!(
        seen >= 3,
        "podman, containerd/CRI-O and Kubernetes examples"
    );
}

#[test]
fn podman_example_runs_under_podman() {
    require_priv!();
    let conf = relocated(example("podman.conflist"), "CNET_TMP");
    let subnet: ipnetwork::IpNetwork = conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut lab = podman_lab::PodmanLab::new(&conf);
    let node: IpAddr = lab.node.addr4.into();
    lab.server("web", "-p 8080:80");
    lab.run("client", "--ip 10.89.0.50", "sleep 3600");
    let web = lab.ip("web");
    assert_eq!(lab.ip("client").to_string(), "10.89.0.50");
    assert!(subnet.contains(web), "{web} in {subnet}");
    assert_eq!(lab.tcp_from("client", web, 80), "hi-web");
    assert!(lab.ping_from("client", node));
    assert_eq!(podman_lab::nc(&lab.underlay.ns, node, 8080), "hi-web");
    lab.sh.run("podman rm -f -t 0 web client");
    assert!(lab.state()["endpoints"].as_array().unwrap().is_empty());
}

/// A node driven the way a CRI runtime drives a conflist.
struct Cri {
    ul: cnet_testsupport::Underlay,
    node: VirtualNode,
    dir: tempfile::TempDir,
    list: Value,
    baseline: String,
}

struct Pod {
    ns: NetNs,
    id: String,
    args: String,
    list: Value,
    runtime: Value,
    result: Value,
}

impl Cri {
    fn new(file: &str) -> Cri {
        let dir = tempfile::tempdir().unwrap();
        let list = relocated(example(file), &dir.path().display().to_string());
        let subnets: Vec<String> = list["plugins"][0]["ipam"]["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0]["subnet"].as_str().unwrap().to_string())
            .collect();
        let s: Vec<&str> = subnets.iter().map(String::as_str).collect();
        let (ul, node) = VirtualNode::single(&s);
        let baseline = node.snapshot();
        Cri {
            ul,
            node,
            dir,
            list,
            baseline,
        }
    }

    fn env(&self, cmd: &str, pod: &Pod) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", pod.id.clone()),
            ("CNI_NETNS", pod.ns.path().display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_ARGS", pod.args.clone()),
            ("CNI_PATH", cnet_lab::cni_path()),
        ]
    }

    /// ADD `ns` through the whole list, as containerd/CRI-O do for a pod sandbox;
    /// `cni_labels` go to `args.cni.labels` (libcni's `args` in the network config).
    fn add(
        &self,
        ns: NetNs,
        namespace: &str,
        name: &str,
        runtime: Value,
        cni_labels: &[(&str, &str)],
    ) -> Pod {
        let mut list = self.list.clone();
        if !cni_labels.is_empty() {
            let l: Vec<Value> = cni_labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            list["plugins"][0]["args"] = json!({"cni": {"labels": l}});
        }
        let mut pod = Pod {
            ns,
            id: format!("{namespace}-{name}-sandbox"),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
                 K8S_POD_INFRA_CONTAINER_ID={namespace}-{name}-sandbox;K8S_POD_UID=uid-{name}"
            ),
            list,
            runtime,
            result: Value::Null,
        };
        let mut prev: Option<Value> = None;
        for (i, p) in pod.list["plugins"].as_array().unwrap().iter().enumerate() {
            let out = cnet_lab::run_plugin(
                Some(&self.node.ns),
                &plugin_bin(p["type"].as_str().unwrap()),
                &self.env("ADD", &pod),
                &plugin_conf(&pod.list, i, prev.as_ref(), &pod.runtime),
            );
            prev = Some(out.ok());
        }
        pod.result = prev.unwrap();
        pod
    }

    /// DEL in reverse order with the final result.
    fn del(&self, pod: &Pod) {
        let n = self.list["plugins"].as_array().unwrap().len();
        for i in (0..n).rev() {
            let p = &pod.list["plugins"][i];
            cnet_lab::run_plugin(
                Some(&self.node.ns),
                &plugin_bin(p["type"].as_str().unwrap()),
                &self.env("DEL", pod),
                &plugin_conf(&pod.list, i, Some(&pod.result), &pod.runtime),
            )
            .ok();
        }
    }

    fn cnetctl(&self, args: &[&str]) -> std::process::Output {
        let sd = self.dir.path().join("state/cnet").display().to_string();
        let c = podman_lab::cnetctl().display().to_string();
        let mut argv = vec![c.as_str(), "--state-dir", sd.as_str()];
        argv.extend_from_slice(args);
        self.node.ns.exec(&argv)
    }

    fn policy(&self, yaml: &str) -> String {
        let p = self.dir.path().join("policy.yaml");
        std::fs::write(&p, yaml).unwrap();
        p.display().to_string()
    }

    fn assert_clean(&self) {
        assert_eq!(podman_lab::settled_snapshot(&self.node), self.baseline);
        let st: Value = serde_json::to_value(
            cnet_cni::cnet::state::NodeState::new(
                self.dir.path().join("state/cnet"),
                std::time::Duration::from_secs(10),
            )
            .read()
            .unwrap(),
        )
        .unwrap();
        assert!(st["endpoints"].as_array().unwrap().is_empty(), "{st}");
        let nat = self.node.ns.run(&["iptables-save", "-t", "nat"]);
        assert!(!nat.contains("30080"), "{nat}");
    }
}

fn ip4(pod: &Pod) -> IpAddr {
    pod.result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a: ipnetwork::IpNetwork = i["address"].as_str().unwrap().parse().unwrap();
            a.ip()
        })
        .find(IpAddr::is_ipv4)
        .unwrap()
}

fn ports(container: u16) -> Value {
    json!({"portMappings": [{"hostPort": 30080, "containerPort": container, "protocol": "tcp"}]})
}

const DENY_WEB_EXCEPT_CLIENTS: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
";

/// containerd/CRI-O without a policy controller: labels from the CNI call (`args.cni.labels`,
/// `runtimeConfig.labels`), pods reachable by default, policy by `cnetctl`, port mappings.
#[test]
fn containerd_example_through_the_plugin_binaries() {
    require_priv!();
    let cri = Cri::new("containerd-cri-o.conflist");
    let web_ns = cri.node.pod();
    let echo = web_ns.tcp_echo();
    let port = echo.port();
    let web = cri.add(web_ns, "shop", "web", ports(port), &[("app", "web")]);
    let client = cri.add(
        cri.node.pod(),
        "shop",
        "client",
        json!({"labels": {"role": "client"}}),
        &[],
    );
    let other = cri.add(cri.node.pod(), "shop", "other", json!({}), &[]);
    let w = ip4(&web);
    let node: IpAddr = cri.node.addr4.into();
    // No policy: reachable by everyone (a standalone pod is not cut off by default).
    assert!(other.ns.tcp_ok(w, port));
    assert!(client.ns.tcp_ok(w, port));
    assert!(
        cri.ul.ns.tcp_ok(node, 30080),
        "portmap from outside the node"
    );
    let f = cri.policy(DENY_WEB_EXCEPT_CLIENTS);
    let out = cri.cnetctl(&["apply", "-f", &f]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        client.ns.tcp_ok(w, port),
        "role=client from runtimeConfig.labels"
    );
    assert!(
        !other.ns.tcp_ok(w, port),
        "app=web from args.cni.labels: denied"
    );
    assert!(cri.cnetctl(&["delete", "-f", &f]).status.success());
    assert!(other.ns.tcp_ok(w, port));
    drop(echo);
    for p in [&web, &client, &other] {
        cri.del(p);
    }
    cri.assert_clean();
}

/// A Kubernetes node: labels come from outside (a controller or an operator through
/// `cnetctl label`); a pod is isolated from its first packet until they arrive, then gets
/// exactly its policy.
#[test]
fn kubernetes_node_example_isolates_until_labels_arrive() {
    require_priv!();
    let cri = Cri::new("kubernetes-node.conflist");
    let web_ns = cri.node.pod();
    let echo = web_ns.tcp_echo();
    let port = echo.port();
    let web = cri.add(web_ns, "shop", "web", ports(port), &[]);
    let client = cri.add(cri.node.pod(), "shop", "client", json!({}), &[]);
    let other = cri.add(cri.node.pod(), "shop", "other", json!({}), &[]);
    let w = ip4(&web);
    let f = cri.policy(DENY_WEB_EXCEPT_CLIENTS);
    assert!(cri.cnetctl(&["apply", "-f", &f]).status.success());
    // Labels not there yet: nobody reaches web, and client opens nothing.
    assert!(!client.ns.tcp_ok(w, port));
    assert!(!other.ns.tcp_ok(w, port));
    for (pod, l) in [("shop/web", "app=web"), ("shop/client", "role=client")] {
        let out = cri.cnetctl(&["label", pod, l]);
        assert!(out.status.success(), "{out:?}");
    }
    assert!(client.ns.tcp_ok(w, port), "labelled: allowed by the policy");
    assert!(!other.ns.tcp_ok(w, port), "other: still pending");
    assert!(
        cri.cnetctl(&["label", "shop/other", "role=batch"])
            .status
            .success()
    );
    assert!(
        !other.ns.tcp_ok(w, port),
        "other: labelled, denied by the policy"
    );
    assert!(cri.cnetctl(&["delete", "-f", &f]).status.success());
    assert!(other.ns.tcp_ok(w, port), "no policy: open");
    let node: IpAddr = cri.node.addr4.into();
    assert!(
        cri.ul.ns.tcp_ok(node, 30080),
        "portmap from outside the node"
    );
    drop(echo);
    for p in [&web, &client, &other] {
        cri.del(p);
    }
    cri.assert_clean();
}
