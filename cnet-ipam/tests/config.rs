//! Config parsing and validation: host-local's config_test.go cases, plus the bad-input cases
//! of the issue. Every error is typed and carries CNI code 7 (or 4 for CNI_ARGS).

use std::net::IpAddr;

use cnet_ipam::{IpamConfig, IpamError, requested_addresses};
use serde_json::{Value, json};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn net(ipam: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "ipam": ipam})
}

fn err(ipam: Value) -> IpamError {
    IpamConfig::from_net_conf(&net(ipam)).expect_err("invalid config")
}

fn invalid(ipam: Value, field: &str, needle: &str) {
    match err(ipam) {
        e @ IpamError::InvalidConfig { .. } => {
            assert_eq!(e.cni_code(), 7);
            let IpamError::InvalidConfig { field: f, reason } = &e else {
                unreachable!()
            };
            assert_eq!(f, field, "{e}");
            assert!(reason.contains(needle), "{e} lacks {needle:?}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn old_style_config() {
    let c = IpamConfig::from_net_conf(&net(json!({
        "type": "host-local", "subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9",
        "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30", "dataDir": "/tmp/x", "resolvConf": "/etc/r"
    })))
    .expect("valid");
    assert_eq!(c.network, "mynet");
    assert_eq!(c.plugin_type, "host-local");
    assert_eq!(c.ranges.len(), 1);
    let r = &c.ranges[0].ranges[0];
    assert_eq!(r.subnet.to_string(), "10.1.2.0/24");
    assert_eq!(
        (r.range_start, r.range_end, r.gateway),
        (ip("10.1.2.9"), ip("10.1.2.20"), ip("10.1.2.30"))
    );
    assert_eq!(c.store_dir(), std::path::Path::new("/tmp/x/mynet"));
    assert_eq!(
        c.resolv_conf.as_deref(),
        Some(std::path::Path::new("/etc/r"))
    );
}

#[test]
fn new_style_config_with_defaults() {
    let c = IpamConfig::from_net_conf(&net(json!({
        "ranges": [
            [{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30"},
             {"subnet": "10.1.4.0/24"}],
            [{"subnet": "11.1.2.0/24", "rangeStart": "11.1.2.9", "rangeEnd": "11.1.2.20", "gateway": "11.1.2.30"}],
            [{"subnet": "2001:db8:1::/64"}]
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.5", "mtu": 1400, "advmss": 1360}]
    })))
    .expect("valid");
    assert_eq!(c.ranges.len(), 3);
    let d = &c.ranges[0].ranges[1];
    assert_eq!(
        (d.range_start, d.range_end, d.gateway),
        (ip("10.1.4.1"), ip("10.1.4.254"), ip("10.1.4.1"))
    );
    let v6 = &c.ranges[2].ranges[0];
    assert_eq!(
        (v6.range_start, v6.range_end, v6.gateway),
        (
            ip("2001:db8:1::1"),
            ip("2001:db8:1::ffff:ffff:ffff:ffff"),
            ip("2001:db8:1::1")
        )
    );
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[1].gw, Some(ip("10.1.2.5")));
    assert_eq!(
        (c.routes[1].mtu, c.routes[1].advmss),
        (Some(1400), Some(1360))
    );
    assert_eq!((c.routes[0].mtu, c.routes[0].advmss), (None, None));
    assert_eq!(
        c.data_dir(),
        std::path::Path::new(cnet_ipam::DEFAULT_DATA_DIR)
    );
}

#[test]
fn mixed_config_with_runtime_ranges_orders_runtime_legacy_ranges() {
    let conf = json!({
        "cniVersion": "0.3.1", "name": "mynet",
        "runtimeConfig": {"ipRanges": [[{"subnet": "12.1.3.0/24"}]]},
        "ipam": {
            "subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30",
            "ranges": [[{"subnet": "11.1.2.0/24", "rangeStart": "11.1.2.9", "rangeEnd": "11.1.2.20", "gateway": "11.1.2.30"}]]
        }
    });
    let c = IpamConfig::from_net_conf(&conf).expect("valid");
    let subnets: Vec<String> = c
        .ranges
        .iter()
        .map(|s| s.ranges[0].subnet.to_string())
        .collect();
    assert_eq!(subnets, ["12.1.3.0/24", "10.1.2.0/24", "11.1.2.0/24"]);
}

#[test]
fn overlap_between_and_within_range_sets() {
    invalid(
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24"}],
                          [{"subnet": "10.1.4.0/24"}, {"subnet": "10.1.6.0/24"}, {"subnet": "10.1.8.0/24"}, {"subnet": "10.1.2.0/24"}]]}),
        "ipam.ranges",
        "range set 0 overlaps with 1",
    );
    invalid(
        json!({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]}),
        "ipam.ranges[0]",
        "subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap",
    );
    // Legacy range overlapping a `ranges` entry.
    invalid(
        json!({"subnet": "10.1.0.0/16", "ranges": [[{"subnet": "10.1.5.0/24"}]]}),
        "ipam.ranges",
        "range set 0 overlaps with 1",
    );
    // Same subnet, disjoint ranges: fine (host-local compares ranges, not subnets).
    IpamConfig::from_net_conf(&net(json!({"ranges": [
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.19"}],
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.29"}]]})))
    .expect("disjoint ranges of one subnet");
}

#[test]
fn mixed_families_in_a_set() {
    invalid(
        json!({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "2001:db8:5::/64"}]]}),
        "ipam.ranges[0]",
        "mixed address families",
    );
}

#[test]
fn too_many_sets_for_old_versions() {
    let conf = json!({"cniVersion": "0.2.0", "name": "mynet",
        "ipam": {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "11.1.2.0/24"}]]}});
    let e = IpamConfig::from_net_conf(&conf).expect_err("too many");
    assert!(
        e.to_string()
            .contains("CNI version 0.2.0 does not support more than 1 address per family")
    );
    let conf = json!({"cniVersion": "0.2.0", "name": "mynet",
        "ipam": {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8:1::/48"}]]}});
    IpamConfig::from_net_conf(&conf).expect("one per family is fine");
}

#[test]
fn bad_subnets() {
    invalid(
        json!({"subnet": "10.1.2.3/24"}),
        "ipam.subnet",
        "host bits set",
    );
    invalid(json!({"subnet": "10.1.2.0/31"}), "ipam.subnet", "too small");
    invalid(json!({"subnet": "10.1.2.0/32"}), "ipam.subnet", "too small");
    invalid(
        json!({"ranges": [[{"subnet": "fd00::/127"}]]}),
        "ipam.ranges[0][0].subnet",
        "too small",
    );
    invalid(
        json!({"subnet": "10.1.2.0/33"}),
        "ipam.subnet",
        "invalid CIDR",
    );
    invalid(
        json!({"subnet": "10.1.2.0"}),
        "ipam.subnet",
        "missing prefix",
    );
    invalid(
        json!({"subnet": "not-a-net/8"}),
        "ipam.subnet",
        "invalid CIDR",
    );
    invalid(json!({"subnet": 42}), "ipam.subnet", "expected a string");
    invalid(
        json!({"ranges": [[{"rangeStart": "10.0.0.1"}]]}),
        "ipam.ranges[0][0].subnet",
        "missing",
    );
    invalid(json!({"ranges": [[]]}), "ipam.ranges[0]", "empty range set");
    invalid(
        json!({"ranges": [{"subnet": "10.0.0.0/24"}]}),
        "ipam.ranges[0]",
        "array of ranges",
    );
    invalid(json!({"ranges": "10.0.0.0/24"}), "ipam.ranges", "array");
    invalid(json!({}), "ipam.ranges", "no IP ranges specified");
}

#[test]
fn bad_range_bounds_and_gateway() {
    invalid(
        json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.50", "rangeEnd": "10.1.2.40"}),
        "ipam.rangeStart",
        "after rangeEnd",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.5"}),
        "ipam.rangeStart",
        "not in network",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.5"}),
        "ipam.rangeEnd",
        "not in network",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "gateway": "10.9.9.9"}),
        "ipam.gateway",
        "not in network",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "gateway": "fd00::1"}),
        "ipam.gateway",
        "not in network",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "rangeStart": "banana"}),
        "ipam.rangeStart",
        "invalid IP",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "nope"}]}),
        "ipam.routes[0].dst",
        "invalid CIDR",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "10.9.0.0/16", "mtu": 0}]}),
        "ipam.routes[0].mtu",
        "positive integer",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "10.9.0.0/16", "advmss": "x"}]}),
        "ipam.routes[0].advmss",
        "positive integer",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "routes": [{"gw": "10.1.2.1"}]}),
        "ipam.routes[0].dst",
        "missing",
    );
    invalid(
        json!({"subnet": "10.1.2.0/24", "dataDir": 7}),
        "ipam.dataDir",
        "expected a string",
    );
}

