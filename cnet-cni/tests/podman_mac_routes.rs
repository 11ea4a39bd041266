//! Under a real runtime: Podman 4.3 (CNI backend) passes `runtimeConfig.mac` for
//! `podman run --mac-address` when `cnet` declares the `mac` capability, and the container's
//! interface has that MAC; routes in the IPAM configuration besides the default are in the
//! container's routing table.
#![allow(clippy::unwrap_used)]

mod podman_lab;

use cnet_testsupport::require_priv;
use podman_lab::*;
use serde_json::json;

const MAC: &str = "02:c0:ff:ee:00:01";

#[test]
fn podman_mac_address_and_ipam_routes() {
    require_priv!();
    let mut conf = conflist("pmmac", "transparent", "cni");
    conf["plugins"][0]["capabilities"]["mac"] = json!(true);
    conf["plugins"][0]["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12"}]);
    let mut lab = PodmanLab::new(&conf);
    lab.run("m", &format!("--mac-address {MAC}"), "sleep 3600");
    lab.run("plain", "", "sleep 3600");
    let link = lab.exec("m", "ip link show eth0");
    assert!(link.success(), "{link:?}");
    assert!(link.stdout.contains(MAC), "{}", link.stdout);
    // Without --mac-address the MAC is cnet's own (derived from the attachment).
    let plain = lab.exec("plain", "ip link show eth0");
    assert!(!plain.stdout.contains(MAC), "{}", plain.stdout);
    let routes = lab.exec("m", "ip -4 route");
    assert!(
        routes
            .stdout
            .contains("10.96.0.0/12 via 169.254.1.1 dev eth0"),
        "{}",
        routes.stdout
    );
    // Both containers still reach each other.
    let to = lab.ip("plain");
    assert!(lab.ping_from("m", to), "m -> plain");
}
