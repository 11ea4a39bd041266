//! Reading and writing policy documents: YAML (multi-document) and JSON, single objects or
//! `List` objects with `items`. Parsing never panics on any input; every failure is a
//! [`PolicyError`].

use crate::api::{self, NetworkPolicy};
use crate::error::{Format, Location, PolicyError, Result};
use serde::Deserialize;
use serde_json::Value;

/// One API object read from a document.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiObject {
    /// A `networking.k8s.io/v1` NetworkPolicy (parsed, not yet validated).
    NetworkPolicy(NetworkPolicy),
    /// Any other object, kept as JSON for callers that understand it (later: AdminNetworkPolicy,
    /// Calico kinds).
    Other {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
        /// The whole object.
        value: Value,
    },
}

/// Parse a YAML stream (one or more `---`-separated documents, `List` objects flattened) into
/// API objects. Empty documents are skipped.
pub fn parse_yaml_objects(text: &str) -> Result<Vec<ApiObject>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| PolicyError::Syntax {
            format: Format::Yaml,
            document: i,
            location: e.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            }),
            message: e.to_string(),
        })?;
        if v.is_null() {
            continue;
        }
        let single = v.get("kind").and_then(Value::as_str) == Some(api::KIND);
        if let Err(e) = flatten(v, Format::Yaml, i, &mut out) {
            // Typed errors lose their position through the generic value: for a single
            // NetworkPolicy document, decode it again straight from the text, which names the
            // field path, line and column.
            if single {
                if let Some(doc) = serde_yaml_ng::Deserializer::from_str(text).nth(i) {
                    if let Err(typed) = NetworkPolicy::deserialize(doc) {
                        return Err(PolicyError::Syntax {
                            format: Format::Yaml,
                            document: i,
                            location: typed.location().map(|l| Location {
                                line: l.line(),
                                column: l.column(),
                            }),
                            message: typed.to_string(),
                        });
                    }
                }
            }
            return Err(e);
        }
    }
    Ok(out)
}

/// Parse a JSON text (one object or a `List`) into API objects.
pub fn parse_json_objects(text: &str) -> Result<Vec<ApiObject>> {
    let v: Value = serde_json::from_str(text).map_err(|e| json_error(&e, 0))?;
    let mut out = Vec::new();
    flatten(v, Format::Json, 0, &mut out)?;
    Ok(out)
}

/// Convert one JSON value (an object, or a `List` of objects) into API objects.
pub fn objects_from_value(v: Value) -> Result<Vec<ApiObject>> {
    let mut out = Vec::new();
    flatten(v, Format::Json, 0, &mut out)?;
    Ok(out)
}

fn json_error(e: &serde_json::Error, document: usize) -> PolicyError {
    PolicyError::Syntax {
        format: Format::Json,
        document,
        location: (e.line() > 0).then(|| Location {
            line: e.line(),
            column: e.column(),
        }),
        message: e.to_string(),
    }
}

fn flatten(v: Value, format: Format, document: usize, out: &mut Vec<ApiObject>) -> Result<()> {
    let Value::Object(map) = &v else {
        return Err(PolicyError::Syntax {
            format,
            document,
            location: None,
            message: "expected an object with apiVersion and kind".into(),
        });
    };
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        let items = match map.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(PolicyError::Syntax {
                    format,
                    document,
                    location: None,
                    message: format!("{kind}.items must be a list"),
                });
            }
        };
        let item_kind = kind
            .strip_suffix("List")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        for mut item in items {
            // Items of a typed list (e.g. NetworkPolicyList) may omit apiVersion/kind.
            if let (Some(k), Value::Object(m)) = (&item_kind, &mut item) {
                m.entry("kind").or_insert_with(|| Value::String(k.clone()));
                m.entry("apiVersion")
                    .or_insert_with(|| Value::String(api_version.clone()));
            }
            flatten(item, format, document, out)?;
        }
        return Ok(());
    }
    if kind == api::KIND && api_version == api::API_VERSION {
        let np: NetworkPolicy = serde_json::from_value(v).map_err(|e| PolicyError::Syntax {
            format,
            document,
            location: None,
            message: format!("NetworkPolicy: {e}"),
        })?;
        out.push(ApiObject::NetworkPolicy(np));
    } else {
        out.push(ApiObject::Other {
            api_version,
            kind,
            value: v,
        });
    }
    Ok(())
}

fn only_network_policies(objs: Vec<ApiObject>) -> Result<Vec<NetworkPolicy>> {
    objs.into_iter()
        .enumerate()
        .map(|(i, o)| match o {
            ApiObject::NetworkPolicy(np) => Ok(np),
            ApiObject::Other {
                api_version, kind, ..
            } => Err(PolicyError::UnsupportedKind {
                document: i,
                api_version,
                kind,
                reason: format!("expected {}/{}", api::API_VERSION, api::KIND),
            }),
        })
        .collect()
}

/// Parse and validate NetworkPolicies from YAML; any other kind is an error.
pub fn parse_yaml(text: &str) -> Result<Vec<NetworkPolicy>> {
    let nps = only_network_policies(parse_yaml_objects(text)?)?;
    nps.iter().try_for_each(crate::validate::validate)?;
    Ok(nps)
}

/// Parse and validate NetworkPolicies from JSON; any other kind is an error.
pub fn parse_json(text: &str) -> Result<Vec<NetworkPolicy>> {
    let nps = only_network_policies(parse_json_objects(text)?)?;
    nps.iter().try_for_each(crate::validate::validate)?;
    Ok(nps)
}

/// Render policies as a multi-document YAML stream (`---` between documents).
pub fn render_yaml(policies: &[NetworkPolicy]) -> Result<String> {
    let mut out = String::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let s = serde_yaml_ng::to_string(p).map_err(|e| PolicyError::Conversion {
            object: p.describe(),
            message: format!("rendering YAML: {e}"),
        })?;
        out.push_str(&s);
    }
    Ok(out)
}

/// Render one policy as pretty JSON, or several as a `List`.
pub fn render_json(policies: &[NetworkPolicy]) -> Result<String> {
    let r = if let [one] = policies {
        serde_json::to_string_pretty(one)
    } else {
        serde_json::to_string_pretty(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": policies,
        }))
    };
    r.map_err(|e| PolicyError::Conversion {
        object: "NetworkPolicy".into(),
        message: e.to_string(),
    })
}
