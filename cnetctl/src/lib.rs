//! cnetctl: the operator CLI of a cnet node. It reads and changes the node state of one
//! network (the directory the `cnet` plugin keeps: `policy.stateDir/<network>`, by default
//! `/var/lib/cni/cnet/<network>`) under the same lock as the plugin, and programs the
//! node's nftables table in the network namespace it runs in, one atomic batch per command.
//!
//! ```
//! use cnetctl::{load_documents, Outcome};
//!
//! let dir = tempfile::tempdir()?;
//! let f = dir.path().join("deny.yaml");
//! std::fs::write(&f, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
//!                     metadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}}\n")?;
//! let objs = load_documents(&f)?;
//! assert_eq!(objs[0].key(), "NetworkPolicy prod/deny-all");
//! # let _ = Outcome::Created;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success (`explain`: the flow is allowed) |
//! | 1 | `explain`: the flow is denied |
//! | 2 | usage error (bad arguments; from clap) |
//! | 3 | a policy file cannot be read, parsed or validated (nothing was changed) |
//! | 4 | the node state cannot be used (lock busy: retry; corrupt; I/O) |
//! | 5 | programming the kernel failed (the state was not changed) |
//! | 6 | not found (endpoint, pod or policy named on the command line) |

use cnet_cni::cnet::policy::{
    CALICO_API_VERSION, CALICO_KINDS, POLICY_KINDS, PolicyObject, stored_kind,
    stored_kind_is_namespaced,
};
use cnet_cni::cnet::ports::{ContainerPort, parse_ports};
use cnet_cni::cnet::state::StoredPolicy;
use cnet_policy::endpoint::NAMESPACE_NAME_LABEL;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Kinds `cnetctl apply` accepts besides the policy kinds: `v1` Namespace (its labels).
pub const NAMESPACE_KIND: &str = "Namespace";

/// What went wrong, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A policy file is unusable (exit 3).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with document, line or field path.
        message: String,
    },
    /// The node state is unusable (exit 4).
    #[error("node state {dir}: {message}")]
    State {
        /// The state directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Programming the kernel failed (exit 5).
    #[error("programming the node failed: {0}")]
    Program(String),
    /// Something named does not exist (exit 6).
    #[error("{0}")]
    NotFound(String),
    /// A bad argument value (exit 2).
    #[error("{0}")]
    Usage(String),
}

impl CtlError {
    /// The documented exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::File { .. } => 3,
            CtlError::State { .. } => 4,
            CtlError::Program(_) => 5,
            CtlError::NotFound(_) => 6,
            CtlError::Usage(_) => 2,
        }
    }
}

/// What `apply` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// New.
    Created,
    /// Replaced a different version.
    Configured,
    /// Identical to what was stored.
    Unchanged,
    /// Removed (`delete`).
    Deleted,
    /// Not there (`delete`).
    NotFound,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
            Outcome::NotFound => "not found",
        })
    }
}

/// What one document of a file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A policy, as stored in the node state.
    Policy(StoredPolicy),
    /// A `v1` Namespace: its name and labels (without the implicit
    /// `kubernetes.io/metadata.name`).
    Namespace {
        /// `metadata.name`.
        name: String,
        /// `metadata.labels`.
        labels: BTreeMap<String, String>,
    },
}

/// One object read from a file, validated.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from.
    pub path: PathBuf,
    /// 1-based line where its document starts.
    pub line: usize,
    /// What it holds.
    pub object: Object,
}

impl Document {
    /// `kind namespace/name` or `kind name`, for messages.
    pub fn key(&self) -> String {
        match &self.object {
            Object::Policy(p) => p.key(),
            Object::Namespace { name, .. } => format!("{NAMESPACE_KIND} {name}"),
        }
    }
}

/// Whether `s` is a DNS-1123 label (a Kubernetes namespace or pod name): 1–63 characters of
/// `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_label_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Check a label key and value as Kubernetes does: key `[prefix/]name` (prefix a DNS
/// subdomain of at most 253 characters; name 1–63 of alphanumerics, `-`, `_`, `.`, starting
/// and ending alphanumeric), value empty or a name of the same shape.
pub fn check_label(key: &str, value: Option<&str>) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    if !prefix_ok || !is_label_name(name) {
        return Err(format!(
            "label key {key:?}: expected [prefix/]name (name: 1-63 of alphanumerics, '-', '_', '.', alphanumeric at both ends)"
        ));
    }
    if let Some(v) = value
        && !v.is_empty()
        && !is_label_name(v)
    {
        return Err(format!(
            "label {key}={v:?}: a value is empty or 1-63 of alphanumerics, '-', '_', '.', alphanumeric at both ends"
        ));
    }
    Ok(())
}

