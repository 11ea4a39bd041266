//! The reference host-local plugin's test cases (containernetworking/plugins,
//! plugins/ipam/host-local/host_local_test.go and the black-box-observable allocator cases),
//! re-expressed as black-box tests of the `cnet-ipam` binary. Each scenario runs against our
//! binary and, side by side, against /usr/lib/cni/host-local with the same configs: every step
//! must succeed or fail alike, and successful outputs must be identical JSON.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// What one step produced: success with its output, or failure.
type Transcript = Vec<Option<Value>>;

struct Run<'s> {
    s: &'s Subject,
    transcript: Transcript,
}

impl<'s> Run<'s> {
    fn new(s: &'s Subject) -> Run<'s> {
        Run {
            s,
            transcript: Vec::new(),
        }
    }

    fn step(&mut self, call: &Call<'_>, version: &str, ipam: &Value, top: &Value) -> Out {
        let out = self.s.call(call, version, ipam, top);
        self.transcript.push((out.status == 0).then(|| out.json()));
        out
    }
}

/// Run `scenario` on our binary and on host-local (when installed); transcripts must match.
fn side_by_side(scenario: impl Fn(&mut Run<'_>)) {
    let ours = Subject::ours();
    let mut a = Run::new(&ours);
    scenario(&mut a);
    if !have_host_local() {
        eprintln!("host-local not installed: side-by-side comparison skipped");
        return;
    }
    let reference = Subject::host_local();
    let mut b = Run::new(&reference);
    scenario(&mut b);
    assert_eq!(
        a.transcript, b.transcript,
        "cnet-ipam and host-local differ (left: ours, right: host-local)"
    );
}

fn none() -> Value {
    json!({})
}

#[test]
fn allocates_and_releases_addresses_with_add_del() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            std::fs::write(r.s.dir.path().join("resolv.conf"), "nameserver 192.0.2.3").unwrap();
            let ipam = json!({
                "resolvConf": r.s.dir.path().join("resolv.conf"),
                "ranges": [
                    [{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24"}],
                    [{"subnet": "2001:db8:1::0/64"}]
                ],
                "routes": [
                    {"dst": "0.0.0.0/0"},
                    {"dst": "::/0"},
                    {"dst": "192.168.0.0/16", "gw": "1.1.1.1"},
                    {"dst": "2001:db8:2::0/64", "gw": "2001:db8:3::1"}
                ]
            });
            let out = r.step(&Call::new("ADD", "dummy"), ver, &ipam, &none());
            let v = out.ok();
            assert_eq!(v["cniVersion"], ver);
            assert_eq!(out.addresses(), ["10.1.2.2/24", "2001:db8:1::2/64"]);
            assert_eq!(v["dns"]["nameservers"], json!(["192.0.2.3"]));
            if has_ips_list(ver) {
                assert_eq!(v["ips"][0]["gateway"], "10.1.2.1");
                assert_eq!(v["ips"][1]["gateway"], "2001:db8:1::1");
                assert_eq!(v["routes"].as_array().unwrap().len(), 4);
                assert_eq!(
                    v["routes"][2],
                    json!({"dst": "192.168.0.0/16", "gw": "1.1.1.1"})
                );
                if ver != "1.0.0" {
                    assert_eq!(v["ips"][0]["version"], "4");
                }
            } else {
                assert_eq!(v["ip4"]["gateway"], "10.1.2.1");
                assert_eq!(v["ip6"]["routes"].as_array().unwrap().len(), 2);
            }
            // The same owner again without DEL: error.
            assert_ne!(
                r.step(&Call::new("ADD", "dummy"), ver, &ipam, &none())
                    .status,
                0
            );
            // Release, twice (idempotent).
            r.step(&Call::new("DEL", "dummy"), ver, &ipam, &none()).ok();
            r.step(&Call::new("DEL", "dummy"), ver, &ipam, &none()).ok();
            // The released addresses are free again: the next owner gets the next ones
            // (round robin), and the owner can come back.
            let again = r.step(&Call::new("ADD", "dummy2"), ver, &ipam, &none());
            assert_eq!(again.addresses(), ["10.1.2.3/24", "2001:db8:1::3/64"]);
            r.step(&Call::new("ADD", "dummy"), ver, &ipam, &none()).ok();
        });
    }
}

