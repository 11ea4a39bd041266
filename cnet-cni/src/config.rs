//! The network configuration a plugin reads on stdin (one plugin's request configuration).

use crate::error::CniError;
use crate::version::{Version, negotiate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// DNS settings, in configs and results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Priority-ordered nameserver addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// A `key`/`value` label (the `args.cni.labels` convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// The `args.cni` convention area: requested IPs and labels; other keys kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniConventionArgs {
    /// Requested addresses, `<ip>[/<prefix>]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The config's `args` dictionary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Args {
    /// The `cni` area defined by the conventions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniConventionArgs>,
    /// Other areas.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A port mapping capability entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// Port in the container.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp`, `udp`, `sctp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Host address to bind.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// `runtimeConfig`: the capability arguments the runtime inserted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Requested addresses (`ips` capability), `<ip>[/<prefix>]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Requested MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Port mappings.
    #[serde(
        rename = "portMappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
    /// IP ranges (`ipRanges` capability), in host-local's `ranges` shape (kept raw).
    #[serde(rename = "ipRanges", default, skip_serializing_if = "Option::is_none")]
    pub ip_ranges: Option<Value>,
    /// Other capabilities.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One still-valid attachment in a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// `CNI_CONTAINERID` of the ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of the ADD.
    pub ifname: String,
}

/// One plugin's request configuration. Keys this crate does not know (plugin-specific ones)
/// are kept in `extra` and written back out unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConf {
    /// The protocol version selected by the runtime.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Network name.
    #[serde(default)]
    pub name: String,
    /// Plugin type (binary name).
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// The IPAM section, raw (its keys belong to the IPAM plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// Runtime arguments (conventions: `args.cni.ips`, `args.cni.labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Args>,
    /// Capability arguments.
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<RuntimeConfig>,
    /// The previous plugin's result, raw (see [`crate::CniResult::parse_prev`]).
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// GC only: the attachments that are still valid.
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// Every other key, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConf {
    /// Decode a request configuration. Malformed JSON or a wrong type gives code 6; a missing or
    /// invalid `name` gives code 7. The version is not checked here (see [`NetConf::version`]).
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("error decoding network config: {e}")))?;
        crate::env::validate_network_name(&conf.name)?;
        Ok(conf)
    }

    /// The negotiated version (code 1 when `cniVersion` is not among `supported`).
    pub fn version(&self, supported: &[Version]) -> Result<Version, CniError> {
        negotiate(&self.cni_version, supported)
    }

    /// `args.cni.ips`, when present.
    pub fn args_ips(&self) -> &[String] {
        self.args
            .as_ref()
            .and_then(|a| a.cni.as_ref())
            .map(|c| c.ips.as_slice())
            .unwrap_or(&[])
    }

    /// `args.cni.labels`, when present.
    pub fn labels(&self) -> &[Label] {
        self.args
            .as_ref()
            .and_then(|a| a.cni.as_ref())
            .map(|c| c.labels.as_slice())
            .unwrap_or(&[])
    }

    /// `runtimeConfig.ips`, when present.
    pub fn runtime_ips(&self) -> &[String] {
        self.runtime_config
            .as_ref()
            .map(|r| r.ips.as_slice())
            .unwrap_or(&[])
    }

    /// The IPAM section's `type`, when present.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }
}

/// Parse a requested address in the conventions' `<ip>[/<prefix>]` form (the prefix, if any,
/// is validated and dropped). Code 7 naming the value on failure.
pub fn parse_requested_ip(s: &str) -> Result<IpAddr, CniError> {
    let bad = || CniError::invalid_config(format!("cannot understand requested ip {s:?}"));
    match s.split_once('/') {
        None => s.parse().map_err(|_| bad()),
        Some((ip, prefix)) => {
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let p: u8 = prefix.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if p > max {
                return Err(bad());
            }
            Ok(ip)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const FULL: &str = r#"{
        "cniVersion": "1.1.0",
        "name": "dbnet",
        "type": "bridge",
        "bridge": "cni0",
        "keyA": ["some more", "plugin specific", "configuration"],
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/16", "gateway": "10.1.0.1"},
        "dns": {"nameservers": ["10.1.0.1"]},
        "args": {"cni": {"ips": ["10.1.0.9/16"], "labels": [{"key": "app", "value": "web"}], "x": 1}, "other": true},
        "runtimeConfig": {"ips": ["2001:db8::5"], "mac": "c2:11:22:33:44:55",
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1}},
        "prevResult": {"ips": []}
    }"#;

    #[test]
    fn parses_known_keys_and_keeps_unknown_ones() {
        let c = NetConf::parse(FULL.as_bytes()).unwrap();
        assert_eq!(c.version(&crate::ALL_VERSIONS), Ok(Version::V1_1_0));
        assert_eq!(c.name, "dbnet");
        assert_eq!(c.plugin_type, "bridge");
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["10.1.0.1"]);
        assert_eq!(c.args_ips(), ["10.1.0.9/16"]);
        assert_eq!(c.labels()[0].value, "web");
        assert_eq!(c.runtime_ips(), ["2001:db8::5"]);
        let rc = c.runtime_config.as_ref().unwrap();
        assert_eq!(rc.port_mappings[0].host_port, 8080);
        assert!(rc.extra.contains_key("bandwidth"));
        assert_eq!(c.extra["bridge"], "cni0");
        assert!(c.prev_result.is_some());
        // Round trip keeps every key.
        let back = serde_json::to_value(&c).unwrap();
        let orig: Value = serde_json::from_str(FULL).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn decode_errors_are_code_6_and_name_errors_code_7() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"name": 5}"#,
            r#"{"name":"n","dns":{"nameservers":"x"}}"#,
        ] {
            assert_eq!(
                NetConf::parse(bad.as_bytes()).unwrap_err().code,
                ErrorCode::DecodingFailure,
                "{bad}"
            );
        }
        for bad in [r#"{"cniVersion":"1.0.0"}"#, r#"{"name":"a b"}"#] {
            assert_eq!(
                NetConf::parse(bad.as_bytes()).unwrap_err().code,
                ErrorCode::InvalidNetworkConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn gc_attachments() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.valid_attachments.unwrap(),
            vec![GcAttachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }]
        );
    }

    #[test]
    fn requested_ip_forms() {
        assert_eq!(
            parse_requested_ip("10.0.0.5").unwrap(),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_requested_ip("10.0.0.5/24").unwrap(),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert!(parse_requested_ip("2001:db8::1/64").unwrap().is_ipv6());
        for bad in ["", "10.0.0", "10.0.0.5/33", "10.0.0.5/x", "zz::1"] {
            assert_eq!(
                parse_requested_ip(bad).unwrap_err().code,
                ErrorCode::InvalidNetworkConfig
            );
        }
    }
}
