//! A pod's container ports (pure): what named-port policy rules (`ports: [{port: http}]`)
//! resolve against.
//!
//! # Convention
//! The runtime passes the pod's container ports at ADD in the Kubernetes `ContainerPort`
//! shape, `{"name": "http", "containerPort": 8080, "protocol": "TCP"}` (`protocol` defaults to
//! `TCP`; `name` is optional; other keys such as `hostPort` are ignored), as either
//! - `args.cni.ports`: `{"args": {"cni": {"ports": [...]}}}`, or
//! - `runtimeConfig.containerPorts`, for a plugin that declares the capability
//!   `"capabilities": {"containerPorts": true}`.
//!
//! Both lists are joined. An operator can replace them for an existing pod with
//! `cnetctl ports`. Validation follows Kubernetes: `containerPort` in 1..=65535, `protocol`
//! one of `TCP`, `UDP`, `SCTP`, `name` an IANA service name (1–15 characters of `a-z`, `0-9`
//! and `-`, at least one letter, no leading, trailing or doubled `-`), names unique. A wrong
//! JSON type is CNI error 6 and a bad value error 7, each naming the field; the check runs
//! before ADD changes anything.
//!
//! ```
//! use cnet_cni::cnet::ports::{ContainerPort, parse_ports};
//!
//! let v = serde_json::json!([{"name": "http", "containerPort": 8080}]);
//! let ports = parse_ports(&v, "args.cni.ports")?;
//! assert_eq!(ports, vec![ContainerPort::new(Some("http"), 8080, "TCP")]);
//! # Ok::<(), cnet_cni::CniError>(())
//! ```

use crate::error::CniError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The `runtimeConfig` capability that carries container ports.
pub const CAPABILITY: &str = "containerPorts";

/// The protocols a container port may have.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// One container port (Kubernetes `ContainerPort`: name, port, protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name (an IANA service name), when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    pub container_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

impl ContainerPort {
    /// A port (no validation; see [`parse_ports`]).
    pub fn new(name: Option<&str>, container_port: u16, protocol: &str) -> ContainerPort {
        ContainerPort {
            name: name.map(str::to_string),
            container_port,
            protocol: protocol.to_string(),
        }
    }
}

impl std::fmt::Display for ContainerPort {
    /// `name=port/PROTO` or `port/PROTO` (the form `cnetctl ports` accepts).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = &self.name {
            write!(f, "{n}=")?;
        }
        write!(f, "{}/{}", self.container_port, self.protocol)
    }
}

/// Whether `s` is an IANA service name as Kubernetes validates a port name.
pub fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Decode and validate a list of container ports found at `field` (for messages). Wrong JSON
/// types give code 6, bad values code 7; both name the element and key. `null` is no ports.
pub fn parse_ports(v: &Value, field: &str) -> Result<Vec<ContainerPort>, CniError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => {
            return Err(CniError::decode(format!(
                "{field}: expected a list of {{name, containerPort, protocol}}"
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(m) = item else {
            return Err(CniError::decode(format!(
                "{at}: expected an object {{name, containerPort, protocol}}"
            )));
        };
        let port = match m.get("containerPort") {
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                CniError::decode(format!("{at}.containerPort: expected an integer"))
            })?,
            Some(_) => {
                return Err(CniError::decode(format!(
                    "{at}.containerPort: expected an integer"
                )));
            }
            None => {
                return Err(CniError::invalid_config(format!(
                    "{at}: containerPort is required"
                )));
            }
        };
        let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
            CniError::invalid_config(format!("{at}.containerPort: {port} is outside 1..=65535"))
        })?;
        let text = |key: &str| -> Result<Option<&str>, CniError> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(CniError::decode(format!("{at}.{key}: expected a string"))),
            }
        };
        let protocol = text("protocol")?.unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            return Err(CniError::invalid_config(format!(
                "{at}.protocol: {protocol:?} (expected TCP, UDP or SCTP)"
            )));
        }
        let name = text("name")?.filter(|n| !n.is_empty());
        if let Some(n) = name
            && !is_port_name(n)
        {
            return Err(CniError::invalid_config(format!(
                "{at}.name: {n:?} is not a port name (1-15 of a-z, 0-9, '-'; a letter; no leading, trailing or double '-')"
            )));
        }
        out.push(ContainerPort::new(name, port, protocol));
    }
    check_unique(&out, field)?;
    Ok(out)
}