#[test]
fn allocates_and_releases_on_specific_interfaces() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let net0 = json!({"ranges": [[{"subnet": "10.1.2.0/24"}]]});
            let top1 = json!({"name": "mynet1"});
            let net1 = json!({"ranges": [[{"subnet": "10.2.2.0/24"}]]});
            let a0 = r.step(&Call::new("ADD", "dummy0"), ver, &net0, &none());
            assert_eq!(a0.addresses(), ["10.1.2.2/24"]);
            let a1 = r.step(
                &Call::new("ADD", "dummy1").ifname("eth1"),
                ver,
                &net1,
                &top1,
            );
            assert_eq!(a1.addresses(), ["10.2.2.2/24"]);
            r.step(&Call::new("DEL", "dummy0"), ver, &net0, &none())
                .ok();
            if ver >= "0.4.0" {
                // dummy1/eth1 is untouched; dummy0/eth0 is gone.
                r.step(
                    &Call::new("CHECK", "dummy1").ifname("eth1"),
                    ver,
                    &net1,
                    &top1,
                )
                .ok();
                assert_ne!(
                    r.step(&Call::new("CHECK", "dummy0"), ver, &net0, &none())
                        .status,
                    0
                );
            }
            r.step(
                &Call::new("DEL", "dummy1").ifname("eth1"),
                ver,
                &net1,
                &top1,
            )
            .ok();
            if ver >= "0.4.0" {
                assert_ne!(
                    r.step(
                        &Call::new("CHECK", "dummy1").ifname("eth1"),
                        ver,
                        &net1,
                        &top1
                    )
                    .status,
                    0
                );
            }
        });
    }
}

#[test]
fn repeat_allocation_for_same_container_on_different_interfaces() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}]]});
            let e0 = r.step(
                &Call::new("ADD", "dummy").ifname("eth0"),
                ver,
                &ipam,
                &none(),
            );
            assert_eq!(e0.addresses(), ["10.1.2.2/24"]);
            assert_ne!(
                r.step(
                    &Call::new("ADD", "dummy").ifname("eth0"),
                    ver,
                    &ipam,
                    &none()
                )
                .status,
                0
            );
            let e1 = r.step(
                &Call::new("ADD", "dummy").ifname("eth1"),
                ver,
                &ipam,
                &none(),
            );
            assert_eq!(e1.addresses(), ["10.1.2.3/24"]);
            assert_ne!(
                r.step(
                    &Call::new("ADD", "dummy").ifname("eth1"),
                    ver,
                    &ipam,
                    &none()
                )
                .status,
                0
            );
            r.step(
                &Call::new("DEL", "dummy").ifname("eth0"),
                ver,
                &ipam,
                &none(),
            )
            .ok();
            r.step(
                &Call::new("DEL", "dummy").ifname("eth1"),
                ver,
                &ipam,
                &none(),
            )
            .ok();
        });
    }
}

#[test]
fn del_of_unknown_id_is_not_an_error() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam = json!({"subnet": "10.1.2.0/24"});
            r.step(&Call::new("DEL", "dummy"), ver, &ipam, &none()).ok();
        });
    }
}

#[test]
fn container_id_with_whitespace_is_rejected_with_code_4() {
    // Upstream's "ignores whitespace in disk files" calls cmdAdd directly; through the binary
    // the id is validated first, by both plugins.
    side_by_side(|r| {
        let ipam = json!({"subnet": "10.1.2.0/24"});
        let out = r.step(&Call::new("ADD", "   dummy\n "), "1.0.0", &ipam, &none());
        assert_eq!(out.err_code(), 4);
    });
}

#[test]
fn legacy_single_range_keys_with_start_end_gateway() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam = json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9",
                "rangeEnd": "10.1.2.11", "gateway": "10.1.2.10"});
            let got: Vec<String> = ["a", "b"]
                .iter()
                .map(|id| {
                    r.step(&Call::new("ADD", id), ver, &ipam, &none())
                        .addresses()[0]
                        .clone()
                })
                .collect();
            // The gateway inside the range is skipped.
            assert_eq!(got, ["10.1.2.9/24", "10.1.2.11/24"]);
            // Exhausted.
            assert_ne!(
                r.step(&Call::new("ADD", "c"), ver, &ipam, &none()).status,
                0
            );
            r.step(&Call::new("DEL", "a"), ver, &ipam, &none()).ok();
            let c = r.step(&Call::new("ADD", "c"), ver, &ipam, &none());
            assert_eq!(c.addresses(), ["10.1.2.9/24"]);
        });
    }
}

