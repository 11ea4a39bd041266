//! The virtual-node lab used by the examples, and the conformance scenario runner.
//!
//! ```
//! use cnet_examples::runner::{run_records, EvaluatorOracle, RunOptions};
//! use cnet_examples::scenario::parse_records;
//!
//! let file = r#"[{"id": "t1", "kind": "cluster-probe-matrix",
//!   "namespaces": {"x": {}},
//!   "pods": [{"namespace": "x", "name": "a", "labels": {"pod": "a"}},
//!            {"namespace": "x", "name": "b", "labels": {"pod": "b"}}],
//!   "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
//!                 "metadata": {"name": "deny", "namespace": "x"},
//!                 "spec": {"podSelector": {"matchLabels": {"pod": "b"}}}}],
//!   "probes": [{"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false},
//!              {"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "expect": true}]}]"#;
//! let records = parse_records(file, "inline").unwrap();
//! let report = run_records(&records, &mut EvaluatorOracle, &RunOptions::default());
//! assert_eq!(report.totals(), (2, 0, 0));
//! assert!(report.render(false).ends_with("conformance: 2 passed, 0 failed, 0 skipped\n"));
//! ```

// Every bench, example and lab binary (they all link this crate) allocates with mimalloc on
// musl, as the shipped binaries do: musl's own malloc returns memory to the kernel at once.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod lab;
pub mod lab_plugin;
pub mod runner;
pub mod scenario;