/// Names must be unique (a named-port rule must resolve to one port).
pub fn check_unique(ports: &[ContainerPort], field: &str) -> Result<(), CniError> {
    let mut seen = BTreeSet::new();
    for n in ports.iter().filter_map(|p| p.name.as_deref()) {
        if !seen.insert(n) {
            return Err(CniError::invalid_config(format!(
                "{field}: port name {n:?} is used twice"
            )));
        }
    }
    Ok(())
}

/// The named ports as the policy engine keeps them: name → (port, protocol).
pub fn named_ports(ports: &[ContainerPort]) -> BTreeMap<String, (u16, String)> {
    ports
        .iter()
        .filter_map(|p| {
            p.name
                .as_ref()
                .map(|n| (n.clone(), (p.container_port, p.protocol.clone())))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    #[test]
    fn kubernetes_shape_with_defaults() {
        let v = json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP", "hostPort": 80},
            {"containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53}
        ]);
        let p = parse_ports(&v, "f").unwrap();
        assert_eq!(
            p,
            vec![
                ContainerPort::new(Some("http"), 8080, "TCP"),
                ContainerPort::new(None, 53, "UDP"),
                ContainerPort::new(Some("dns-tcp"), 53, "TCP"),
            ]
        );
        assert_eq!(
            named_ports(&p),
            BTreeMap::from([
                ("dns-tcp".to_string(), (53, "TCP".to_string())),
                ("http".to_string(), (8080, "TCP".to_string())),
            ])
        );
        assert_eq!(p[0].to_string(), "http=8080/TCP");
        assert_eq!(p[1].to_string(), "53/UDP");
        assert!(parse_ports(&Value::Null, "f").unwrap().is_empty());
    }

    #[test]
    fn bad_types_are_6_bad_values_7_and_name_the_field() {
        let cases = [
            (json!({"name": "x"}), ErrorCode::DecodingFailure, "f:"),
            (json!(["http"]), ErrorCode::DecodingFailure, "f[0]"),
            (
                json!([{"containerPort": "80"}]),
                ErrorCode::DecodingFailure,
                "f[0].containerPort",
            ),
            (
                json!([{"containerPort": 8.5}]),
                ErrorCode::DecodingFailure,
                "f[0].containerPort",
            ),
            (
                json!([{"containerPort": 80, "name": 1}]),
                ErrorCode::DecodingFailure,
                "f[0].name",
            ),
            (
                json!([{"containerPort": 80, "protocol": 6}]),
                ErrorCode::DecodingFailure,
                "f[0].protocol",
            ),
            (
                json!([{"name": "a"}]),
                ErrorCode::InvalidNetworkConfig,
                "containerPort is required",
            ),
            (
                json!([{"containerPort": 0}]),
                ErrorCode::InvalidNetworkConfig,
                "f[0].containerPort",
            ),
            (
                json!([{"containerPort": 1, "name": "a"}, {"containerPort": 65536}]),
                ErrorCode::InvalidNetworkConfig,
                "f[1].containerPort",
            ),
            (
                json!([{"containerPort": 80, "protocol": "tcp"}]),
                ErrorCode::InvalidNetworkConfig,
                "f[0].protocol",
            ),
            (
                json!([{"containerPort": 80, "name": "HTTP"}]),
                ErrorCode::InvalidNetworkConfig,
                "f[0].name",
            ),
            (
                json!([{"containerPort": 80, "name": "a"}, {"containerPort": 81, "name": "a"}]),
                ErrorCode::InvalidNetworkConfig,
                "used twice",
            ),
        ];
        for (v, code, needle) in cases {
            let e = parse_ports(&v, "f").unwrap_err();
            assert_eq!(e.code, code, "{v}: {e}");
            assert!(e.msg.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn port_names() {
        for ok in [
            "http",
            "a",
            "dns-tcp",
            "serve-80-tcp",
            "x1",
            "abcdefghijklmno",
        ] {
            assert!(is_port_name(ok), "{ok}");
        }
        for bad in [
            "",
            "80",
            "-a",
            "a-",
            "a--b",
            "Http",
            "a_b",
            "abcdefghijklmnop",
            "a.b",
        ] {
            assert!(!is_port_name(bad), "{bad}");
        }
    }
}
