//! Validation of NetworkPolicy objects as the Kubernetes API server does it
//! (kubernetes `pkg/apis/networking/validation/validation.go` and the apimachinery label,
//! name, port and CIDR checks it calls). Every failure names its field path.

use crate::api::{IntOrString, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use crate::error::{FieldError, FieldErrorKind as K, FieldErrors, PolicyError};
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// Validate a NetworkPolicy; `Ok` when the API server would accept it.
pub fn validate(np: &NetworkPolicy) -> Result<(), PolicyError> {
    let errs = validation_errors(np);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::Invalid {
            object: np.describe(),
            errors: FieldErrors(errs),
        })
    }
}

/// Every validation failure of a NetworkPolicy, in field order (empty when valid).
pub fn validation_errors(np: &NetworkPolicy) -> Vec<FieldError> {
    let mut e = Vec::new();
    if np.metadata.name.is_empty() {
        e.push(FieldError::new(
            "metadata.name",
            K::Required,
            "",
            "name is required",
        ));
    } else if let Some(m) = dns1123_subdomain_error(&np.metadata.name) {
        e.push(FieldError::new(
            "metadata.name",
            K::Invalid,
            &np.metadata.name,
            m,
        ));
    }
    if let Some(ns) = &np.metadata.namespace {
        if let Some(m) = dns1123_label_error(ns) {
            e.push(FieldError::new("metadata.namespace", K::Invalid, ns, m));
        }
    }
    for (k, v) in &np.metadata.labels {
        label_key(k, "metadata.labels", &mut e);
        label_value(v, "metadata.labels", &mut e);
    }
    let spec = &np.spec;
    label_selector(&spec.pod_selector, "spec.podSelector", &mut e);
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let base = format!("spec.ingress[{i}]");
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(p, &format!("{base}.ports[{j}]"), &mut e);
        }
        for (j, p) in rule.from.iter().flatten().enumerate() {
            peer(p, &format!("{base}.from[{j}]"), &mut e);
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let base = format!("spec.egress[{i}]");
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(p, &format!("{base}.ports[{j}]"), &mut e);
        }
        for (j, p) in rule.to.iter().flatten().enumerate() {
            peer(p, &format!("{base}.to[{j}]"), &mut e);
        }
    }
    if let Some(types) = &spec.policy_types {
        if types.len() > 2 {
            e.push(FieldError::new(
                "spec.policyTypes",
                K::Invalid,
                types.join(","),
                "may not specify more than two policyTypes",
            ));
        } else {
            for (i, t) in types.iter().enumerate() {
                if t != "Ingress" && t != "Egress" {
                    e.push(FieldError::new(
                        format!("spec.policyTypes[{i}]"),
                        K::NotSupported,
                        t,
                        "supported values: \"Ingress\", \"Egress\"",
                    ));
                }
            }
        }
    }
    e
}