#[test]
fn allocates_a_custom_ip_requested_by_config_args() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}]]});
            let top = json!({"args": {"cni": {"ips": ["10.1.2.88"]}}});
            let out = r.step(&Call::new("ADD", "dummy"), ver, &ipam, &top);
            assert_eq!(out.addresses(), ["10.1.2.88/24"]);
            // Taken now: a second owner asking for it fails.
            assert_ne!(
                r.step(&Call::new("ADD", "other"), ver, &ipam, &top).status,
                0
            );
        });
    }
}

#[test]
fn allocates_custom_ips_from_multiple_ranges() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam =
                json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]});
            let top = json!({"args": {"cni": {"ips": ["10.1.2.88", "10.1.3.77"]}}});
            let out = r.step(&Call::new("ADD", "dummy"), ver, &ipam, &top);
            if has_ips_list(ver) {
                assert_eq!(out.addresses(), ["10.1.2.88/24", "10.1.3.77/24"]);
            } else {
                // 0.2.0 and older: at most one address per family.
                assert_ne!(out.status, 0);
            }
        });
    }
}

#[test]
fn allocates_custom_ips_from_multiple_protocols() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam = json!({"ranges": [
                [{"subnet": "172.16.1.0/24"}, {"subnet": "10.1.2.0/24"}],
                [{"subnet": "2001:db8:1::/48"}]
            ]});
            let top = json!({"args": {"cni": {"ips": ["10.1.2.88", "2001:db8:1::999"]}}});
            let out = r.step(&Call::new("ADD", "dummy"), ver, &ipam, &top);
            assert_eq!(out.addresses(), ["10.1.2.88/24", "2001:db8:1::999/48"]);
        });
    }
}

#[test]
fn fails_if_a_requested_custom_ip_is_not_used() {
    for ver in SHARED_VERSIONS {
        side_by_side(|r| {
            let ipam =
                json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]});
            let top = json!({"args": {"cni": {"ips": ["10.1.2.88", "10.1.2.77"]}}});
            assert_ne!(
                r.step(&Call::new("ADD", "dummy"), ver, &ipam, &top).status,
                0
            );
            // Nothing was kept: both addresses are still free for someone else.
            let top2 = json!({"args": {"cni": {"ips": ["10.1.2.88", "10.1.3.77"]}}});
            if has_ips_list(ver) {
                let out = r.step(&Call::new("ADD", "other"), ver, &ipam, &top2);
                assert_eq!(out.addresses(), ["10.1.2.88/24", "10.1.3.77/24"]);
            }
        });
    }
}

#[test]
fn requested_ip_from_cni_args_and_runtime_config() {
    for ver in ["0.3.1", "0.4.0", "1.0.0"] {
        side_by_side(|r| {
            let ipam =
                json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8::/64"}]]});
            let a = r.step(
                &Call::new("ADD", "a").args("IP=10.1.2.50"),
                ver,
                &ipam,
                &none(),
            );
            assert_eq!(a.addresses(), ["10.1.2.50/24", "2001:db8::2/64"]);
            let top = json!({"runtimeConfig": {"ips": ["2001:db8::77/64"]}});
            let b = r.step(&Call::new("ADD", "b"), ver, &ipam, &top);
            assert_eq!(b.addresses(), ["10.1.2.51/24", "2001:db8::77/64"]);
            // All sources together: CNI_ARGS, args.cni.ips and runtimeConfig.ips are all used.
            let top = json!({"args": {"cni": {"ips": ["2001:db8::99"]}},
                             "runtimeConfig": {"ips": []}});
            let c = r.step(
                &Call::new("ADD", "c").args("IgnoreUnknown=1;IP=10.1.2.60;K8S_POD_NAME=x"),
                ver,
                &ipam,
                &top,
            );
            assert_eq!(c.addresses(), ["10.1.2.60/24", "2001:db8::99/64"]);
            // Unknown CNI_ARGS without IgnoreUnknown: error.
            assert_ne!(
                r.step(&Call::new("ADD", "d").args("FOO=bar"), ver, &ipam, &none())
                    .status,
                0
            );
            // A requested address outside every range: error.
            let out = r.step(
                &Call::new("ADD", "e").args("IP=192.168.9.9"),
                ver,
                &ipam,
                &none(),
            );
            assert_ne!(out.status, 0);
        });
    }
}