#[test]
fn network_name_must_name_a_directory() {
    for name in ["", "..", "a/b"] {
        let e =
            IpamConfig::from_net_conf(&json!({"name": name, "ipam": {"subnet": "10.0.0.0/24"}}))
                .expect_err(name);
        assert_eq!(e.cni_code(), 7, "{name}");
    }
    let e = IpamConfig::from_net_conf(&json!({"name": "n"})).expect_err("no ipam");
    assert!(e.to_string().contains("missing 'ipam'"));
}

#[test]
fn unknown_keys_are_ignored_like_host_local() {
    IpamConfig::from_net_conf(&net(json!({"subnet": "10.0.0.0/24", "whatever": {"x": 1}})))
        .expect("unknown keys are ignored");
}

#[test]
fn requested_addresses_precedence_and_dedup() {
    let conf = json!({
        "name": "n",
        "args": {"cni": {"ips": ["10.1.2.88", "10.1.2.3/24"]}},
        "runtimeConfig": {"ips": ["2001:db8::5/64", "10.1.2.88"]}
    });
    let got = requested_addresses(
        Some("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.3.4,10.1.3.5"),
        &conf,
    )
    .expect("valid");
    assert_eq!(
        got,
        vec![
            ip("10.1.3.4"),
            ip("10.1.3.5"),
            ip("10.1.2.88"),
            ip("10.1.2.3"),
            ip("2001:db8::5")
        ]
    );
    assert!(
        requested_addresses(None, &json!({}))
            .expect("none")
            .is_empty()
    );
    assert!(
        requested_addresses(Some(""), &json!({}))
            .expect("none")
            .is_empty()
    );
}

