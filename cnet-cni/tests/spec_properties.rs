//! Property tests of the spec layer: decoders never panic on arbitrary input (only typed
//! errors), results survive rendering in any version and parsing back, and the validators
//! agree with the spec's character rules.
#![allow(clippy::unwrap_used)]

use cnet_cni::{
    ALL_VERSIONS, CniArgs, CniResult, Dns, ErrorCode, Interface, IpConfig, NetConf, Route, Version,
    validate_container_id, validate_ifname,
};
use ipnetwork::IpNetwork;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

fn arb_net() -> impl Strategy<Value = IpNetwork> {
    (arb_ip(), any::<u8>()).prop_map(|(ip, p)| {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        IpNetwork::new(ip, p % (max + 1)).unwrap()
    })
}

fn arb_result() -> impl Strategy<Value = CniResult> {
    let iface =
        ("[a-z]{1,15}", proptest::option::of(1u32..9000)).prop_map(|(name, mtu)| Interface {
            name,
            mtu,
            ..Interface::default()
        });
    (
        proptest::collection::vec(iface, 0..3),
        proptest::collection::vec(
            (arb_net(), proptest::option::of(arb_ip()), any::<u8>()),
            0..5,
        ),
        proptest::collection::vec((arb_net(), proptest::option::of(arb_ip())), 0..5),
        proptest::collection::vec("[0-9.]{1,15}", 0..3),
    )
        .prop_map(|(interfaces, ips, routes, ns)| {
            let n = interfaces.len();
            CniResult {
                ips: ips
                    .into_iter()
                    .map(|(address, gateway, i)| IpConfig {
                        interface: (n > 0).then(|| i as usize % n),
                        address,
                        gateway,
                    })
                    .collect(),
                interfaces,
                routes: routes.into_iter().map(|(d, g)| Route::new(d, g)).collect(),
                dns: Dns {
                    nameservers: ns,
                    ..Dns::default()
                },
            }
        })
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = NetConf::parse(&bytes);
        let _ = CniResult::parse_bytes(&bytes, Version::V1_1_0);
        let _ = cnet_cni::CniError::from_json(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_json_shaped_text(s in r#"\{("[a-zA-Z]{1,10}": ?("[^"]{0,10}"|[0-9]{1,5}|\[\]|\{\}|null|true), ?){0,5}\}"#) {
        if let Err(e) = NetConf::parse(s.as_bytes()) {
            prop_assert!(matches!(e.code, ErrorCode::DecodingFailure | ErrorCode::InvalidNetworkConfig));
        }
        let _ = CniResult::parse_bytes(s.as_bytes(), Version::V0_2_0);
    }

    #[test]
    fn results_round_trip_in_1_x_and_keep_addresses_in_0_3_and_0_4(r in arb_result()) {
        for v in ALL_VERSIONS {
            match r.to_value(v) {
                Ok(json) => {
                    let back = CniResult::parse(&json, Version::V1_1_0).unwrap();
                    if v >= Version::V1_0_0 {
                        prop_assert_eq!(&back, &r);
                    } else if v >= Version::V0_3_0 {
                        prop_assert_eq!(&back.ips, &r.ips);
                        prop_assert_eq!(&back.routes, &r.routes);
                    } else {
                        // First address of each family, as libcni converts.
                        prop_assert!(back.ips.len() <= 2);
                        for ip in &back.ips {
                            prop_assert!(r.ips.iter().any(|o| o.address == ip.address));
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(v.is_legacy_result() && r.ips.is_empty());
                    prop_assert_eq!(e.code, ErrorCode::IncompatibleVersion);
                }
            }
        }
    }

    #[test]
    fn container_id_validation_is_the_spec_regex(s in "[ -~]{0,20}") {
        let mut cs = s.chars();
        let expected = cs.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && cs.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        prop_assert_eq!(validate_container_id(&s).is_ok(), expected);
    }

    #[test]
    fn ifname_validation_is_the_kernel_rule(s in "[ -~\t]{0,20}") {
        let expected = !s.is_empty() && s.len() <= 15 && s != "." && s != ".."
            && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        prop_assert_eq!(validate_ifname(&s).is_ok(), expected);
    }

    #[test]
    fn cni_args_parse_what_they_render(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,8}", "[A-Za-z0-9.:/_-]{0,12}"), 0..6)) {
        let text = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        let parsed = CniArgs::parse(&text).unwrap();
        let got: Vec<(String, String)> = parsed.pairs().to_vec();
        prop_assert_eq!(got, pairs);
    }
}
