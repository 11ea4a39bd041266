//! Results: the full `ADD` result, the abbreviated IPAM result (no interfaces), rendering in any
//! supported version and parsing a `prevResult` of any supported version.

use crate::config::Dns;
use crate::error::{CniError, ErrorCode};
use crate::version::Version;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// An interface created by an attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU, if known (1.0.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Socket path (1.0.0 and later), if any.
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    /// PCI id (1.0.0 and later), if any.
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned by an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into the result's `interfaces` (absent in an IPAM result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length (host bits set), e.g. `10.1.0.5/16`.
    pub address: IpNetwork,
    /// The subnet's gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route created by an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR notation.
    pub dst: IpNetwork,
    /// Next hop; when absent a gateway from `ips` may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Path MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority (lower is preferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (0 global, 253 link, 254 host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route to `dst` with an optional next hop and nothing else set.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// A success result. With no `interfaces` and no `interface` indices it is the abbreviated
/// result an IPAM plugin returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes created.
    pub routes: Vec<Route>,
    /// DNS information.
    pub dns: Dns,
}

// ---- version-specific wire shapes (field order as libcni prints them) ----

#[derive(Serialize)]
struct WireCurrent<'a, I: Serialize> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    interfaces: &'a [WireInterface<'a>],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ips: &'a [I],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [Route],
    dns: &'a Dns,
}

#[derive(Serialize)]
struct WireInterface<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    mac: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "str::is_empty")]
    sandbox: &'a str,
    #[serde(rename = "socketPath", skip_serializing_if = "str::is_empty")]
    socket_path: &'a str,
    #[serde(rename = "pciID", skip_serializing_if = "str::is_empty")]
    pci_id: &'a str,
}

#[derive(Serialize)]
struct WireIp04<'a> {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: &'a IpNetwork,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct WireLegacyIp {
    ip: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Serialize)]
