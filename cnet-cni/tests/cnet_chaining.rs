//! `cnet` first in a conflist, followed by the reference `portmap` and `tuning` plugins, run in
//! order as libcni runs them (each gets the previous result as `prevResult`; CHECK and DEL
//! get the final result; DEL in reverse order), inside a virtual node.
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::{NetNs, require_priv};
use serde_json::{Value, json};
use std::path::Path;

const PORTMAP: &str = "/usr/lib/cni/portmap";
const TUNING: &str = "/usr/lib/cni/tuning";

struct Chain<'a> {
    lab: &'a Lab,
    plugins: Vec<Value>,
}

impl Chain<'_> {
    fn bin(&self, p: &Value) -> std::path::PathBuf {
        match p["type"].as_str().unwrap() {
            "cnet" => cnet_bin(),
            other => Path::new("/usr/lib/cni").join(other),
        }
    }

    /// The config one plugin sees: its own keys plus cniVersion, name, runtimeConfig and
    /// prevResult, as libcni builds it.
    fn conf(&self, p: &Value, prev: Option<&Value>, runtime: &Value) -> Vec<u8> {
        let mut c = p.clone();
        c["cniVersion"] = self.lab.conf["cniVersion"].clone();
        c["name"] = self.lab.conf["name"].clone();
        if let Some(caps) = p.get("capabilities").and_then(Value::as_object) {
            let mut rc = serde_json::Map::new();
            for (k, on) in caps {
                if on.as_bool() == Some(true)
                    && let Some(v) = runtime.get(k)
                {
                    rc.insert(k.clone(), v.clone());
                }
            }
            if !rc.is_empty() {
                c["runtimeConfig"] = Value::Object(rc);
            }
            c.as_object_mut().unwrap().remove("capabilities");
        }
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        c.to_string().into_bytes()
    }

    fn add(&self, cid: &str, pod: &NetNs, runtime: &Value) -> Value {
        let mut prev: Option<Value> = None;
        for p in &self.plugins {
            let out = run_plugin(
                Some(&self.lab.node.ns),
                &self.bin(p),
                &self.lab.env("ADD", cid, Some(&pod.path())),
                &self.conf(p, prev.as_ref(), runtime),
            );
            prev = Some(out.ok());
        }
        prev.unwrap()
    }

    fn check(&self, cid: &str, pod: &NetNs, result: &Value, runtime: &Value) -> Vec<Out> {
        self.plugins
            .iter()
            .map(|p| {
                run_plugin(
                    Some(&self.lab.node.ns),
                    &self.bin(p),
                    &self.lab.env("CHECK", cid, Some(&pod.path())),
                    &self.conf(p, Some(result), runtime),
                )
            })
            .collect()
    }

    fn del(&self, cid: &str, pod: Option<&NetNs>, result: Option<&Value>, runtime: &Value) {
        let path = pod.map(|p| p.path());
        for p in self.plugins.iter().rev() {
            run_plugin(
                Some(&self.lab.node.ns),
                &self.bin(p),
                &self.lab.env("DEL", cid, path.as_deref()),
                &self.conf(p, result, runtime),
            )
            .ok();
        }
    }
}

fn chain(lab: &Lab) -> Chain<'_> {
    let mut cnet = lab.conf.clone();
    let o = cnet.as_object_mut().unwrap();
    o.remove("cniVersion");
    o.remove("name");
    cnet["capabilities"] = json!({"ips": true});
    Chain {
        lab,
        plugins: vec![
            cnet,
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            json!({"type": "tuning", "mtu": 1400,
                   "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}}),
        ],
    }
}

fn run(mode: &str) {
    if !Path::new(PORTMAP).exists() || !Path::new(TUNING).exists() {
        panic!("reference plugins missing: install containernetworking-plugins");
    }
    let mut lab = Lab::new(mode);
    // Debian's reference plugins speak CNI up to 1.0.0.
    lab.conf["cniVersion"] = json!("1.0.0");
    let chain = chain(&lab);
    let pod = lab.node.pod();
    let other = lab.node.pod();
    let echo = pod.tcp_echo();
    let runtime = json!({"portMappings": [
        {"hostPort": 18080, "containerPort": echo.port(), "protocol": "tcp"}]});
    let result = chain.add("chained", &pod, &runtime);
    // prevResult passed through: the final result still names cnet's interfaces and addresses.
    assert_eq!(result["interfaces"][1]["name"], "eth0", "{result}");
    let ips = result_ips(&result);
    assert_eq!(ips.len(), 2);
    // tuning changed the pod's MTU and a sysctl.
    assert!(
        pod.run(&["ip", "link", "show", "eth0"])
            .contains("mtu 1400")
    );
    // The pod works, directly and through the host port (from the underlay to the node).
    let other_result = {
        let c = Chain {
            lab: &lab,
            plugins: vec![chain.plugins[0].clone()],
        };
        c.add("plain", &other, &json!({}))
    };
    assert!(other.tcp_ok(ips[0], echo.port()));
    assert!(
        lab.underlay.ns.tcp_ok(lab.node.addr4.into(), 18080),
        "port mapping from outside the node"
    );
    // CHECK through the whole chain with the final result: cnet (tolerating tuning's MTU
    // change) and tuning agree. Debian's portmap 1.1.1 fails its own CHECK whatever plugin
    // precedes it ("could not check ipv6 dnat: chain CNI-DN-… not found", also after the
    // reference ptp plugin), so its answer is not asserted.
    for (p, out) in chain
        .plugins
        .iter()
        .zip(chain.check("chained", &pod, &result, &runtime))
    {
        if p["type"] != "portmap" {
            assert_eq!(
                out.status, 0,
                "{}: {} {}",
                p["type"], out.stdout, out.stderr
            );
        }
    }
    chain.del("chained", Some(&pod), Some(&result), &runtime);
    // DEL again, as a runtime may, with no netns and no prevResult.
    chain.del("chained", None, None, &runtime);
    Chain {
        lab: &lab,
        plugins: vec![chain.plugins[0].clone()],
    }
    .del("plain", Some(&other), Some(&other_result), &json!({}));
    drop(echo);
    lab.assert_clean();
    let nat = lab.node.ns.run(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains("18080"), "portmap left rules:\n{nat}");
}

#[test]
fn cnet_then_portmap_then_tuning_transparent() {
    require_priv!();
    run("transparent");
}

#[test]
fn cnet_then_portmap_then_tuning_bridge() {
    require_priv!();
    run("bridge");
}
