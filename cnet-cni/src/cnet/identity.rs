//! Endpoint identity (pure): namespace, name and labels of a pod from `CNI_ARGS`, the
//! `args.cni.labels` convention and `runtimeConfig.labels`, plus the implicit labels every
//! endpoint carries; its container ports from `args.cni.ports` and
//! `runtimeConfig.containerPorts` (see [`crate::cnet::ports`]).
//!
//! # Implicit labels
//! Every endpoint gets, whatever the runtime sends (they override supplied labels of the
//! same key, as Calico's `projectcalico.org/...` labels do):
//!
//! | label | value |
//! |---|---|
//! | [`LABEL_NAME`] `cnet.io/name` | the pod name (`K8S_POD_NAME`, else the container id) |
//! | [`LABEL_NAMESPACE`] `cnet.io/namespace` | the pod namespace (`K8S_POD_NAMESPACE`, else `default`) |
//! | [`LABEL_NETWORK`] `cnet.io/network` | the CNI network name |
//!
//! So a policy can select a Podman container, which arrives with only its name, by
//! `matchLabels: {cnet.io/name: web}`.

use crate::cnet::conf::LabelSource;
use crate::cnet::ports::{self, ContainerPort};
use crate::config::NetConf;
use crate::env::Env;
use crate::error::CniError;
use serde_json::Value;
use std::collections::BTreeMap;

/// Implicit label: pod name.
pub const LABEL_NAME: &str = "cnet.io/name";
/// Implicit label: pod namespace.
pub const LABEL_NAMESPACE: &str = "cnet.io/namespace";
/// Implicit label: network name.
pub const LABEL_NETWORK: &str = "cnet.io/network";
/// Namespace of a pod whose `CNI_ARGS` carry no `K8S_POD_NAMESPACE`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The `CNI_ARGS` keys the plugin understands (others need `IgnoreUnknown=1`).
pub const KNOWN_CNI_ARGS: [&str; 5] = [
    "IP",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// Who an endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels, implicit ones included.
    pub labels: BTreeMap<String, String>,
    /// False when labels come from an outside source and the call supplied none.
    pub labels_known: bool,
    /// Container ports (`args.cni.ports` then `runtimeConfig.containerPorts`), validated.
    pub ports: Vec<ContainerPort>,
}

/// The implicit labels of an endpoint.
pub fn implicit_labels(namespace: &str, name: &str, network: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), name.to_string()),
        (LABEL_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_NETWORK.to_string(), network.to_string()),
    ])
}

/// `runtimeConfig.labels`: a map `{"k": "v"}` or a list `[{"key","value"}]`. Code 6 otherwise.
fn runtime_labels(conf: &NetConf) -> Result<Vec<(String, String)>, CniError> {
    let Some(v) = conf
        .runtime_config
        .as_ref()
        .and_then(|r| r.extra.get("labels"))
    else {
        return Ok(Vec::new());
    };
    let bad = || {
        CniError::decode(
            "runtimeConfig.labels: expected an object of strings or a list of {key, value}",
        )
    };
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_string())))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let k = i.get("key").and_then(Value::as_str).ok_or_else(bad)?;
                let v = i.get("value").and_then(Value::as_str).ok_or_else(bad)?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad()),
    }
}

/// The container ports of a request: `args.cni.ports` and `runtimeConfig.containerPorts`,
/// joined and validated (codes 6 and 7, see [`crate::cnet::ports`]).
pub fn request_ports(conf: &NetConf) -> Result<Vec<ContainerPort>, CniError> {
    let mut out = Vec::new();
    if let Some(v) = conf
        .args
        .as_ref()
        .and_then(|a| a.cni.as_ref())
        .and_then(|c| c.extra.get("ports"))
    {
        out.extend(ports::parse_ports(v, "args.cni.ports")?);
    }
    if let Some(v) = conf
        .runtime_config
        .as_ref()
        .and_then(|r| r.extra.get(ports::CAPABILITY))
    {
        out.extend(ports::parse_ports(v, "runtimeConfig.containerPorts")?);
    }
    ports::check_unique(&out, "container ports")?;
    Ok(out)
}