struct WireLegacy<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<WireLegacyIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<WireLegacyIp>,
    dns: &'a Dns,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Wire<'a> {
    Legacy(WireLegacy<'a>),
    V04(WireCurrent<'a, WireIp04<'a>>),
    V1(WireCurrent<'a, IpConfig>),
}

/// Any version, read leniently.
#[derive(Deserialize)]
struct WireAny {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    ip4: Option<WireLegacyIp>,
    #[serde(default)]
    ip6: Option<WireLegacyIp>,
}

impl CniResult {
    /// Render in `version`'s shape as a JSON value.
    ///
    /// 1.x: `ips` without `version`; 0.3.x/0.4.0: each IP carries `"version": "4"|"6"` and
    /// interfaces lose 1.x-only fields; 0.1.0/0.2.0: the first address of each family as `ip4`/`ip6`
    /// with the routes of its family — an error (code 1) when there is no address to express.
    pub fn to_value(&self, version: Version) -> Result<Value, CniError> {
        self.with_wire(version, |w| {
            serde_json::to_value(w).map_err(|e| CniError::io(format!("encoding result: {e}")))
        })
    }

    /// Render as the text a plugin prints (4-space indented JSON with libcni's key order).
    pub fn to_json_string(&self, version: Version) -> Result<String, CniError> {
        self.with_wire(version, |w| Ok(pretty(w)))
    }

    fn with_wire<T>(
        &self,
        version: Version,
        f: impl FnOnce(&Wire<'_>) -> Result<T, CniError>,
    ) -> Result<T, CniError> {
        if version.is_legacy_result() {
            let pick = |v4: bool| {
                self.ips
                    .iter()
                    .find(|ip| ip.address.is_ipv4() == v4)
                    .map(|ip| WireLegacyIp {
                        ip: ip.address,
                        gateway: ip.gateway,
                        routes: self
                            .routes
                            .iter()
                            .filter(|r| r.dst.is_ipv4() == v4)
                            .map(|r| Route::new(r.dst, r.gw))
                            .collect(),
                    })
            };
            let (ip4, ip6) = (pick(true), pick(false));
            if ip4.is_none() && ip6.is_none() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("cannot express a result without addresses in CNI {version}"),
                ));
            }
            return f(&Wire::Legacy(WireLegacy {
                cni_version: version.as_str(),
                ip4,
                ip6,
                dns: &self.dns,
            }));
        }
        let modern = version >= Version::V1_0_0;
        let interfaces: Vec<WireInterface<'_>> = self
            .interfaces
            .iter()
            .map(|i| WireInterface {
                name: &i.name,
                mac: &i.mac,
                mtu: if modern { i.mtu } else { None },
                sandbox: &i.sandbox,
                socket_path: if modern { &i.socket_path } else { "" },
                pci_id: if modern { &i.pci_id } else { "" },
            })
            .collect();
        if version.ips_have_version() {
            let ips: Vec<WireIp04<'_>> = self
                .ips
                .iter()
                .map(|ip| WireIp04 {
                    version: if ip.address.is_ipv4() { "4" } else { "6" },
                    interface: ip.interface,
                    address: &ip.address,
                    gateway: ip.gateway,
                })
                .collect();
            f(&Wire::V04(WireCurrent {
                cni_version: version.as_str(),
                interfaces: &interfaces,
                ips: &ips,
                routes: &self.routes,
                dns: &self.dns,
            }))
        } else {
            f(&Wire::V1(WireCurrent {
                cni_version: version.as_str(),
                interfaces: &interfaces,
                ips: &self.ips,
                routes: &self.routes,
                dns: &self.dns,
            }))
        }
    }

    /// Parse a result (e.g. `prevResult`) of any supported version. The result's own
    /// `cniVersion` wins; without one, `fallback` (the config's version) decides the shape.
    /// Code 6 when it cannot be decoded, code 1 for an unknown version.
    pub fn parse(value: &Value, fallback: Version) -> Result<CniResult, CniError> {
        let any: WireAny = serde_json::from_value(value.clone())
            .map_err(|e| CniError::decode(format!("error decoding result: {e}")))?;
        let version = match any.cni_version.as_deref() {
            Some(v) if !v.is_empty() => v.parse::<Version>()?,
            _ => fallback,
        };
        let dns = any.dns.unwrap_or_default();
        if version.is_legacy_result()
            || (any.ips.is_empty() && (any.ip4.is_some() || any.ip6.is_some()))
        {
            let mut out = CniResult {
                dns,
                ..CniResult::default()
            };
            for legacy in [any.ip4, any.ip6].into_iter().flatten() {
                out.ips.push(IpConfig {
                    interface: None,
                    address: legacy.ip,
                    gateway: legacy.gateway,
                });
                out.routes.extend(legacy.routes);
            }
            return Ok(out);
        }
        for ip in &any.ips {
            if let Some(i) = ip.interface {
                if i >= any.interfaces.len() {
                    return Err(CniError::decode(format!(
                        "result ip {} refers to interface {i}, but there are {} interfaces",
                        ip.address,
                        any.interfaces.len()
                    )));
                }
            }
        }
        Ok(CniResult {
            interfaces: any.interfaces,
            ips: any.ips,
            routes: any.routes,
            dns,
        })
    }

    /// Parse result bytes (as printed by a delegated plugin).
    pub fn parse_bytes(bytes: &[u8], fallback: Version) -> Result<CniResult, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("error decoding result: {e}")))?;
        CniResult::parse(&v, fallback)
    }
}