#[test]
fn round_robin_does_not_reuse_a_just_released_address() {
    side_by_side(|r| {
        let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/29"}]]});
        // .1 is the gateway; .2-.6 usable (.7 broadcast).
        let mut got = Vec::new();
        for id in ["a", "b", "c"] {
            got.push(
                r.step(&Call::new("ADD", id), "1.0.0", &ipam, &none())
                    .addresses()[0]
                    .clone(),
            );
        }
        assert_eq!(got, ["10.1.2.2/29", "10.1.2.3/29", "10.1.2.4/29"]);
        r.step(&Call::new("DEL", "c"), "1.0.0", &ipam, &none()).ok();
        let d = r.step(&Call::new("ADD", "d"), "1.0.0", &ipam, &none());
        assert_eq!(d.addresses(), ["10.1.2.5/29"]);
        let e = r.step(&Call::new("ADD", "e"), "1.0.0", &ipam, &none());
        assert_eq!(e.addresses(), ["10.1.2.6/29"]);
        // Wraps around to the released .4.
        let f = r.step(&Call::new("ADD", "f"), "1.0.0", &ipam, &none());
        assert_eq!(f.addresses(), ["10.1.2.4/29"]);
        assert_ne!(
            r.step(&Call::new("ADD", "g"), "1.0.0", &ipam, &none())
                .status,
            0
        );
    });
}

#[test]
fn ipv6_only_and_multi_range_sets() {
    side_by_side(|r| {
        let ipam = json!({"ranges": [[
            {"subnet": "2001:db8:5::/126"},
            {"subnet": "2001:db8:6::/64", "rangeStart": "2001:db8:6::10", "rangeEnd": "2001:db8:6::11"}
        ]]});
        let mut got = Vec::new();
        for id in ["a", "b", "c", "d"] {
            got.push(
                r.step(&Call::new("ADD", id), "1.0.0", &ipam, &none())
                    .addresses()[0]
                    .clone(),
            );
        }
        // /126: ::1 gateway, ::2 and ::3 usable (no broadcast in IPv6); then the next range.
        assert_eq!(
            got,
            [
                "2001:db8:5::2/126",
                "2001:db8:5::3/126",
                "2001:db8:6::10/64",
                "2001:db8:6::11/64"
            ]
        );
        assert_ne!(
            r.step(&Call::new("ADD", "e"), "1.0.0", &ipam, &none())
                .status,
            0
        );
    });
}

#[test]
fn check_finds_the_lease_of_the_owner() {
    for ver in ["0.4.0", "1.0.0"] {
        side_by_side(|r| {
            let ipam = json!({"subnet": "10.1.2.0/24"});
            assert_ne!(
                r.step(&Call::new("CHECK", "a"), ver, &ipam, &none()).status,
                0
            );
            r.step(&Call::new("ADD", "a"), ver, &ipam, &none()).ok();
            r.step(&Call::new("CHECK", "a"), ver, &ipam, &none()).ok();
            assert_ne!(
                r.step(&Call::new("CHECK", "a").ifname("eth1"), ver, &ipam, &none())
                    .status,
                0
            );
            r.step(&Call::new("DEL", "a"), ver, &ipam, &none()).ok();
            assert_ne!(
                r.step(&Call::new("CHECK", "a"), ver, &ipam, &none()).status,
                0
            );
        });
    }
}

#[test]
fn invalid_configs_fail_alike() {
    let cases = [
        json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.5"}),
        json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.1"}),
        json!({"subnet": "10.1.2.5/24"}),
        json!({"subnet": "10.1.2.0/31"}),
        json!({"subnet": "not-a-cidr"}),
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.0/25"}]]}),
        json!({"ranges": []}),
        json!({}),
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "2001:db8::/64"}]]}),
    ];
    for ipam in cases {
        side_by_side(|r| {
            let out = r.step(&Call::new("ADD", "a"), "1.0.0", &ipam, &none());
            assert_ne!(out.status, 0, "{ipam}: {}", out.stdout);
        });
    }
}

