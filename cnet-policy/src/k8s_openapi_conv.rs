//! Conversions between [`crate::api::NetworkPolicy`] and
//! `k8s_openapi::api::networking::v1::NetworkPolicy` (cargo feature `k8s-openapi`), so tools
//! built on kube-rs can pass the objects they already hold.
//!
//! Both types follow the same Kubernetes JSON schema, so the conversion goes through that
//! schema: fields k8s-openapi knows that cnet does not (none today) make it fail loudly
//! rather than be dropped.

use crate::api::NetworkPolicy;
use crate::error::PolicyError;
use k8s_openapi::api::networking::v1 as k8s;

fn conv_err(object: &str, e: serde_json::Error) -> PolicyError {
    PolicyError::Conversion {
        object: object.to_string(),
        message: e.to_string(),
    }
}

impl TryFrom<&k8s::NetworkPolicy> for NetworkPolicy {
    type Error = PolicyError;

    fn try_from(np: &k8s::NetworkPolicy) -> Result<Self, Self::Error> {
        let what = format!(
            "k8s-openapi NetworkPolicy {}/{}",
            np.metadata
                .namespace
                .as_deref()
                .unwrap_or(crate::api::DEFAULT_NAMESPACE),
            np.metadata.name.as_deref().unwrap_or("")
        );
        let mut v = serde_json::to_value(np).map_err(|e| conv_err(&what, e))?;
        if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
            // k8s-openapi may serialise an absent podSelector as null.
            if spec.get("podSelector").is_some_and(|p| p.is_null()) {
                spec.remove("podSelector");
            }
        }
        serde_json::from_value(v).map_err(|e| conv_err(&what, e))
    }
}

impl TryFrom<k8s::NetworkPolicy> for NetworkPolicy {
    type Error = PolicyError;

    fn try_from(np: k8s::NetworkPolicy) -> Result<Self, Self::Error> {
        NetworkPolicy::try_from(&np)
    }
}

impl TryFrom<&NetworkPolicy> for k8s::NetworkPolicy {
    type Error = PolicyError;

    fn try_from(np: &NetworkPolicy) -> Result<Self, Self::Error> {
        let v = serde_json::to_value(np).map_err(|e| conv_err(&np.describe(), e))?;
        serde_json::from_value(v).map_err(|e| conv_err(&np.describe(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_k8s_openapi() {
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                    metadata: {name: p, namespace: ns, labels: {a: b}}\n\
                    spec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress, Egress]\n  \
                    ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: t, operator: In, values: [x]}]}\n      \
                    podSelector: {}\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n    \
                    ports: [{port: 80, endPort: 90, protocol: UDP}, {port: http}]\n  egress: [{}]\n";
        let ours = crate::parse::parse_yaml(yaml).expect("parses").remove(0);
        let theirs = k8s::NetworkPolicy::try_from(&ours).expect("to k8s-openapi");
        assert_eq!(theirs.metadata.name.as_deref(), Some("p"));
        let back = NetworkPolicy::try_from(&theirs).expect("from k8s-openapi");
        assert_eq!(back, ours);
    }
}