/// JSON with 4-space indentation and no trailing newline (libcni's `PrintResult` layout).
pub fn pretty<T: Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "00:11:22:33:44:55".into(),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "99:88:77:66:55:44".into(),
                    mtu: Some(1500),
                    sandbox: "/var/run/netns/blue".into(),
                    ..Interface::default()
                },
            ],
            ips: vec![
                IpConfig {
                    interface: Some(1),
                    address: net("10.1.0.5/16"),
                    gateway: Some(ip("10.1.0.1")),
                },
                IpConfig {
                    interface: Some(1),
                    address: net("2001:db8::5/64"),
                    gateway: Some(ip("2001:db8::1")),
                },
                IpConfig {
                    interface: Some(0),
                    address: net("10.2.0.5/24"),
                    gateway: None,
                },
            ],
            routes: vec![
                Route::new(net("0.0.0.0/0"), None),
                Route::new(net("::/0"), Some(ip("2001:db8::1"))),
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                ..Dns::default()
            },
        }
    }

    #[test]
    fn renders_1_x_without_ip_version() {
        let v = sample().to_value(Version::V1_1_0).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(
            v["ips"][0],
            json!({"interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"})
        );
        assert_eq!(v["interfaces"][1]["mtu"], 1500);
        assert_eq!(v["routes"][1], json!({"dst": "::/0", "gw": "2001:db8::1"}));
        assert_eq!(v["dns"]["nameservers"][0], "10.1.0.1");
    }

    #[test]
    fn renders_0_3_and_0_4_with_ip_version() {
        for ver in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            let v = sample().to_value(ver).unwrap();
            assert_eq!(v["cniVersion"], ver.as_str());
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert_eq!(v["ips"][0]["interface"], 1);
            assert!(v["interfaces"][1].get("mtu").is_none());
        }
    }

    #[test]
    fn renders_legacy_first_address_per_family_and_routes_by_family() {
        let v = sample().to_value(Version::V0_2_0).unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                "ip6": {"ip": "2001:db8::5/64", "gateway": "2001:db8::1",
                        "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
                "dns": {"nameservers": ["10.1.0.1"]}
            })
        );
        let empty = CniResult::default();
        assert_eq!(
            empty.to_value(Version::V0_1_0).unwrap_err().code,
            ErrorCode::IncompatibleVersion
        );
    }

    #[test]
    fn ipam_result_has_no_interfaces_and_empty_dns_object() {
        let r = CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: net("10.1.2.2/24"),
                gateway: Some(ip("10.1.2.1")),
            }],
            ..CniResult::default()
        };
        let s = r.to_json_string(Version::V1_0_0).unwrap();
        assert_eq!(
            s,
            "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.1.2.2/24\",\n            \"gateway\": \"10.1.2.1\"\n        }\n    ],\n    \"dns\": {}\n}"
        );
    }

    #[test]
    fn every_version_round_trips_through_parse() {
        let full = sample();
        for ver in crate::ALL_VERSIONS {
            let v = full.to_value(ver).unwrap();
            let back = CniResult::parse(&v, Version::V1_1_0).unwrap();
            if ver >= Version::V1_0_0 {
                assert_eq!(back, full, "{ver}");
            } else if ver >= Version::V0_3_0 {
                assert_eq!(back.ips, full.ips, "{ver}");
                assert_eq!(back.routes, full.routes, "{ver}");
                assert_eq!(back.interfaces.len(), 2);
            } else {
                assert_eq!(back.ips.len(), 2, "{ver}");
                assert_eq!(back.ips[0].interface, None);
                assert_eq!(back.routes.len(), 2);
            }
        }
    }

    #[test]
    fn parse_uses_fallback_version_and_rejects_bad_input() {
        let legacy = json!({"ip4": {"ip": "10.0.0.2/24"}});
        let r = CniResult::parse(&legacy, Version::V0_2_0).unwrap();
        assert_eq!(r.ips[0].address, net("10.0.0.2/24"));
        let bad_index =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        assert_eq!(
            CniResult::parse(&bad_index, Version::V1_0_0)
                .unwrap_err()
                .code,
            ErrorCode::DecodingFailure
        );
        let bad_addr = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]});
        assert_eq!(
            CniResult::parse(&bad_addr, Version::V1_0_0)
                .unwrap_err()
                .code,
            ErrorCode::DecodingFailure
        );
        let bad_ver = json!({"cniVersion": "7.0.0"});
        assert_eq!(
            CniResult::parse(&bad_ver, Version::V1_0_0)
                .unwrap_err()
                .code,
            ErrorCode::IncompatibleVersion
        );
    }
}