#[test]
fn bad_requested_addresses_are_typed() {
    let e = requested_addresses(Some("IP=10.1.2.300"), &json!({})).expect_err("bad env ip");
    assert!(matches!(e, IpamError::InvalidArgs { .. }));
    assert_eq!(e.cni_code(), 4);
    let e = requested_addresses(Some("garbage"), &json!({})).expect_err("bad env");
    assert_eq!(e.cni_code(), 4);
    let e =
        requested_addresses(None, &json!({"args": {"cni": {"ips": ["x"]}}})).expect_err("bad ip");
    assert_eq!(e.cni_code(), 7);
    let e = requested_addresses(None, &json!({"runtimeConfig": {"ips": "10.0.0.1"}}))
        .expect_err("not list");
    assert_eq!(e.cni_code(), 7);
}

#[test]
fn malformed_json_is_a_decode_error() {
    for bad in [
        &b"{"[..],
        b"",
        b"{\"name\": \"n\", \"ipam\": {\"subnet\": }}",
        b"\xff\xfe",
    ] {
        let e = IpamConfig::from_net_conf_bytes(bad).expect_err("malformed");
        assert!(matches!(e, IpamError::Decode { .. }), "{e}");
        assert_eq!(e.cni_code(), 6);
    }
    let ok = br#"{"name": "n", "ipam": {"subnet": "10.0.0.0/24"}}"#;
    assert_eq!(
        IpamConfig::from_net_conf_bytes(ok)
            .expect("valid")
            .ranges
            .len(),
        1
    );
}
