//! What policy is applied to: namespaces, pod endpoints and nodes.

use crate::model::{Labels, Protocol};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The label the Kubernetes control plane sets on every namespace to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The label an endpoint running under a service account carries, set to the account's name
/// (Calico's convention, which `serviceAccounts.names` rule matches select on).
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";

/// Prefix under which an endpoint carries its service account's labels (Calico's convention:
/// `serviceAccountSelector` and `serviceAccounts.selector` select on `pcsa.<key>`).
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";

/// The label Calico sets on namespaces and service accounts to their name.
pub const CALICO_NAME_LABEL: &str = "projectcalico.org/name";

/// A pod's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

impl EndpointId {
    /// Build an id.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        EndpointId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A named container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// A pod as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod labels.
    pub labels: Labels,
    /// Pod addresses (IPv4 and/or IPv6). For a host-network pod, its node's addresses.
    pub addresses: Vec<IpAddr>,
    /// Named container ports: name → port and protocol.
    pub named_ports: BTreeMap<String, NamedPort>,
    /// Whether the pod shares its node's network namespace.
    pub host_network: bool,
    /// The node it runs on, when known.
    pub node: Option<String>,
}

impl Endpoint {
    /// A pod-network endpoint with labels and addresses, no named ports, no node.
    pub fn new(namespace: &str, name: &str, labels: Labels, addresses: Vec<IpAddr>) -> Self {
        Endpoint {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels,
            addresses,
            named_ports: BTreeMap::new(),
            host_network: false,
            node: None,
        }
    }

    /// The endpoint's id.
    pub fn id(&self) -> EndpointId {
        EndpointId::new(&self.namespace, &self.name)
    }

    /// The endpoint running under service account `name` (in its namespace) whose labels are
    /// `sa_labels`. As Calico does, the account is carried in labels: `projectcalico.org/
    /// serviceaccount: <name>`, and `pcsa.<key>: <value>` for each account label plus
    /// `pcsa.projectcalico.org/name: <name>`. Labels of the pod that use these reserved keys
    /// are dropped first, so a pod cannot claim an account it does not run under.
    ///
    /// ```
    /// use cnet_policy::Endpoint;
    /// use std::collections::BTreeMap;
    /// let sa = BTreeMap::from([("team".to_string(), "pay".to_string())]);
    /// let ep = Endpoint::new("prod", "api-0", BTreeMap::new(), vec![])
    ///     .with_service_account("api", &sa);
    /// assert_eq!(ep.service_account(), Some("api"));
    /// assert_eq!(ep.labels.get("pcsa.team").map(String::as_str), Some("pay"));
    /// ```
    pub fn with_service_account(mut self, name: &str, sa_labels: &Labels) -> Self {
        self.clear_service_account();
        self.labels
            .insert(SERVICE_ACCOUNT_LABEL.to_string(), name.to_string());
        for (k, v) in sa_labels {
            self.labels
                .insert(format!("{SERVICE_ACCOUNT_LABEL_PREFIX}{k}"), v.clone());
        }
        self.labels.insert(
            format!("{SERVICE_ACCOUNT_LABEL_PREFIX}{CALICO_NAME_LABEL}"),
            name.to_string(),
        );
        self
    }

    /// Drop the service-account labels (and any pod label using the reserved keys).
    pub fn clear_service_account(&mut self) {
        self.labels.retain(|k, _| {
            k != SERVICE_ACCOUNT_LABEL && !k.starts_with(SERVICE_ACCOUNT_LABEL_PREFIX)
        });
    }

    /// The service account the endpoint runs under, if known.
    pub fn service_account(&self) -> Option<&str> {
        self.labels.get(SERVICE_ACCOUNT_LABEL).map(String::as_str)
    }
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: Labels,
    /// Node addresses (traffic from host-network pods carries these).
    pub addresses: Vec<IpAddr>,
}

/// Namespaces, endpoints and nodes: the world a policy set is evaluated against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Namespace name → labels as given (the name label is implied, see [`Inventory::namespace_labels`]).
    pub namespaces: BTreeMap<String, Labels>,
    /// Endpoints by id.
    pub endpoints: BTreeMap<EndpointId, Endpoint>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
}

impl Inventory {
    /// Add or replace a namespace.
    pub fn upsert_namespace(&mut self, name: &str, labels: Labels) {
        self.namespaces.insert(name.to_string(), labels);
    }

    /// Add or replace an endpoint (its namespace is created with no labels if unknown).
    pub fn upsert_endpoint(&mut self, ep: Endpoint) {
        self.namespaces.entry(ep.namespace.clone()).or_default();
        self.endpoints.insert(ep.id(), ep);
    }

    /// Remove an endpoint; returns it if it was there.
    pub fn remove_endpoint(&mut self, id: &EndpointId) -> Option<Endpoint> {
        self.endpoints.remove(id)
    }

    /// Add or replace a node.
    pub fn upsert_node(&mut self, node: Node) {
        self.nodes.insert(node.name.clone(), node);
    }

    /// A namespace's labels as selectors see them: the given labels plus
    /// `kubernetes.io/metadata.name: <name>`, which Kubernetes sets on every namespace.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
        l
    }
}
