//! The `cnet` plugin's network configuration (pure): mode, MTU, IPAM choice, DNS and policy
//! settings, decoded from the request configuration with the spec's error codes.

use crate::config::{Dns, NetConf};
use crate::error::CniError;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where node state lives when `policy.stateDir` is not set: `<root>/<network name>`.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/cni/cnet";
/// Bridge name in bridge mode when `bridge` is not set.
pub const DEFAULT_BRIDGE: &str = "cnet0";
/// Default bound on the wait for the node state lock (then CNI error 11).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// The nftables table of a network whose config names none (`policy.table`). Networks that
/// share a node netns and both enforce policy need distinct tables.
pub const DEFAULT_TABLE: &str = "cnet";
/// The IPAM type served in-process (no exec).
pub const IN_PROCESS_IPAM: &str = "cnet-ipam";

/// How pods are attached (cnet-route's two modes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Routed, one host route per pod address, link-local gateways (the default).
    Transparent,
    /// Host ends are ports of a Linux bridge that holds the gateway addresses.
    Bridge {
        /// Bridge name.
        bridge: String,
    },
}

impl Mode {
    /// `transparent` or `bridge`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Transparent => "transparent",
            Mode::Bridge { .. } => "bridge",
        }
    }
}

/// Where an endpoint's labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// From the CNI call (`args.cni.labels`, `runtimeConfig.labels`) plus the implicit labels.
    /// A pod with no labels is fully known (it has its implicit labels) and is not isolated.
    Cni,
    /// From an outside source that may arrive after ADD (an operator's `cnetctl label`, a
    /// controller). A pod whose call carried no labels is isolated (all traffic to and from it
    /// dropped) until labels are supplied.
    External,
}

/// The `policy` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConf {
    /// This network's node state directory (`policy.stateDir` + `/` + network name).
    pub state_dir: PathBuf,
    /// Where labels come from (`policy.labels`: `"cni"` default, or `"external"`).
    pub labels: LabelSource,
    /// Bound on the wait for the node state lock (`policy.lockTimeoutMs`).
    pub lock_timeout: Duration,
    /// Whether policy is programmed at all (`policy.enabled`, default true).
    pub enabled: bool,
    /// The `inet` table holding this network's policy (`policy.table`, default `cnet`;
    /// letters, digits and `_`, at most 32 characters).
    pub table: String,
    /// This node's name (`policy.nodeName`; default: the machine's host name, as Calico
    /// names nodes). A Calico `HostEndpoint` applies here only when its `spec.node` is this
    /// name; empty when the host name is unknown (every host endpoint then applies).
    pub node_name: String,
}

/// Whether `n` is a valid node name (a DNS subdomain, as Kubernetes requires).
fn is_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The machine's host name, lowercased, when it is a valid node name; empty otherwise.
/// From uname(2): a `/proc/sys` path walk costs far more on a node with many namespaces.
fn machine_node_name() -> String {
    // SAFETY: uname(2) fills a zeroed struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8(bytes)
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| is_node_name(h))
        .unwrap_or_default()
}

/// Which IPAM serves the network.
#[derive(Debug, Clone, PartialEq)]
pub enum IpamChoice {
    /// `cnet-ipam`, in this process (its disk store, no exec).
    InProcess(Box<cnet_ipam::IpamConfig>),
    /// Any other type: executed from `CNI_PATH`, every command forwarded.
    Delegate(String),
}

/// The decoded `cnet` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CnetConf {
    /// Network name.
    pub network: String,
    /// Attachment mode.
    pub mode: Mode,
    /// MTU of both veth ends (`None`: the node uplink's).
    pub mtu: Option<u32>,
    /// IPAM.
    pub ipam: IpamChoice,
    /// DNS to report (overrides what IPAM returned when set).
    pub dns: Option<Dns>,
    /// Policy and node-state settings.
    pub policy: PolicyConf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    lock_timeout_ms: Option<u64>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct RawCnet {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    policy: Option<RawPolicy>,
}

