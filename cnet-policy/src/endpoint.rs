//! What policy is applied to: namespaces, pod endpoints and nodes.

use crate::model::{Labels, Protocol};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The label the Kubernetes control plane sets on every namespace to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

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