fn port(p: &NetworkPolicyPort, path: &str, e: &mut Vec<FieldError>) {
    if let Some(proto) = &p.protocol {
        if !matches!(proto.as_str(), "TCP" | "UDP" | "SCTP") {
            e.push(FieldError::new(
                format!("{path}.protocol"),
                K::NotSupported,
                proto,
                "supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ));
        }
    }
    match &p.port {
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                e.push(FieldError::new(
                    format!("{path}.port"),
                    K::Invalid,
                    n.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(end) = p.end_port {
                if end < *n {
                    e.push(FieldError::new(
                        format!("{path}.endPort"),
                        K::Invalid,
                        end.to_string(),
                        "must be >= port",
                    ));
                }
                if !(1..=65535).contains(&end) {
                    e.push(FieldError::new(
                        format!("{path}.endPort"),
                        K::Invalid,
                        end.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        Some(IntOrString::String(name)) => {
            if let Some(end) = p.end_port {
                e.push(FieldError::new(
                    format!("{path}.endPort"),
                    K::Invalid,
                    end.to_string(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            if let Some(m) = port_name_error(name) {
                e.push(FieldError::new(format!("{path}.port"), K::Invalid, name, m));
            }
        }
        None => {
            if let Some(end) = p.end_port {
                e.push(FieldError::new(
                    format!("{path}.endPort"),
                    K::Invalid,
                    end.to_string(),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn peer(p: &NetworkPolicyPeer, path: &str, e: &mut Vec<FieldError>) {
    let mut n = 0;
    if let Some(s) = &p.pod_selector {
        n += 1;
        label_selector(s, &format!("{path}.podSelector"), e);
    }
    if let Some(s) = &p.namespace_selector {
        n += 1;
        label_selector(s, &format!("{path}.namespaceSelector"), e);
    }
    if let Some(b) = &p.ip_block {
        n += 1;
        let bpath = format!("{path}.ipBlock");
        if b.cidr.is_empty() {
            e.push(FieldError::new(
                format!("{bpath}.cidr"),
                K::Required,
                "",
                "cidr is required",
            ));
        } else {
            match parse_cidr(&b.cidr) {
                Err(m) => e.push(FieldError::new(
                    format!("{bpath}.cidr"),
                    K::Invalid,
                    &b.cidr,
                    m,
                )),
                Ok(net) => {
                    for (i, ex) in b.except.iter().flatten().enumerate() {
                        let xpath = format!("{bpath}.except[{i}]");
                        match parse_cidr(ex) {
                            Err(m) => e.push(FieldError::new(xpath, K::Invalid, ex, m)),
                            Ok(x) => {
                                if !is_strict_subset(net, x) {
                                    e.push(FieldError::new(
                                        xpath,
                                        K::Invalid,
                                        ex,
                                        "must be a strict subset of `cidr`",
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if n == 0 {
        e.push(FieldError::new(
            path,
            K::Required,
            "",
            "must specify a peer",
        ));
    } else if n > 1 && p.ip_block.is_some() {
        e.push(FieldError::new(
            path,
            K::Forbidden,
            "",
            "may not specify both ipBlock and another peer",
        ));
    }
}

/// Validate a label selector like apimachinery's `ValidateLabelSelector`.
pub(crate) fn label_selector(s: &LabelSelector, path: &str, e: &mut Vec<FieldError>) {
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let rpath = format!("{path}.matchExpressions[{i}]");
        let values = r.values.as_deref().unwrap_or(&[]);
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.push(FieldError::new(
                        format!("{rpath}.values"),
                        K::Required,
                        "",
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.push(FieldError::new(
                        format!("{rpath}.values"),
                        K::Forbidden,
                        values.join(","),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => e.push(FieldError::new(
                format!("{rpath}.operator"),
                K::Invalid,
                other,
                "not a valid selector operator",
            )),
        }
        label_key(&r.key, &format!("{rpath}.key"), e);
        for (j, v) in values.iter().enumerate() {
            label_value(v, &format!("{rpath}.values[{j}]"), e);
        }
    }
    for (k, v) in s.match_labels.iter().flatten() {
        label_key(k, &format!("{path}.matchLabels"), e);
        label_value(v, &format!("{path}.matchLabels"), e);
    }
}

fn label_key(k: &str, path: &str, e: &mut Vec<FieldError>) {
    if let Some(m) = qualified_name_error(k) {
        e.push(FieldError::new(path, K::Invalid, k, m));
    }
}

fn label_value(v: &str, path: &str, e: &mut Vec<FieldError>) {
    if let Some(m) = label_value_error(v) {
        e.push(FieldError::new(path, K::Invalid, v, m));
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn qualified_name_part_error(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if s.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    let ok = s.chars().all(is_name_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
         end with an alphanumeric character"
            .into()
    })
}

/// Label keys and other qualified names: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn qualified_name_error(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [name] => qualified_name_part_error(name),
        [prefix, name] => {
            if prefix.is_empty() {
                return Some("prefix part must be non-empty".into());
            }
            if let Some(m) = dns1123_subdomain_error(prefix) {
                return Some(format!("prefix part {m}"));
            }
            qualified_name_part_error(name)
        }
        _ => Some(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an \
             optional DNS subdomain prefix and '/'"
                .into(),
        ),
    }
}

/// Label values: empty, or a qualified name part of at most 63 characters.
pub fn label_value_error(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    qualified_name_part_error(v).map(|_| {
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
         or '.', and must start and end with an alphanumeric character"
            .into()
    })
}

fn dns_label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 label (namespace names): lowercase alphanumerics and '-', at most 63.
pub fn dns1123_label_error(s: &str) -> Option<String> {
    (!dns_label_ok(s)).then(|| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
         start and end with an alphanumeric character, and be at most 63 characters"
            .into()
    })
}

/// DNS-1123 subdomain (object names): dot-separated labels, at most 253.
pub fn dns1123_subdomain_error(s: &str) -> Option<String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label_ok);
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
         or '.', must start and end with an alphanumeric character, and be at most 253 characters"
            .into()
    })
}

/// IANA service names (named ports): 1–15 of `[a-z0-9-]`, at least one letter, no leading,
/// trailing or doubled '-'.
pub fn port_name_error(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 15 {
        return Some("must be no more than 15 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
        );
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        return Some("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must not begin or end with a hyphen".into());
    }
    None
}

/// Parse a CIDR as the API's legacy CIDR fields accept it: `ADDR/LEN`, host bits may be
/// set (they are ignored when matching). Leading zeros in IPv4 octets are rejected.
pub fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let (addr, len) = s.split_once('/').ok_or_else(|| {
        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()
    })?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not a valid IP address"))?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{len:?} is not a valid prefix length"));
    }
    let len: u8 = len
        .parse()
        .map_err(|_| format!("{len:?} is not a valid prefix length"))?;
    IpNetwork::new(addr, len).map_err(|_| format!("prefix length {len} is too long for {addr}"))
}

/// The network of a CIDR with host bits cleared.
pub fn network_of(n: IpNetwork) -> IpNetwork {
    // new() only fails for an out-of-range prefix, which `n` already satisfies.
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

fn is_strict_subset(outer: IpNetwork, inner: IpNetwork) -> bool {
    let outer = network_of(outer);
    outer.is_ipv4() == inner.is_ipv4()
        && inner.prefix() > outer.prefix()
        && outer.contains(inner.ip())
}