#[test]
fn gateway_outside_the_subnet_is_a_known_divergence() {
    // host-local accepts a gateway outside the subnet (and then hands out .1); cnet-ipam's
    // library rejects it as an invalid config (code 7). Documented divergence.
    let ipam = json!({"subnet": "10.1.2.0/24", "gateway": "10.9.9.9"});
    let ours = Subject::ours();
    let out = ours.call(&Call::new("ADD", "a"), "1.0.0", &ipam, &none());
    assert_eq!(out.err_code(), 7);
    assert!(ours.snapshot().is_empty());
    if have_host_local() {
        let hl = Subject::host_local();
        let out = hl.call(&Call::new("ADD", "a"), "1.0.0", &ipam, &none());
        assert_eq!(out.addresses(), ["10.1.2.1/24"]);
    }
}

// ---- backend/allocator/allocator_test.go, where observable through the binary ----

#[test]
fn allocator_round_robin_across_subnets_of_a_range_set() {
    side_by_side(|r| {
        let ipam = json!({"ranges": [[{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"}, {"subnet": "10.0.2.0/30"}]]});
        let mut seq = Vec::new();
        // Each /30 has one usable address (.2); release after each ADD so only the
        // last-reserved position moves: advance to the next subnet, then roll to the first.
        for _ in 0..4 {
            let out = r.step(&Call::new("ADD", "ID"), "1.0.0", &ipam, &none());
            seq.push(out.addresses()[0].clone());
            r.step(&Call::new("DEL", "ID"), "1.0.0", &ipam, &none())
                .ok();
        }
        assert_eq!(
            seq,
            ["10.0.0.2/30", "10.0.1.2/30", "10.0.2.2/30", "10.0.0.2/30"]
        );
    });
}

#[test]
fn allocator_same_id_after_release_gets_the_next_address() {
    side_by_side(|r| {
        let ipam = json!({"subnet": "192.168.1.0/29"});
        let a = r.step(&Call::new("ADD", "ID"), "1.0.0", &ipam, &none());
        assert_eq!(a.addresses(), ["192.168.1.2/29"]);
        r.step(&Call::new("DEL", "ID"), "1.0.0", &ipam, &none())
            .ok();
        let b = r.step(&Call::new("ADD", "ID"), "1.0.0", &ipam, &none());
        assert_eq!(b.addresses(), ["192.168.1.3/29"]);
    });
}

#[test]
fn allocator_wraps_to_the_only_free_address() {
    side_by_side(|r| {
        let ipam = json!({"subnet": "10.0.0.0/29"});
        for id in ["a", "b", "c", "d", "e"] {
            r.step(&Call::new("ADD", id), "1.0.0", &ipam, &none()).ok();
        }
        r.step(&Call::new("DEL", "b"), "1.0.0", &ipam, &none()).ok();
        let f = r.step(&Call::new("ADD", "f"), "1.0.0", &ipam, &none());
        assert_eq!(f.addresses(), ["10.0.0.3/29"]);
        // Out of addresses: a meaningful error.
        let g = r.step(&Call::new("ADD", "g"), "1.0.0", &ipam, &none());
        assert_ne!(g.status, 0);
    });
}

#[test]
fn allocator_requested_ip_must_be_within_start_and_end_and_free() {
    side_by_side(|r| {
        let ipam = json!({"subnet": "192.168.1.0/29", "rangeStart": "192.168.1.3", "rangeEnd": "192.168.1.4"});
        for (id, ip) in [("a", "192.168.1.5"), ("b", "192.168.1.2")] {
            let top = json!({"args": {"cni": {"ips": [ip]}}});
            assert_ne!(
                r.step(&Call::new("ADD", id), "1.0.0", &ipam, &top).status,
                0,
                "{ip}"
            );
        }
        let top = json!({"args": {"cni": {"ips": ["192.168.1.4"]}}});
        let c = r.step(&Call::new("ADD", "c"), "1.0.0", &ipam, &top);
        assert_eq!(c.addresses(), ["192.168.1.4/29"]);
        assert_ne!(
            r.step(&Call::new("ADD", "d"), "1.0.0", &ipam, &top).status,
            0
        );
        // Unrequested allocation takes the remaining one.
        let e = r.step(&Call::new("ADD", "e"), "1.0.0", &ipam, &none());
        assert_eq!(e.addresses(), ["192.168.1.3/29"]);
    });
}