impl Identity {
    /// The identity of the attachment in a request.
    pub fn from_request(
        env: &Env,
        conf: &NetConf,
        source: LabelSource,
    ) -> Result<Identity, CniError> {
        let namespace = env
            .args
            .get("K8S_POD_NAMESPACE")
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let name = env
            .args
            .get("K8S_POD_NAME")
            .filter(|s| !s.is_empty())
            .unwrap_or(&env.container_id)
            .to_string();
        let mut supplied: Vec<(String, String)> = conf
            .labels()
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect();
        supplied.extend(runtime_labels(conf)?);
        let labels_known = source == LabelSource::Cni || !supplied.is_empty();
        let mut labels: BTreeMap<String, String> = supplied.into_iter().collect();
        labels.extend(implicit_labels(&namespace, &name, &conf.name));
        Ok(Identity {
            namespace,
            name,
            labels,
            labels_known,
            ports: request_ports(conf)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::Env;

    fn env(args: &str) -> Env {
        Env::from_lookup(|k| match k {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("c1".into()),
            "CNI_NETNS" => Some("/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some(args.into()),
            _ => None,
        })
        .unwrap()
    }

    fn conf(extra: &str) -> NetConf {
        NetConf::parse(format!(r#"{{"cniVersion":"1.1.0","name":"n1"{extra}}}"#).as_bytes())
            .unwrap()
    }

    #[test]
    fn kubernetes_args_and_labels() {
        let c = conf(
            r#","args":{"cni":{"labels":[{"key":"app","value":"web"},{"key":"cnet.io/name","value":"spoof"}]}},
               "runtimeConfig":{"labels":{"tier":"front"}}"#,
        );
        let id = Identity::from_request(
            &env("IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0"),
            &c,
            LabelSource::External,
        )
        .unwrap();
        assert_eq!((id.namespace.as_str(), id.name.as_str()), ("prod", "web-0"));
        assert_eq!(id.labels["app"], "web");
        assert_eq!(id.labels["tier"], "front");
        assert_eq!(id.labels[LABEL_NAME], "web-0", "implicit labels win");
        assert_eq!(id.labels[LABEL_NAMESPACE], "prod");
        assert_eq!(id.labels[LABEL_NETWORK], "n1");
        assert!(id.labels_known);
    }

    #[test]
    fn podman_style_call_and_label_sources() {
        let c = conf("");
        let id = Identity::from_request(
            &env("IgnoreUnknown=1;K8S_POD_NAME=box"),
            &c,
            LabelSource::Cni,
        )
        .unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.name.as_str()),
            ("default", "box")
        );
        assert!(id.labels_known);
        let id = Identity::from_request(&env(""), &c, LabelSource::External).unwrap();
        assert_eq!(id.name, "c1");
        assert!(
            !id.labels_known,
            "external source, nothing supplied: isolate"
        );
    }

    #[test]
    fn ports_from_args_and_runtime_config() {
        let c = conf(
            r#","args":{"cni":{"ports":[{"name":"http","containerPort":80}]}},
               "runtimeConfig":{"containerPorts":[{"name":"dns","containerPort":53,"protocol":"UDP"}]}"#,
        );
        let id = Identity::from_request(&env(""), &c, LabelSource::Cni).unwrap();
        assert_eq!(
            id.ports,
            vec![
                ContainerPort::new(Some("http"), 80, "TCP"),
                ContainerPort::new(Some("dns"), 53, "UDP")
            ]
        );
        let c = conf(
            r#","args":{"cni":{"ports":[{"name":"a","containerPort":80}]}},
               "runtimeConfig":{"containerPorts":[{"name":"a","containerPort":81}]}"#,
        );
        let e = Identity::from_request(&env(""), &c, LabelSource::Cni).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidNetworkConfig);
        let c = conf(r#","args":{"cni":{"ports":{"a":1}}}"#);
        let e = Identity::from_request(&env(""), &c, LabelSource::Cni).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::DecodingFailure);
        assert!(e.msg.contains("args.cni.ports"), "{e}");
    }

    #[test]
    fn runtime_labels_list_form_and_bad_shape() {
        let c = conf(r#","runtimeConfig":{"labels":[{"key":"a","value":"b"}]}"#);
        let id = Identity::from_request(&env(""), &c, LabelSource::Cni).unwrap();
        assert_eq!(id.labels["a"], "b");
        let c = conf(r#","runtimeConfig":{"labels":5}"#);
        assert_eq!(
            Identity::from_request(&env(""), &c, LabelSource::Cni)
                .unwrap_err()
                .code,
            crate::ErrorCode::DecodingFailure
        );
    }
}