impl CnetConf {
    /// Decode from the request config and its raw bytes. Wrong JSON types give code 6 (naming
    /// the key); bad values (unknown mode, MTU out of range, missing `ipam`) give code 7.
    pub fn from_request(conf: &NetConf, stdin: &[u8]) -> Result<CnetConf, CniError> {
        let extra = Value::Object(conf.extra.clone());
        let raw: RawCnet = serde_json::from_value(extra)
            .map_err(|e| CniError::decode(format!("cnet config: {e}")))?;
        let mode = match raw.mode.as_deref() {
            None | Some("transparent") => {
                if raw.bridge.is_some() {
                    return Err(CniError::invalid_config(
                        "cnet config: \"bridge\" is only valid with \"mode\": \"bridge\"",
                    ));
                }
                Mode::Transparent
            }
            Some("bridge") => {
                let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
                cnet_route::validate_ifname(&bridge).map_err(|r| {
                    CniError::invalid_config(format!("cnet config: bridge {bridge:?}: {r}"))
                })?;
                Mode::Bridge { bridge }
            }
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "cnet config: unknown mode {other:?} (expected \"transparent\" or \"bridge\")"
                )));
            }
        };
        if let Some(m) = raw.mtu
            && !(68..=65535).contains(&m)
        {
            return Err(CniError::invalid_config(format!(
                "cnet config: mtu {m} is outside 68..=65535"
            )));
        }
        let ipam = Self::ipam(conf, stdin)?;
        let policy = raw.policy.unwrap_or(RawPolicy {
            state_dir: None,
            labels: None,
            lock_timeout_ms: None,
            enabled: None,
            table: None,
            node_name: None,
        });
        let table = policy.table.unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let table_ok = !table.is_empty()
            && table.len() <= 32
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !table_ok {
            return Err(CniError::invalid_config(format!(
                "cnet config: policy.table {table:?}: letters, digits and _, starting with a letter, at most 32"
            )));
        }
        let node_name = match policy.node_name {
            Some(n) if is_node_name(&n) => n,
            Some(n) => {
                return Err(CniError::invalid_config(format!(
                    "cnet config: policy.nodeName {n:?}: a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
                )));
            }
            None => machine_node_name(),
        };
        let labels = match policy.labels.as_deref() {
            None | Some("cni") => LabelSource::Cni,
            Some("external") => LabelSource::External,
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "cnet config: policy.labels {other:?} (expected \"cni\" or \"external\")"
                )));
            }
        };
        let root = policy
            .state_dir
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_STATE_ROOT.to_string());
        Ok(CnetConf {
            network: conf.name.clone(),
            mode,
            mtu: raw.mtu,
            ipam,
            dns: conf.dns.clone().filter(|d| !d.is_empty()),
            policy: PolicyConf {
                state_dir: PathBuf::from(root).join(&conf.name),
                labels,
                lock_timeout: policy
                    .lock_timeout_ms
                    .map_or(DEFAULT_LOCK_TIMEOUT, Duration::from_millis),
                enabled: policy.enabled.unwrap_or(true),
                table,
                node_name,
            },
        })
    }

    fn ipam(conf: &NetConf, stdin: &[u8]) -> Result<IpamChoice, CniError> {
        let Some(section) = &conf.ipam else {
            return Err(CniError::invalid_config(
                "cnet config: missing \"ipam\" section",
            ));
        };
        let Some(t) = section.get("type") else {
            return Err(CniError::invalid_config(
                "cnet config: ipam: missing \"type\"",
            ));
        };
        let Some(t) = t.as_str() else {
            return Err(CniError::decode(
                "cnet config: ipam.type: expected a string",
            ));
        };
        if t == IN_PROCESS_IPAM {
            let cfg = cnet_ipam::IpamConfig::from_net_conf_bytes(stdin)
                .map_err(|e| crate::ipam::ipam_error(&e))?;
            Ok(IpamChoice::InProcess(Box::new(cfg)))
        } else {
            crate::delegate::find_plugin_name_ok(t)?;
            Ok(IpamChoice::Delegate(t.to_string()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn parse(v: Value) -> Result<CnetConf, CniError> {
        let bytes = v.to_string().into_bytes();
        let c = NetConf::parse(&bytes)?;
        CnetConf::from_request(&c, &bytes)
    }

    fn base() -> Value {
        json!({"cniVersion": "1.1.0", "name": "net1", "type": "cnet",
               "ipam": {"type": "cnet-ipam", "subnet": "10.1.0.0/24", "dataDir": "/tmp/x"}})
    }

    #[test]
    fn defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.mode, Mode::Transparent);
        assert_eq!(c.mtu, None);
        assert!(matches!(c.ipam, IpamChoice::InProcess(_)));
        assert_eq!(
            c.policy.state_dir,
            PathBuf::from(DEFAULT_STATE_ROOT).join("net1")
        );
        assert_eq!(c.policy.labels, LabelSource::Cni);
        assert!(c.policy.enabled);
    }

    #[test]
    fn bridge_mode_and_policy() {
        let mut v = base();
        v["mode"] = json!("bridge");
        v["mtu"] = json!(1400);
        v["policy"] = json!({"stateDir": "/run/s", "labels": "external", "lockTimeoutMs": 50});
        v["ipam"] = json!({"type": "host-local", "subnet": "10.1.0.0/24"});
        let c = parse(v).unwrap();
        assert_eq!(
            c.mode,
            Mode::Bridge {
                bridge: DEFAULT_BRIDGE.into()
            }
        );
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.ipam, IpamChoice::Delegate("host-local".into()));
        assert_eq!(c.policy.state_dir, PathBuf::from("/run/s/net1"));
        assert_eq!(c.policy.labels, LabelSource::External);
        assert_eq!(c.policy.lock_timeout, Duration::from_millis(50));
    }

    #[test]
    fn node_name_is_configured_or_the_host_name() {
        let mut v = base();
        v["policy"] = json!({"nodeName": "worker-1.example"});
        assert_eq!(parse(v).unwrap().policy.node_name, "worker-1.example");
        let c = parse(base()).unwrap();
        assert!(c.policy.node_name.is_empty() || is_node_name(&c.policy.node_name));
        assert!(!is_node_name("-a") && !is_node_name("a..b") && !is_node_name(""));
    }

    #[test]
    fn bad_values_are_7_and_bad_types_6() {
        let cases: Vec<(Value, ErrorCode)> = vec![
            (json!({"mode": "vxlan"}), ErrorCode::InvalidNetworkConfig),
            (json!({"mode": 3}), ErrorCode::DecodingFailure),
            (json!({"mtu": "big"}), ErrorCode::DecodingFailure),
            (json!({"mtu": 10}), ErrorCode::InvalidNetworkConfig),
            (
                json!({"mode": "bridge", "bridge": "a/b"}),
                ErrorCode::InvalidNetworkConfig,
            ),
            (json!({"bridge": "br0"}), ErrorCode::InvalidNetworkConfig),
            (
                json!({"policy": {"labels": "x"}}),
                ErrorCode::InvalidNetworkConfig,
            ),
            (json!({"policy": 5}), ErrorCode::DecodingFailure),
            (
                json!({"policy": {"table": "a-b"}}),
                ErrorCode::InvalidNetworkConfig,
            ),
            (
                json!({"policy": {"nodeName": "Node_1"}}),
                ErrorCode::InvalidNetworkConfig,
            ),
            (
                json!({"policy": {"nodeName": 7}}),
                ErrorCode::DecodingFailure,
            ),
            (json!({"ipam": {}}), ErrorCode::InvalidNetworkConfig),
            (json!({"ipam": {"type": 1}}), ErrorCode::DecodingFailure),
            (
                json!({"ipam": {"type": "../evil"}}),
                ErrorCode::InvalidNetworkConfig,
            ),
            (
                json!({"ipam": {"type": "cnet-ipam"}}),
                ErrorCode::InvalidNetworkConfig,
            ),
        ];
        for (patch, code) in cases {
            let mut v = base();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            assert_eq!(parse(v.clone()).unwrap_err().code, code, "{v}");
        }
        let mut v = base();
        v.as_object_mut().unwrap().remove("ipam");
        assert_eq!(parse(v).unwrap_err().code, ErrorCode::InvalidNetworkConfig);
    }
}