/// The name and labels of a `v1` Namespace object (`metadata.labels` validated; the implicit
/// `kubernetes.io/metadata.name` is dropped when it equals the name and refused otherwise).
pub fn namespace_object(value: &Value) -> Result<(String, BTreeMap<String, String>), String> {
    let name = value["metadata"]["name"]
        .as_str()
        .ok_or("metadata.name: required string")?;
    if !is_dns_label(name) {
        return Err(format!(
            "metadata.name: {name:?} is not a namespace name (1-63 of a-z, 0-9, '-')"
        ));
    }
    let mut labels = BTreeMap::new();
    match &value["metadata"]["labels"] {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("metadata.labels.{k}: expected a string"))?;
                check_label(k, Some(v)).map_err(|e| format!("metadata.labels: {e}"))?;
                if k == NAMESPACE_NAME_LABEL {
                    if v != name {
                        return Err(format!(
                            "metadata.labels.{k}: {v:?}: this label is always the namespace's name"
                        ));
                    }
                    continue;
                }
                labels.insert(k.clone(), v.to_string());
            }
        }
        _ => return Err("metadata.labels: expected a map of strings".into()),
    }
    Ok((name.to_string(), labels))
}

/// Start line (1-based) of each YAML document of a text.
fn yaml_doc_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "---" || l.starts_with("--- ") {
            if i == 0 {
                starts[0] = 2;
            } else {
                starts.push(i + 2);
            }
        }
    }
    starts
}

/// The files `-f` names: a file, or the `.yaml`/`.yml`/`.json` files of a directory, sorted.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, CtlError> {
    let err = |m: String| CtlError::File {
        path: path.to_path_buf(),
        message: m,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no .yaml, .yml or .json files in the directory".into()));
    }
    Ok(files)
}

