//! cnet-policy: Kubernetes NetworkPolicy (and later extended models) — parse, validate,
//! normalise, and evaluate flows with exact Kubernetes semantics.
//!
//! ```
//! use cnet_policy::{parse_yaml, Endpoint, Evaluator, Flow, Inventory, PolicySet, Protocol, Verdict};
//! use std::collections::BTreeMap;
//!
//! let policies = parse_yaml(
//!     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
//!      metadata: {name: db, namespace: prod}\n\
//!      spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  \
//!      - from: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{port: 5432}]\n",
//! )?;
//! let set = PolicySet::from_network_policies(&policies)?;
//! let mut inv = Inventory::default();
//! let labels = |k: &str| BTreeMap::from([("app".to_string(), k.to_string())]);
//! inv.upsert_endpoint(Endpoint::new("prod", "db-0", labels("db"), vec!["10.0.0.2".parse()?]));
//! inv.upsert_endpoint(Endpoint::new("prod", "api-0", labels("api"), vec!["10.0.0.3".parse()?]));
//! inv.upsert_endpoint(Endpoint::new("prod", "web-0", labels("web"), vec!["10.0.0.4".parse()?]));
//! let eval = Evaluator::new(set, inv);
//! let flow = |src: &str| Flow { src: src.parse().unwrap(), dst: "10.0.0.2".parse().unwrap(),
//!                               protocol: Protocol::Tcp, dst_port: 5432 };
//! assert_eq!(eval.decide(&flow("10.0.0.3")).verdict, Verdict::Allow);
//! let denied = eval.decide(&flow("10.0.0.4"));
//! assert_eq!(denied.verdict, Verdict::Deny);
//! println!("{denied}"); // explains: isolated by tier kubernetes, selected by NetworkPolicy prod/db
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`api`] (the Kubernetes objects as written), [`admin`] (AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy, ClusterNetworkPolicy), [`calico`] (projectcalico.org/v3
//! policies, tiers, network sets and the selector language), [`parse`] (YAML/JSON in and out),
//! [`validate`] (API-server validation with field paths), [`model`] (the normalised tiers the
//! evaluator and the nftables compiler consume), [`normalize`], [`endpoint`], [`evaluator`].

pub mod admin;
pub mod api;
pub mod calico;
pub mod compile;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod evaluator;
#[cfg(feature = "k8s-openapi")]
pub mod k8s_openapi_conv;
mod live;
mod membership;
pub mod model;
pub mod normalize;
pub mod parse;
mod selector_index;
pub mod validate;

#[cfg(test)]
mod mem_tests;

pub use api::NetworkPolicy;
pub use endpoint::{Endpoint, EndpointId, Inventory, NamedPort, Node};
pub use error::{FieldError, FieldErrorKind, PolicyError};
pub use evaluator::{
    Decision, Evaluator, EvaluatorOptions, Flow, FlowSide, SideDecision, SideReason, Verdict,
};
pub use model::{Action, Direction, PolicySet, Protocol};
pub use parse::{
    parse_json, parse_json_objects, parse_yaml, parse_yaml_objects, render_json, render_yaml,
};
pub mod nft;
