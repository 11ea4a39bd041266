//! Conformance scenario files (format: `shared/conformance/README.md`).
//!
//! Reading is tolerant: unknown fields are ignored, and a record that does not fit the format
//! becomes a [`RecordInput::Malformed`] entry (reported as skipped), never a crash.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Labels.
pub type Labels = BTreeMap<String, String>;

/// One scenario record.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Record id (only printed, never interpreted).
    #[serde(default)]
    pub id: String,
    /// Human name (only printed).
    #[serde(default)]
    pub name: String,
    /// `cluster-probe-matrix`, `cluster-probe-list` or `packet-verdict`.
    #[serde(default)]
    pub kind: String,
    /// Namespaces and their labels.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Labels>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<PodInput>,
    /// Nodes and their labels; absent = one node.
    #[serde(default)]
    pub nodes: Option<BTreeMap<String, Labels>>,
    /// Non-pod hosts that take part in probes.
    #[serde(default, rename = "externalIPs")]
    pub external_ips: Vec<String>,
    /// Kubernetes API objects (JSON).
    #[serde(default)]
    pub policies: Vec<Value>,
    /// Probes, kept raw so that one malformed probe is skipped alone (see [`Record::probe_inputs`]).
    #[serde(default)]
    pub probes: Vec<Value>,
    /// The record carries values the API would reject.
    #[serde(default)]
    pub api_invalid: bool,
    /// Free-form notes.
    #[serde(default)]
    pub notes: Value,
}

impl Record {
    /// The probes, each parsed on its own: a malformed probe is an `Err` with the reason.
    pub fn probe_inputs(&self) -> Vec<Result<ProbeInput, String>> {
        self.probes
            .iter()
            .map(|v| {
                serde_json::from_value::<ProbeInput>(v.clone())
                    .map_err(|e| format!("probe {v}: {e}"))
            })
            .collect()
    }
}

/// A pod of a record.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodInput {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Ports the pod listens on (none = every probed port).
    #[serde(default)]
    pub container_ports: Vec<ContainerPortInput>,
    /// A fixed address.
    #[serde(default)]
    pub ip: Option<String>,
    /// Lives in its node's netns with the node's address.
    #[serde(default)]
    pub host_network: bool,
    /// Which node.
    #[serde(default)]
    pub node: Option<String>,
    /// The pod's service account (`spec.serviceAccountName`; Kubernetes uses `default`
    /// when unset). Its labels come from `kind: ServiceAccount` objects in `policies`.
    #[serde(default)]
    pub service_account_name: Option<String>,
}

/// A container port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPortInput {
    /// Port name (for named-port rules).
    #[serde(default)]
    pub name: Option<String>,
    /// Port number.
    pub container_port: i64,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A probe.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeInput {
    /// `ns/name` or `ip:A.B.C.D`.
    pub from: String,
    /// `ns/name` or `ip:A.B.C.D`.
    pub to: String,
    /// Destination port.
    pub port: i64,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Whether the connection must succeed.
    pub expect: bool,
    /// Source address override.
    #[serde(default, rename = "srcIP")]
    pub src_ip: Option<String>,
    /// Destination address override.
    #[serde(default, rename = "dstIP")]
    pub dst_ip: Option<String>,
    /// Source port.
    #[serde(default)]
    pub src_port: Option<i64>,
}

/// One entry of a scenario file.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordInput {
    /// A record in the expected format.
    Ok(Box<Record>),
    /// A record that could not be read.
    Malformed {
        /// Its id, if it had one.
        id: String,
        /// How many probes it seemed to have (counted as skipped).
        probes: usize,
        /// Why it could not be read.
        reason: String,
    },
}

/// Errors reading a scenario file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not JSON or not a list of records.
    #[error("{path}: {message}")]
    Format {
        /// File path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Parse a scenario file's text: a JSON array of records, an object with a `records`,
/// `scenarios` or `items` array, or a single record.
pub fn parse_records(text: &str, path: &str) -> Result<Vec<RecordInput>, ScenarioError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ScenarioError::Format {
        path: path.to_string(),
        message: format!("not JSON: {e}"),
    })?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut m) => {
            match ["records", "scenarios", "items"]
                .iter()
                .find_map(|k| match m.remove(*k) {
                    Some(Value::Array(a)) => Some(a),
                    _ => None,
                }) {
                Some(a) => a,
                None => vec![Value::Object(m)],
            }
        }
        _ => {
            return Err(ScenarioError::Format {
                path: path.to_string(),
                message: "expected a JSON array of records".into(),
            });
        }
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| record_from_value(v, i))
        .collect())
}

fn record_from_value(v: Value, index: usize) -> RecordInput {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("record#{index}"));
    let probes = v
        .get("probes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    match serde_json::from_value::<Record>(v) {
        Ok(mut r) => {
            if r.id.is_empty() {
                r.id = id;
            }
            RecordInput::Ok(Box::new(r))
        }
        Err(e) => RecordInput::Malformed {
            id,
            probes,
            reason: format!("record not in the expected format: {e}"),
        },
    }
}

/// Read and parse a scenario file.
pub fn read_records(path: &std::path::Path) -> Result<Vec<RecordInput>, ScenarioError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: p.clone(),
        source,
    })?;
    parse_records(&text, &p)
}