/// Read, parse and validate every policy object of a file (YAML or JSON, several documents
/// and `List`s allowed). Errors name the file, the document and its line, and the field path.
pub fn load_documents(path: &Path) -> Result<Vec<Document>, CtlError> {
    let err = |m: String| CtlError::File {
        path: path.to_path_buf(),
        message: m,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_json =
        path.extension().is_some_and(|x| x == "json") || text.trim_start().starts_with('{');
    let objs = if is_json {
        cnet_policy::parse_json_objects(&text)
    } else {
        cnet_policy::parse_yaml_objects(&text)
    }
    .map_err(|e| err(e.to_string()))?;
    let lines = if is_json {
        vec![1]
    } else {
        yaml_doc_lines(&text)
    };
    let mut out = Vec::new();
    for (i, o) in objs.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let at = |m: String| err(format!("document {} (line {line}): {m}", i + 1));
        let value = match o {
            cnet_policy::parse::ApiObject::NetworkPolicy(np) => {
                serde_json::to_value(&np).map_err(|e| at(e.to_string()))?
            }
            cnet_policy::parse::ApiObject::Other { kind, value, .. } if kind == NAMESPACE_KIND => {
                let (name, labels) = namespace_object(&value).map_err(at)?;
                out.push(Document {
                    path: path.to_path_buf(),
                    line,
                    object: Object::Namespace { name, labels },
                });
                continue;
            }
            cnet_policy::parse::ApiObject::Other {
                kind,
                value,
                api_version,
            } => {
                if stored_kind(&api_version, &kind).is_none() {
                    return Err(at(format!(
                        "unsupported kind {api_version}/{kind} (expected {NAMESPACE_KIND}, one of {}, or {CALICO_API_VERSION} {})",
                        POLICY_KINDS.join(", "),
                        CALICO_KINDS.join(", ")
                    )));
                }
                value
            }
        };
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let kind = stored_kind(api_version, kind).unwrap_or_else(|| kind.to_string());
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = if stored_kind_is_namespaced(&kind) {
            value["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let stored = StoredPolicy {
            kind,
            namespace,
            name,
            object: value,
        };
        // Validate exactly as the node will use it: decode and apply to a scratch engine.
        let obj = PolicyObject::from_stored(&stored).map_err(|e| at(e.msg))?;
        let mut scratch = cnet_policy::engine::Engine::new(cnet_policy::compile::Mode::Transparent);
        obj.apply(&mut scratch).map_err(|e| at(e.msg))?;
        out.push(Document {
            path: path.to_path_buf(),
            line,
            object: Object::Policy(stored),
        });
    }
    Ok(out)
}

/// Whether a command-line argument is a label change (`k=v` or `k-`).
pub fn is_label_arg(a: &str) -> bool {
    a.contains('=') || a.ends_with('-')
}

/// Parse `k=v` (set) and `k-` (remove) label arguments (keys and values checked as Kubernetes
/// does, see [`check_label`]).
pub fn parse_label_args(args: &[String]) -> Result<Vec<(String, Option<String>)>, CtlError> {
    args.iter()
        .map(|a| {
            let (k, v) = if let Some((k, v)) = a.split_once('=') {
                if k.is_empty() {
                    return Err(CtlError::Usage(format!("label {a:?}: empty key")));
                }
                (k.to_string(), Some(v.to_string()))
            } else if let Some(k) = a.strip_suffix('-') {
                (k.to_string(), None)
            } else {
                return Err(CtlError::Usage(format!(
                    "label {a:?}: expected KEY=VALUE or KEY-"
                )));
            };
            check_label(&k, v.as_deref()).map_err(CtlError::Usage)?;
            Ok((k, v))
        })
        .collect()
}

/// Parse `cnetctl ports` arguments, `[NAME=]PORT[/PROTO]` each (protocol `tcp` by default,
/// any case), validated as the plugin validates `args.cni.ports`.
pub fn parse_port_specs(args: &[String]) -> Result<Vec<ContainerPort>, CtlError> {
    let mut list = Vec::new();
    for a in args {
        let (name, rest) = match a.split_once('=') {
            Some((n, r)) => (Some(n), r),
            None => (None, a.as_str()),
        };
        let (port, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
        let port: i64 = port.parse().map_err(|_| {
            CtlError::Usage(format!(
                "port {a:?}: expected [NAME=]PORT[/PROTO], e.g. http=8080/tcp"
            ))
        })?;
        let mut item =
            serde_json::json!({"containerPort": port, "protocol": proto.to_ascii_uppercase()});
        if let Some(n) = name {
            item["name"] = Value::from(n);
        }
        list.push(item);
    }
    parse_ports(&Value::Array(list), "ports").map_err(|e| CtlError::Usage(e.msg))
}

/// `PORT/PROTO` (e.g. `80/tcp`; the protocol defaults to TCP).
pub fn parse_port(s: &str) -> Result<(u16, cnet_policy::Protocol), CtlError> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let port: u16 = port
        .parse()
        .map_err(|_| CtlError::Usage(format!("port {s:?}: expected PORT/PROTO, e.g. 80/tcp")))?;
    let proto = cnet_policy::Protocol::parse(&proto.to_ascii_uppercase())
        .ok_or_else(|| CtlError::Usage(format!("protocol {proto:?}: expected tcp, udp or sctp")))?;
    Ok((port, proto))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn yaml_document_lines() {
        assert_eq!(
            yaml_doc_lines("a: 1\n---\nb: 2\n---\nc: 3\n"),
            vec![1, 3, 5]
        );
        assert_eq!(yaml_doc_lines("---\na: 1\n"), vec![2]);
    }

    #[test]
    fn labels_and_ports() {
        let l = parse_label_args(&["app=web".into(), "tier-".into()]).unwrap();
        assert_eq!(l[0], ("app".into(), Some("web".into())));
        assert_eq!(l[1], ("tier".into(), None));
        assert!(parse_label_args(&["=x".into()]).is_err());
        assert!(parse_label_args(&["nothing".into()]).is_err());
        assert_eq!(parse_port("80/tcp").unwrap().0, 80);
        assert_eq!(parse_port("53/udp").unwrap().1, cnet_policy::Protocol::Udp);
        assert!(parse_port("x/tcp").is_err());
        assert!(parse_port("80/icmp").is_err());
    }

    #[test]
    fn namespaces_from_files_and_label_checks() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ns.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels:\n    team: a\n    kubernetes.io/metadata.name: prod\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n",
        )
        .unwrap();
        let docs = load_documents(&f).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].key(), "Namespace prod");
        assert_eq!(
            docs[0].object,
            Object::Namespace {
                name: "prod".into(),
                labels: BTreeMap::from([("team".into(), "a".into())])
            }
        );
        assert_eq!(docs[1].line, 9);
        for (bad, needle) in [
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: Prod}\n",
                "metadata.name",
            ),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
                "metadata.name",
            ),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: 1}}\n",
                "metadata.labels.x",
            ),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {\"-x\": y}}\n",
                "label key",
            ),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {kubernetes.io/metadata.name: b}}\n",
                "always the namespace",
            ),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = load_documents(&f).unwrap_err();
            assert_eq!(e.exit_code(), 3);
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(check_label("example.com/team", Some("a.b-c_d")).is_ok());
        assert!(check_label("team", Some("")).is_ok());
        assert!(check_label("a/b/c", Some("x")).is_err());
        assert!(check_label("team", Some("-x")).is_err());
        assert!(parse_label_args(&["a b=c".into()]).is_err());
    }

    #[test]
    fn port_specs() {
        let p = parse_port_specs(&["http=8080".into(), "dns=53/udp".into(), "9000/SCTP".into()])
            .unwrap();
        assert_eq!(
            p,
            vec![
                ContainerPort::new(Some("http"), 8080, "TCP"),
                ContainerPort::new(Some("dns"), 53, "UDP"),
                ContainerPort::new(None, 9000, "SCTP"),
            ]
        );
        for bad in ["http", "x=0", "x=70000", "HTTP=80", "a=1/icmp", "a=1,a=2"] {
            assert!(parse_port_specs(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_port_specs(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn bad_documents_name_file_document_line_and_field() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.yaml");
        std::fs::write(
            &f,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ok, namespace: a}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n",
        )
        .unwrap();
        let e = load_documents(&f).unwrap_err().to_string();
        assert!(e.contains("p.yaml"), "{e}");
        assert!(e.contains("document 2 (line 6)"), "{e}");
        assert!(e.contains("port"), "{e}");
        std::fs::write(&f, "kind: [unclosed\n").unwrap();
        let e = load_documents(&f).unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
        std::fs::write(&f, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").unwrap();
        let e = load_documents(&f).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("unsupported kind"), "{e}");
    }
}
